"""Cells for CSV exports that are safe to open in a spreadsheet.

A cell starting with = + - @ (or a tab or carriage return, which some spreadsheets skip before
reading a formula) would run as a formula; a leading single quote makes it plain text. Free
text from shoppers reaches exports, so every text cell goes through `safe_cell`.
"""

from __future__ import annotations

from collections.abc import Iterable

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def safe_cell(value: object) -> str:
    """`value` as CSV cell text that no spreadsheet evaluates. Numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def safe_row(values: Iterable[object]) -> list[str]:
    return [safe_cell(v) for v in values]
