"""Reading order CSVs: physical line numbers, header sniffing, and the value parsers.

Free of Flask, so the parsers can be tested and benchmarked on their own. Every parser
raises ValueError with a message meant for the shop owner.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, tzinfo
from typing import IO

# Shopify writes very long Notes / Note Attributes fields; the csv default of 128 KiB is
# too small for some real exports.
csv.field_size_limit(16 * 1024 * 1024)


class ImportFileError(Exception):
    """The file as a whole cannot be read (not a CSV, unknown header, not UTF-8)."""


def open_text(path: str) -> IO[str]:
    """A CSV file opened the way the csv module needs it; a UTF-8 BOM (Excel) is dropped."""
    return open(path, encoding="utf-8-sig", newline="")


def read_rows(handle: IO[str], first_line: int = 1) -> Iterator[tuple[int, list[str]]]:
    """Every record with the physical line it starts on (the header is line 1; a handle
    that starts further in the file says on which line with ``first_line``).

    csv.reader's line_num is the number of lines read *after* a record; a quoted field
    may span lines, so a record starts one line after the previous record ended. Blank
    lines are skipped but still counted.
    """
    reader = csv.reader(handle)
    before = ended = first_line - 1
    try:
        for row in reader:
            start = ended + 1
            ended = before + reader.line_num
            if row:
                yield start, row
    except csv.Error as exc:
        raise ImportFileError(f"line {ended + 1}: the file is not a valid CSV ({exc})") from None
    except UnicodeDecodeError:
        # No line number: the decoder reads ahead in blocks, so it would name the wrong one.
        raise ImportFileError(
            "the file is not UTF-8 text; export it again as CSV (UTF-8)"
        ) from None


def header_key(name: str) -> str:
    """'Lineitem SKU ' -> 'lineitem_sku': how both formats' headers are compared."""
    return "_".join(name.strip().lower().split())


SHOPIFY_MARKERS = {"name", "created_at", "lineitem_name", "total"}
GENERIC_MARKERS = {"order_id"}


def detect_format(header: list[str]) -> str:
    """'shopify' or 'generic', from the header row; an unknown header is an error."""
    keys = {header_key(h) for h in header}
    if keys >= SHOPIFY_MARKERS:
        return "shopify"
    if keys >= GENERIC_MARKERS:
        return "generic"
    raise ImportFileError(
        "The header is neither a Shopify orders export (Name, Created at, Total, Lineitem "
        "name, ...) nor a generic orders CSV (order_id, email or customer_id, placed_at, "
        "total, ...). First columns found: " + ", ".join(h.strip() for h in header[:8])
    )


class Columns:
    """Column positions by header key. A column missing from the file points at a cell
    that is always empty, so that parsers index rows without checking for it."""

    def __init__(self, header: list[str]):
        self.width = len(header)
        self.index: dict[str, int] = {}
        for i, name in enumerate(header):
            self.index.setdefault(header_key(name), i)

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def __getitem__(self, key: str) -> int:
        return self.index.get(key, self.width)

    def positions(self, *keys: str) -> list[int]:
        """Several positions at once, looked up once per file rather than once per row."""
        return [self[key] for key in keys]

    def fit(self, row: list[str]) -> list[str]:
        """The row padded to the header's width, plus the always-empty cell.

        A row with more fields than the header is refused: it is almost always a value with
        a comma that lost its quotes, which would silently shift every later column."""
        width = self.width
        if len(row) > width:
            raise ValueError(
                f"the row has {len(row)} fields but the header has {width}; "
                "is a value with a comma missing its quotes?"
            )
        if len(row) < width:
            row.extend([""] * (width - len(row)))
        row.append("")
        return row


def group_orders(
    rows: Iterable[tuple[int, list[str]]],
    key_column: int,
    label: str,
    seen: dict[str, int] | None = None,
) -> Iterator[tuple[str, list[tuple[int, list[str]]], str | None]]:
    """Consecutive rows with the same order key, as (key, [(line, row), ...], problem).

    ``problem`` is set when the key is empty or when the order appeared earlier in the file
    (rows of one order must be consecutive, and an order may appear only once). Keeps one
    entry per order in ``seen`` (key -> first line; a few dozen MB for 400,000 orders),
    which the caller may pass to learn them.
    """
    if seen is None:
        seen = {}
    key: str | None = None
    group: list[tuple[int, list[str]]] = []
    for line, row in rows:
        value = row[key_column].strip() if key_column < len(row) else ""
        if value == key and value:
            group.append((line, row))
            continue
        if group:
            yield key, group, _group_problem(key, group, seen, label)
        key, group = value, [(line, row)]
    if group:
        yield key, group, _group_problem(key, group, seen, label)


def _group_problem(
    key: str | None, group: list[tuple[int, list[str]]], seen: dict[str, int], label: str
) -> str | None:
    first_line = group[0][0]
    if not key:
        return f"{label} is empty"
    earlier = seen.get(key)
    if earlier is not None:
        return (
            f"order {key} appears again (first on line {earlier}); the rows of one order "
            "must be consecutive and each order may appear only once"
        )
    seen[key] = first_line
    return None


# --- values --------------------------------------------------------------------------------


def sharer(limit: int = 50_000) -> Callable[[str], str]:
    """A function that returns one object per distinct string (for the first ``limit``
    distinct ones). Product names, SKUs, currencies and statuses repeat on every line of an
    export; shared, they are spooled (pickled) once per batch and held in memory once."""
    seen: dict[str, str] = {}

    def share(text: str) -> str:
        found = seen.get(text)
        if found is not None:
            return found
        if len(seen) < limit:
            seen[text] = text
        return text

    return share


_CENTS: dict[str, int] = {}  # a shop's prices repeat: most amounts are parsed once
_CENTS_MAX = 100_000


# Larger amounts are typing mistakes, and would not fit a BIGINT once summed.
MAX_CENTS = 10**13
# The length of the String columns that hold the shop's ids (orders, customers, SKUs).
MAX_ID = 120
MAX_QUANTITY = 1_000_000


def parse_cents(text: str, what: str = "amount") -> int:
    """'12.5' -> 1250, exactly (string arithmetic, never a float). Rejects anything else:
    thousands separators, currency signs, more than two decimals that are not zeros."""
    cents = _CENTS.get(text)
    if cents is None:
        cents = _parse_cents(text, what)
        if len(_CENTS) < _CENTS_MAX:
            _CENTS[text] = cents
    return cents


def _parse_cents(text: str, what: str) -> int:
    s = text.strip()
    sign = 1
    if s[:1] in ("-", "+"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    whole, dot, frac = s.partition(".")
    if dot and len(frac) > 2:
        if frac[2:].strip("0"):
            raise ValueError(f"{what} {text.strip()!r} has more than two decimals")
        frac = frac[:2]
    if (
        not (whole or frac)
        or not (whole.isascii() and frac.isascii())
        or (whole and not whole.isdigit())
        or (frac and not frac.isdigit())
    ):
        raise ValueError(f"{what} {text.strip()!r} is not an amount like 1234.50")
    cents = int(whole or "0") * 100 + int((frac + "00")[:2])
    if cents >= MAX_CENTS:
        raise ValueError(f"{what} {text.strip()!r} is too large")
    return sign * cents


def parse_optional_cents(text: str, what: str = "amount") -> int:
    return parse_cents(text, what) if text.strip() else 0


_QUANTITIES: dict[str, int] = {}  # "1", "2", ...: parsed once each


def parse_quantity(text: str) -> int:
    quantity = _QUANTITIES.get(text)
    if quantity is None:
        quantity = _parse_quantity(text)
        if len(_QUANTITIES) < _CENTS_MAX:
            _QUANTITIES[text] = quantity
    return quantity


def _parse_quantity(text: str) -> int:
    s = text.strip()
    if not (s.isascii() and s.isdigit()):
        raise ValueError(f"quantity {s!r} is not a whole number of 0 or more")
    if int(s) > MAX_QUANTITY:
        raise ValueError(f"quantity {s!r} is too large")
    return int(s)


_TRUE = {"yes", "true", "1", "y", "t", "subscribed", "opted_in"}
_FALSE = {"no", "false", "0", "n", "f", "unsubscribed", "not_subscribed", "opted_out"}


def parse_bool(text: str, what: str) -> bool | None:
    """yes/no, true/false, 1/0; empty says nothing (None)."""
    s = text.strip().lower()
    if not s:
        return None
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f"{what} {text.strip()!r} is not yes or no")


class DateParser:
    """Timestamps as Shopify and spreadsheets write them, to aware UTC datetimes.

    '2024-03-05 14:23:11 -0500', ISO 8601 with 'T', 'Z' or '+05:30', a time without an
    offset (the shop's local time), and a date alone (midnight, shop's time zone).
    """

    def __init__(self, tz: tzinfo):
        self.tz = tz

    def __call__(self, text: str, what: str = "date") -> datetime:
        s = text.strip()
        if len(s) > 19 and s[19] == " ":
            # Shopify: '2024-03-05 14:23:11 -0500'; fromisoformat wants no space.
            s = s[:19] + s[20:]
            if s.endswith("UTC"):
                s = s[:-3] + "+00:00"
        try:
            value = datetime.fromisoformat(s)
        except ValueError:
            raise ValueError(
                f"{what} {text.strip()!r} is not a date like 2024-03-05 or "
                "2024-03-05 14:23:11 -0500"
            ) from None
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.tz)
        return value.astimezone(UTC)

    def optional(self, text: str, what: str = "date") -> datetime | None:
        return self(text, what) if text.strip() else None


def split_name(full: str) -> tuple[str | None, str | None]:
    """'Jane Q. Doe' -> ('Jane', 'Q. Doe'): Shopify's orders export has only a full name."""
    parts = full.strip().split(None, 1)
    if not parts:
        return None, None
    return parts[0], (parts[1] if len(parts) > 1 else None)


def check_email(text: str) -> str | None:
    """The email as written (trimmed), or None; a value without '@' is an error."""
    s = text.strip()
    if not s:
        return None
    if "@" not in s or " " in s or len(s) > 320:
        raise ValueError(f"email {s!r} is not an email address")
    return s
