"""Traits: what a survey option says about the shopper who picks it, written `dimension:value`.

`craft:knitting`, `skill:beginner`, `occasion:gift`, `objection:shipping_cost`,
`heard_from:instagram`. Segments and customer profiles key on these strings, so there is one
spelling: lower-case ASCII, words joined by `_`. `parse_trait` turns what an owner typed
("Heard from: Instagram Ads") into that spelling or says why it cannot.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from surveys.answers import Answer
    from surveys.definition import SurveyDefinition

DIMENSION_MAX = 32
VALUE_MAX = 64
TRAIT_MAX = DIMENSION_MAX + 1 + VALUE_MAX

_DIMENSION = re.compile(r"[a-z][a-z0-9_]*")
_VALUE = re.compile(r"[a-z0-9][a-z0-9_]*")
_SEPARATORS = re.compile(r"[\s\-]+")


class TraitError(ValueError):
    """The text is not a trait; the message says why, in words for the shop owner."""


@dataclass(frozen=True, slots=True, order=True)
class Trait:
    dimension: str
    value: str

    def __str__(self) -> str:
        return f"{self.dimension}:{self.value}"


def _normalise_part(text: str) -> str:
    # Owners type "Crochê" or "Word of mouth"; fold accents and spaces rather than refuse them.
    folded = unicodedata.normalize("NFKD", text.strip().lower())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return _SEPARATORS.sub("_", folded).strip("_")


def parse_trait(text: str) -> Trait:
    """The normalised trait written in `text`, or TraitError saying what is wrong."""
    if not isinstance(text, str):
        raise TraitError("A trait must be text such as craft:knitting.")
    if len(text) > TRAIT_MAX * 2:
        raise TraitError(f"A trait is at most {TRAIT_MAX} characters long.")
    if ":" not in text:
        raise TraitError("Write a trait as dimension:value, for example craft:knitting.")
    raw_dimension, raw_value = text.split(":", 1)
    dimension = _normalise_part(raw_dimension)
    value = _normalise_part(raw_value)
    if not dimension:
        raise TraitError("The part before ':' (the dimension, such as craft) is missing.")
    if not value:
        raise TraitError("The part after ':' (the value, such as knitting) is missing.")
    if not _DIMENSION.fullmatch(dimension):
        raise TraitError(
            "A dimension starts with a letter and uses only letters, digits and _"
            f" (got {raw_dimension.strip()!r})."
        )
    if not _VALUE.fullmatch(value):
        raise TraitError(f"A value uses only letters, digits and _ (got {raw_value.strip()!r}).")
    if len(dimension) > DIMENSION_MAX:
        raise TraitError(f"A dimension is at most {DIMENSION_MAX} characters long.")
    if len(value) > VALUE_MAX:
        raise TraitError(f"A value is at most {VALUE_MAX} characters long.")
    return Trait(dimension, value)


def normalise_trait(text: str) -> str:
    """The canonical spelling of a trait (`"Craft: Knitting"` -> `"craft:knitting"`)."""
    return str(parse_trait(text))


@dataclass(frozen=True, slots=True)
class TraitEvidence:
    """A trait together with the answer that declared it, so the app can say why."""

    trait: Trait
    question_id: str
    option_id: str
    option_label: str


def trait_evidence(definition: SurveyDefinition, answers: Iterable[Answer]) -> list[TraitEvidence]:
    """Every (trait, chosen option) pair in the answers, in question and option order.

    Answers to questions or options no longer in the definition (the owner edited the survey
    after the shopper answered) declare nothing; the free-text "other" option carries no traits.
    """
    chosen = {a.question_id: set(a.option_ids) for a in answers}
    evidence = []
    for question in definition.questions:
        picked = chosen.get(question.id)
        if not picked:
            continue
        for option in question.options:
            if option.id in picked:
                evidence.extend(
                    TraitEvidence(trait, question.id, option.id, option.label)
                    for trait in option.traits
                )
    return evidence


def traits_for_answers(definition: SurveyDefinition, answers: Iterable[Answer]) -> list[Trait]:
    """The distinct traits a response's answers declare, first occurrence first."""
    seen: dict[Trait, None] = {}
    for item in trait_evidence(definition, answers):
        seen.setdefault(item.trait, None)
    return list(seen)
