"""One shopper's answer to one question: validation, storage form, and the next step.

The survey shows one question per step and saves each answer at once, so everything here
works on a single answer. `validate_answer` accepts what a form or the JSON endpoint sends
(and the stored `Answer.to_value()` form) and raises only AnswerError, with a reason fit for
the shopper and a short code for the 4xx body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from surveys.definition import (
    CHOICE_TYPES,
    END,
    OTHER_OPTION_ID,
    Question,
    QuestionType,
    SurveyDefinition,
)
from surveys.errors import text_problem

OTHER_TEXT_MAX = 200
EMAIL_MAX = 254
_MAX_CHOSEN = 100  # far more than any question has options; refuses absurd payloads early

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TLD = r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})"
_EMAIL = re.compile(rf"(?P<local>{_ATOM}(?:\.{_ATOM})*)@(?:{_LABEL}\.)+{_TLD}", re.ASCII)

_TRUE = frozenset({"1", "true", "on", "yes", "y"})
_FALSE = frozenset({"", "0", "false", "off", "no", "n"})


class AnswerError(ValueError):
    """The answer cannot be accepted. `reason` is for the shopper, `code` for machines."""

    def __init__(self, reason: str, code: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True, slots=True)
class Answer:
    question_id: str
    type: QuestionType
    option_ids: tuple[str, ...] = ()  # choice questions, in the question's option order
    other_text: str | None = None  # set only when OTHER_OPTION_ID is chosen
    number: int | None = None  # rating and NPS
    text: str | None = None  # short text, stripped
    email: str | None = None  # stripped, spelling kept; match on `email_key`
    consent: bool = False  # marketing consent, only ever True when the shopper ticked it

    @property
    def skipped(self) -> bool:
        """An optional question left blank: it moves the survey on and says nothing."""
        return not (self.option_ids or self.number is not None or self.text or self.email)

    @property
    def email_key(self) -> str | None:
        """The address as emails are matched: trimmed and lower-cased."""
        return self.email.lower() if self.email else None

    def to_value(self) -> dict[str, Any] | None:
        """The JSON-compatible form to store; `validate_answer` reads it back unchanged."""
        if self.skipped:
            return None
        if self.type in CHOICE_TYPES:
            return {"options": list(self.option_ids), "other": self.other_text}
        if self.number is not None:
            return {"number": self.number}
        if self.type is QuestionType.SHORT_TEXT:
            return {"text": self.text}
        return {"email": self.email, "consent": self.consent}


def _fields(raw: Mapping, allowed: set[str]) -> None:
    unexpected = [key for key in raw if key not in allowed]
    if unexpected:
        raise AnswerError(f"Unexpected field {str(unexpected[0])[:40]!r}.", "unexpected_field")


def _clean_text(value: object, limit: int, what: str) -> str:
    if not isinstance(value, str):
        raise AnswerError(f"{what} must be text.", "invalid_type")
    if problem := text_problem(value):
        raise AnswerError(problem, "invalid_text")
    value = value.strip()
    if len(value) > limit:
        raise AnswerError(f"{what} is at most {limit} characters long.", "too_long")
    return value


def _choice(question: Question, raw: object) -> Answer:
    other: object = None
    if isinstance(raw, Mapping):
        _fields(raw, {"option", "options", "other"})
        if "option" in raw and "options" in raw:
            raise AnswerError("Send either option or options.", "unexpected_field")
        chosen = raw.get("options", raw.get("option"))
        other = raw.get("other")
    else:
        chosen = raw
    if chosen is None or chosen == "":
        chosen = []
    elif isinstance(chosen, str):
        chosen = [chosen]
    if not isinstance(chosen, list | tuple):
        raise AnswerError("Choose from the options.", "invalid_type")
    if len(chosen) > _MAX_CHOSEN:
        raise AnswerError("Too many options chosen.", "too_many")
    allowed = question.option_ids
    for option_id in chosen:
        if not isinstance(option_id, str) or option_id not in allowed:
            raise AnswerError("That is not one of the options.", "unknown_option")
    picked = tuple(option_id for option_id in allowed if option_id in chosen)
    if question.type is QuestionType.SINGLE_CHOICE and len(picked) > 1:
        raise AnswerError("Choose only one option.", "too_many")
    other_text = None
    if other is not None:
        # Checked even when "other" is not picked: the type must be right either way.
        other = _clean_text(other, OTHER_TEXT_MAX, "Your answer")
    if OTHER_OPTION_ID in picked:
        if not other:
            raise AnswerError(f"Tell us what '{question.other_label}' is.", "other_missing")
        other_text = other
    return Answer(question.id, question.type, option_ids=picked, other_text=other_text)


def _number(question: Question, raw: object) -> Answer:
    if isinstance(raw, Mapping):
        _fields(raw, {"number"})
        raw = raw.get("number")
    low, high = question.scale  # type: ignore[misc]
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return Answer(question.id, question.type)
    if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
        raw = int(raw.strip()) if len(raw.strip()) <= 3 else high + 1
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise AnswerError(f"Choose a whole number from {low} to {high}.", "invalid_type")
    if not low <= raw <= high:
        raise AnswerError(f"Choose a number from {low} to {high}.", "out_of_range")
    return Answer(question.id, question.type, number=raw)


def _short_text(question: Question, raw: object) -> Answer:
    if isinstance(raw, Mapping):
        _fields(raw, {"text"})
        raw = raw.get("text")
    if raw is None:
        return Answer(question.id, question.type)
    text = _clean_text(raw, question.max_length, "Your answer")
    return Answer(question.id, question.type, text=text or None)


def _consent(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise AnswerError("Consent must be yes or no.", "invalid_type")


def is_valid_email(address: str) -> bool:
    """Whether a trimmed address is plausible: one @, a dotted domain, a real-looking TLD."""
    match = _EMAIL.fullmatch(address)
    return (
        match is not None
        and len(address) <= EMAIL_MAX
        and len(match["local"]) <= 64
        and ".." not in address
    )


def _email(question: Question, raw: object) -> Answer:
    consent: object = False
    if isinstance(raw, Mapping):
        _fields(raw, {"email", "consent"})
        consent = raw.get("consent")
        raw = raw.get("email")
    if raw is None:
        raw = ""
    email = _clean_text(raw, EMAIL_MAX, "The email address")
    agreed = _consent(consent)
    if not email:
        if agreed:
            raise AnswerError("Enter your email address to get our emails.", "email_missing")
        return Answer(question.id, question.type)
    if not is_valid_email(email):
        raise AnswerError("Enter an email address such as name@example.com.", "invalid_email")
    return Answer(question.id, question.type, email=email, consent=agreed)


_VALIDATORS = {
    QuestionType.SINGLE_CHOICE: _choice,
    QuestionType.MULTIPLE_CHOICE: _choice,
    QuestionType.RATING: _number,
    QuestionType.NPS: _number,
    QuestionType.SHORT_TEXT: _short_text,
    QuestionType.EMAIL: _email,
}


def validate_answer(question: Question, raw: object) -> Answer:
    """The validated answer to `question`, or AnswerError saying why not.

    Accepted shapes of `raw`, beside the stored `Answer.to_value()` dict:
    choice questions an option id, a list of ids, or {"option"/"options": ..., "other": text};
    rating and NPS an int or a string of digits; short text a string; email a string or
    {"email": ..., "consent": bool or a checkbox value such as "y"}. None or blank means
    skipped, which only an optional question allows.
    """
    answer = _VALIDATORS[question.type](question, raw)
    if answer.skipped and question.required:
        raise AnswerError("Please answer this question.", "required")
    return answer


def first_question(definition: SurveyDefinition) -> str:
    return definition.questions[0].id


def next_question(
    definition: SurveyDefinition, question_id: str, answer: Answer | None
) -> str | None:
    """The id of the question to show after `question_id`, or None when the survey ends.

    A chosen single-choice option's jump wins (END ends the survey); otherwise the next
    question in order. KeyError if `question_id` is not in the definition.
    """
    index = definition.index_of(question_id)
    question = definition.questions[index]
    if answer is not None and question.type is QuestionType.SINGLE_CHOICE and answer.option_ids:
        option = question.option(answer.option_ids[0])
        if option is not None and option.jump is not None:
            return None if option.jump == END else option.jump
    if index + 1 < len(definition.questions):
        return definition.questions[index + 1].id
    return None


def describe_answer(question: Question, answer: Answer) -> str:
    """The answer in words, as the results page and the CSV export show it (unescaped)."""
    if answer.skipped:
        return ""
    if answer.type in CHOICE_TYPES:
        labels = []
        for option_id in answer.option_ids:
            if option_id == OTHER_OPTION_ID:
                labels.append(f"{question.other_label}: {answer.other_text}")
            else:
                option = question.option(option_id)
                labels.append(option.label if option else option_id)
        return ", ".join(labels)
    if answer.number is not None:
        return str(answer.number)
    if answer.text is not None:
        return answer.text
    return f"{answer.email} ({'consents' if answer.consent else 'no consent'})"
