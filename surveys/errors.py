"""Errors shared by the modules that validate owner input, and the checks on stored text."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DefinitionError:
    """One problem in a survey definition, at a path the builder can show it next to.

    Paths read like Python: `title`, `questions[2].options[1].traits[0]`,
    `triggers.url_include[0]`. An empty path means the definition as a whole.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class DefinitionInvalid(ValueError):
    """Raised by the parsers when validation found problems; `errors` lists them all."""

    def __init__(self, errors: list[DefinitionError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors) or "invalid survey definition")


def text_problem(value: str) -> str | None:
    """Why a string cannot be stored, or None.

    PostgreSQL rejects NUL in text columns and a lone surrogate (legal in JSON, "\\ud800")
    cannot be encoded as UTF-8; either would surface as a server error far from its cause.
    """
    if "\x00" in value:
        return "Contains a character that cannot be stored (NUL)."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Contains characters that are not valid text."
    return None


def errors_by_path(errors: list[DefinitionError]) -> dict[str, list[str]]:
    """Messages grouped by path, as a builder template looks them up next to each field."""
    grouped: dict[str, list[str]] = {}
    for error in errors:
        grouped.setdefault(error.path, []).append(error.message)
    return grouped
