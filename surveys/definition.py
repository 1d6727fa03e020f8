"""What a survey is: a title, questions with options, and its trigger settings.

The web app stores `SurveyDefinition.to_dict()` in a JSON column and keeps builder edits as
that same dict; `validate_definition` reports every problem with the path of the field it
belongs to, and `parse_definition` turns a valid dict into frozen dataclasses.

Ids are stable: a question's or option's id never changes when its text does, so stored
answers keep meaning what they meant. Options may jump to a later question or to `"end"`;
jumps never go back, so every survey ends.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from surveys.errors import DefinitionError, DefinitionInvalid, text_problem
from surveys.traits import Trait, TraitError, parse_trait
from surveys.triggers import TriggerKind, TriggerSettings, parse_triggers, validate_triggers

DEFINITION_VERSION = 1
END = "end"  # jump target that ends the survey
OTHER_OPTION_ID = "other"  # the free-text "other" option of a choice question

ID_MAX = 40
TITLE_MAX = 120
PROMPT_MAX = 300
LABEL_MAX = 120
CONSENT_LABEL_MAX = 300
THANK_YOU_MAX = 300
MAX_QUESTIONS = 20
MAX_OPTIONS = 15
MAX_TRAITS_PER_OPTION = 5
SHORT_TEXT_DEFAULT = 200
SHORT_TEXT_LIMIT = 1000
DEFAULT_THANK_YOU = "Thank you!"
DEFAULT_OTHER_LABEL = "Other"
DEFAULT_CONSENT_LABEL = "Yes, email me news and offers. I can unsubscribe at any time."

_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")


class QuestionType(StrEnum):
    SINGLE_CHOICE = "single_choice"
    MULTIPLE_CHOICE = "multiple_choice"
    RATING = "rating"  # 1 to 5
    NPS = "nps"  # 0 to 10
    SHORT_TEXT = "short_text"
    EMAIL = "email"  # an address and an explicit, never pre-checked marketing consent


CHOICE_TYPES = frozenset({QuestionType.SINGLE_CHOICE, QuestionType.MULTIPLE_CHOICE})
SCALES = {QuestionType.RATING: (1, 5), QuestionType.NPS: (0, 10)}

_COMMON_KEYS = frozenset({"id", "type", "prompt", "required"})
_TYPE_KEYS = {
    QuestionType.SINGLE_CHOICE: frozenset({"options", "allow_other", "other_label"}),
    QuestionType.MULTIPLE_CHOICE: frozenset({"options", "allow_other", "other_label"}),
    QuestionType.RATING: frozenset({"low_label", "high_label"}),
    QuestionType.NPS: frozenset({"low_label", "high_label"}),
    QuestionType.SHORT_TEXT: frozenset({"max_length", "placeholder"}),
    QuestionType.EMAIL: frozenset({"consent_label", "placeholder"}),
}
_OPTION_KEYS = frozenset({"id", "label", "traits", "jump"})
_TOP_KEYS = frozenset({"version", "title", "thank_you", "questions", "triggers"})
_PRECHECKED_CONSENT_KEYS = frozenset({"consent_checked", "consent_default", "consent"})


@dataclass(frozen=True, slots=True)
class Option:
    id: str
    label: str
    traits: tuple[Trait, ...] = ()
    jump: str | None = None  # a later question's id, END, or None for the next question

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "traits": [str(t) for t in self.traits],
            "jump": self.jump,
        }


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    type: QuestionType
    prompt: str
    required: bool = True
    options: tuple[Option, ...] = ()  # choice questions
    allow_other: bool = False  # choice questions: adds OTHER_OPTION_ID with free text
    other_label: str = DEFAULT_OTHER_LABEL
    low_label: str = ""  # rating and NPS: words under the ends of the scale
    high_label: str = ""
    max_length: int = SHORT_TEXT_DEFAULT  # short text
    placeholder: str = ""  # short text and email
    consent_label: str = DEFAULT_CONSENT_LABEL  # email

    @property
    def is_choice(self) -> bool:
        return self.type in CHOICE_TYPES

    @property
    def scale(self) -> tuple[int, int] | None:
        """(lowest, highest) for rating and NPS questions."""
        return SCALES.get(self.type)

    def option(self, option_id: str) -> Option | None:
        return next((o for o in self.options if o.id == option_id), None)

    @property
    def option_ids(self) -> tuple[str, ...]:
        """Every id a shopper may choose, the "other" option included when allowed."""
        ids = tuple(o.id for o in self.options)
        return (*ids, OTHER_OPTION_ID) if self.allow_other else ids

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "type": self.type.value,
            "prompt": self.prompt,
            "required": self.required,
        }
        for key in sorted(_TYPE_KEYS[self.type]):
            value = getattr(self, key)
            data[key] = [o.to_dict() for o in value] if key == "options" else value
        return data


@dataclass(frozen=True, slots=True)
class SurveyDefinition:
    title: str
    questions: tuple[Question, ...]
    triggers: TriggerSettings = field(default_factory=TriggerSettings)
    thank_you: str = DEFAULT_THANK_YOU

    @property
    def kind(self) -> TriggerKind:
        """The survey's kind is its trigger's kind: one place decides when it shows."""
        return self.triggers.kind

    def question(self, question_id: str) -> Question:
        """The question with this id; KeyError if there is none."""
        for question in self.questions:
            if question.id == question_id:
                return question
        raise KeyError(question_id)

    def index_of(self, question_id: str) -> int:
        for i, question in enumerate(self.questions):
            if question.id == question_id:
                return i
        raise KeyError(question_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": DEFINITION_VERSION,
            "title": self.title,
            "thank_you": self.thank_you,
            "questions": [q.to_dict() for q in self.questions],
            "triggers": self.triggers.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: object) -> SurveyDefinition:
        return parse_definition(data)


# --- validation ------------------------------------------------------------------------------


def _text(
    value: object, path: str, what: str, limit: int, *, required: bool = True
) -> list[DefinitionError]:
    if not isinstance(value, str):
        return [DefinitionError(path, f"{what} must be text.")]
    if problem := text_problem(value):
        return [DefinitionError(path, problem)]
    if required and not value.strip():
        return [DefinitionError(path, f"Enter {what.lower()}.")]
    if len(value.strip()) > limit:
        return [DefinitionError(path, f"{what} is at most {limit} characters long.")]
    return []


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _id(value: object, path: str) -> list[DefinitionError]:
    if not isinstance(value, str) or not value:
        return [DefinitionError(path, "An id is required.")]
    if len(value) > ID_MAX or not _ID.fullmatch(value):
        return [
            DefinitionError(
                path,
                f"An id is up to {ID_MAX} lower-case letters, digits, _ and -,"
                " starting with a letter or digit.",
            )
        ]
    return []


def _bool(data: Mapping, key: str, path: str) -> list[DefinitionError]:
    if key in data and not isinstance(data[key], bool):
        return [DefinitionError(f"{path}.{key}", "Must be true or false.")]
    return []


def _unknown_keys(data: Mapping, allowed: frozenset[str], path: str, what: str):
    errors = []
    for key in data:
        if key in allowed:
            continue
        if key in _PRECHECKED_CONSENT_KEYS:
            message = "Marketing consent is never pre-checked: the shopper ticks it."
        else:
            message = f"Not a setting of {what}."
        errors.append(DefinitionError(f"{path}.{key}", message))
    return errors


def _validate_option(
    option: object,
    path: str,
    question_type: QuestionType,
    position: int,
    positions: Mapping[str, int],
) -> list[DefinitionError]:
    if not isinstance(option, Mapping):
        return [DefinitionError(path, "An option must be an object.")]
    errors = _unknown_keys(option, _OPTION_KEYS, path, "an option")
    errors += _id(option.get("id"), f"{path}.id")
    if option.get("id") == OTHER_OPTION_ID:
        errors.append(
            DefinitionError(f"{path}.id", "'other' is kept for the free-text 'Other' option.")
        )
    errors += _text(option.get("label"), f"{path}.label", "A label", LABEL_MAX)
    traits = option.get("traits", [])
    if not isinstance(traits, list):
        errors.append(DefinitionError(f"{path}.traits", "Must be a list of traits."))
        traits = []
    if len(traits) > MAX_TRAITS_PER_OPTION:
        errors.append(
            DefinitionError(f"{path}.traits", f"At most {MAX_TRAITS_PER_OPTION} traits per option.")
        )
    seen: set[Trait] = set()
    for k, text in enumerate(traits):
        try:
            trait = parse_trait(text)
        except TraitError as exc:
            errors.append(DefinitionError(f"{path}.traits[{k}]", str(exc)))
            continue
        if trait in seen:
            errors.append(DefinitionError(f"{path}.traits[{k}]", f"{trait} is listed twice."))
        seen.add(trait)
    jump = option.get("jump")
    if jump is not None:
        jump_path = f"{path}.jump"
        if question_type is not QuestionType.SINGLE_CHOICE:
            errors.append(
                DefinitionError(
                    jump_path,
                    "Jumps work on single-choice questions only: here a shopper can tick"
                    " several options.",
                )
            )
        elif not isinstance(jump, str):
            errors.append(DefinitionError(jump_path, "A jump names a question id or 'end'."))
        elif jump != END:
            if jump not in positions:
                errors.append(DefinitionError(jump_path, f"No question has the id {jump!r}."))
            elif positions[jump] <= position:
                errors.append(DefinitionError(jump_path, "A jump can only go to a later question."))
    return errors


def _validate_choices(data: Mapping, path: str, qtype: QuestionType, position: int, positions):
    errors = _bool(data, "allow_other", path)
    allow_other = data.get("allow_other") is True
    if "other_label" in data:
        errors += _text(data["other_label"], f"{path}.other_label", "A label", LABEL_MAX)
    options = data.get("options")
    if not isinstance(options, list):
        return [*errors, DefinitionError(f"{path}.options", "Add the options to choose from.")]
    if len(options) + allow_other < 2:
        errors.append(DefinitionError(f"{path}.options", "Give at least two options."))
    if len(options) > MAX_OPTIONS:
        errors.append(DefinitionError(f"{path}.options", f"At most {MAX_OPTIONS} options."))
    ids: set[str] = set()
    labels: set[str] = set()
    for j, option in enumerate(options):
        option_path = f"{path}.options[{j}]"
        errors += _validate_option(option, option_path, qtype, position, positions)
        if not isinstance(option, Mapping):
            continue
        option_id, label = option.get("id"), option.get("label")
        if isinstance(option_id, str):
            if option_id in ids:
                errors.append(
                    DefinitionError(
                        f"{option_path}.id", f"Another option already has the id {option_id!r}."
                    )
                )
            ids.add(option_id)
        if isinstance(label, str) and label.strip():
            key = label.strip().casefold()
            if key in labels:
                errors.append(
                    DefinitionError(f"{option_path}.label", "Another option has the same label.")
                )
            labels.add(key)
    return errors


def _validate_question(
    question: object, path: str, position: int, positions: Mapping[str, int]
) -> list[DefinitionError]:
    if not isinstance(question, Mapping):
        return [DefinitionError(path, "A question must be an object.")]
    errors = _id(question.get("id"), f"{path}.id")
    if question.get("id") == END:
        errors.append(DefinitionError(f"{path}.id", "'end' is kept for jumps that end the survey."))
    errors += _text(question.get("prompt"), f"{path}.prompt", "The question", PROMPT_MAX)
    errors += _bool(question, "required", path)
    raw_type = question.get("type")
    if not isinstance(raw_type, str) or raw_type not in {t.value for t in QuestionType}:
        allowed = ", ".join(t.value for t in QuestionType)
        return [*errors, DefinitionError(f"{path}.type", f"Choose a question type: {allowed}.")]
    qtype = QuestionType(raw_type)
    errors += _unknown_keys(
        question, _COMMON_KEYS | _TYPE_KEYS[qtype], path, f"a {qtype.value} question"
    )
    if qtype in CHOICE_TYPES:
        errors += _validate_choices(question, path, qtype, position, positions)
    elif qtype in SCALES:
        for key in ("low_label", "high_label"):
            if key in question:
                errors += _text(
                    question[key], f"{path}.{key}", "A label", LABEL_MAX, required=False
                )
    elif qtype is QuestionType.SHORT_TEXT:
        limit = question.get("max_length", SHORT_TEXT_DEFAULT)
        if not _is_int(limit) or not 1 <= limit <= SHORT_TEXT_LIMIT:
            errors.append(
                DefinitionError(
                    f"{path}.max_length",
                    f"The length limit is a whole number from 1 to {SHORT_TEXT_LIMIT}.",
                )
            )
    else:
        if "consent_label" in question:
            errors += _text(
                question["consent_label"],
                f"{path}.consent_label",
                "The consent text",
                CONSENT_LABEL_MAX,
            )
    if "placeholder" in question and qtype in (QuestionType.SHORT_TEXT, QuestionType.EMAIL):
        errors += _text(
            question["placeholder"],
            f"{path}.placeholder",
            "A placeholder",
            LABEL_MAX,
            required=False,
        )
    return errors


def validate_definition(data: object) -> list[DefinitionError]:
    """Every problem in a survey definition dict; an empty list means it is valid.

    Never raises, whatever `data` is: the builder shows each error next to its field.
    """
    if not isinstance(data, Mapping):
        return [DefinitionError("", "A survey definition must be an object.")]
    errors = _unknown_keys(data, _TOP_KEYS, "", "a survey")
    errors = [DefinitionError(e.path.lstrip("."), e.message) for e in errors]
    if data.get("version", DEFINITION_VERSION) != DEFINITION_VERSION:
        errors.append(DefinitionError("version", f"Only version {DEFINITION_VERSION} is known."))
    errors += _text(data.get("title"), "title", "A title", TITLE_MAX)
    if "thank_you" in data:
        errors += _text(data["thank_you"], "thank_you", "The thank-you text", THANK_YOU_MAX)
    questions = data.get("questions")
    if not isinstance(questions, list):
        errors.append(DefinitionError("questions", "Add at least one question."))
        questions = []
    elif not questions:
        errors.append(DefinitionError("questions", "Add at least one question."))
    elif len(questions) > MAX_QUESTIONS:
        errors.append(DefinitionError("questions", f"At most {MAX_QUESTIONS} questions."))
    positions: dict[str, int] = {}
    for i, question in enumerate(questions):
        if not isinstance(question, Mapping) or not isinstance(question.get("id"), str):
            continue
        question_id = question["id"]
        if question_id in positions:
            errors.append(
                DefinitionError(
                    f"questions[{i}].id", f"Another question already has the id {question_id!r}."
                )
            )
        else:
            positions[question_id] = i
    for i, question in enumerate(questions):
        errors += _validate_question(question, f"questions[{i}]", i, positions)
    if "triggers" in data:
        errors += validate_triggers(data["triggers"], "triggers")
    return errors


# --- parsing ---------------------------------------------------------------------------------


def _parse_option(data: Mapping) -> Option:
    return Option(
        id=data["id"],
        label=data["label"].strip(),
        traits=tuple(parse_trait(t) for t in data.get("traits", [])),
        jump=data.get("jump"),
    )


def _parse_question(data: Mapping) -> Question:
    qtype = QuestionType(data["type"])
    fields: dict[str, Any] = {
        "id": data["id"],
        "type": qtype,
        "prompt": data["prompt"].strip(),
        "required": data.get("required", True),
    }
    for key in _TYPE_KEYS[qtype]:
        if key not in data:
            continue
        value = data[key]
        if key == "options":
            value = tuple(_parse_option(o) for o in value)
        elif isinstance(value, str):
            value = value.strip()
        fields[key] = value
    return Question(**fields)


def parse_definition(data: object) -> SurveyDefinition:
    """A SurveyDefinition from its dict, or DefinitionInvalid listing every problem.

    Text is stripped and traits normalised, so `parse_definition(d).to_dict()` is the
    canonical form to store.
    """
    errors = validate_definition(data)
    if errors:
        raise DefinitionInvalid(errors)
    assert isinstance(data, Mapping)
    return SurveyDefinition(
        title=data["title"].strip(),
        questions=tuple(_parse_question(q) for q in data["questions"]),
        triggers=parse_triggers(data.get("triggers", {})),
        thank_you=data.get("thank_you", DEFAULT_THANK_YOU).strip(),
    )


def suggest_id(label: str, taken: Iterable[str], fallback: str = "q") -> str:
    """A new stable id made from a label ("Shipping cost" -> "shipping_cost"), unlike `taken`.

    The builder calls this once, when a question or option is created; later label edits
    keep the id.
    """
    folded = unicodedata.normalize("NFKD", label.lower())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    base = re.sub(r"[^a-z0-9]+", "_", folded).strip("_")[:32].rstrip("_") or fallback
    reserved = {END, OTHER_OPTION_ID}
    taken = set(taken) | reserved
    if base not in taken:
        return base
    n = 2
    while f"{base}_{n}" in taken:
        n += 1
    return f"{base}_{n}"


def new_option(label: str, taken: Iterable[str]) -> dict[str, Any]:
    """The dict of a fresh option for the builder, its id made from `label`."""
    return {
        "id": suggest_id(label, taken, fallback="option"),
        "label": label,
        "traits": [],
        "jump": None,
    }


def new_question(question_type: QuestionType | str, taken: Iterable[str]) -> dict[str, Any]:
    """The dict of a fresh question of this type for the builder, valid except its prompt.

    Ids run q1, q2, ... skipping `taken`. Choice questions start with two options, so the
    owner edits rather than builds from nothing; the prompt is left for the owner to write.
    """
    qtype = QuestionType(question_type)
    taken = set(taken)
    number = next(n for n in range(1, len(taken) + 2) if f"q{n}" not in taken)
    # Asking for an address is a favour: shoppers may skip it unless the owner insists.
    required = qtype is not QuestionType.EMAIL
    question = Question(id=f"q{number}", type=qtype, prompt="", required=required)
    data = question.to_dict()
    if qtype in CHOICE_TYPES:
        first = new_option("Option 1", [])
        data["options"] = [first, new_option("Option 2", [first["id"]])]
    return data
