"""The builder's edits to a survey's draft: each takes the draft dict and returns a new one.

A draft may be invalid while the owner works on it (a new question has no prompt yet, a
trait is mistyped): the builder keeps what was typed, shows `validate_definition`'s errors
beside each field, and publishing refuses until none are left. Questions and options are
addressed by their stable ids, never by their position, so a stale page cannot edit the
wrong one. Returning a new dict matters: the JSON column does not see in-place changes.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

from surveys.definition import (
    CHOICE_TYPES,
    END,
    MAX_OPTIONS,
    MAX_QUESTIONS,
    Question,
    QuestionType,
    SurveyDefinition,
    new_option,
    new_question,
)
from surveys.traits import TraitError, normalise_trait

COMMON_KEYS = ("id", "type", "prompt", "required")
DIRECTIONS = ("up", "down")


class DraftError(ValueError):
    """The edit cannot be made (too many questions, say); the message is for the owner."""


def blank_definition() -> dict[str, Any]:
    """A valid one-question survey, for owners who start from nothing rather than a template."""
    question = Question(
        id="q1",
        type=QuestionType.SHORT_TEXT,
        prompt="Is there anything we could do better?",
        required=False,
    )
    return SurveyDefinition(title="New survey", questions=(question,)).to_dict()


def type_keys(question_type: QuestionType | str) -> frozenset[str]:
    """The settings a question of this type has besides id, type, prompt and required."""
    return frozenset(new_question(question_type, []).keys()) - set(COMMON_KEYS)


def find_question(definition: dict, question_id: str) -> tuple[int, dict]:
    """(position, question dict); KeyError when the draft has no such question."""
    for index, question in enumerate(definition.get("questions") or []):
        if question.get("id") == question_id:
            return index, question
    raise KeyError(question_id)


def find_option(question: dict, option_id: str) -> tuple[int, dict]:
    for index, option in enumerate(question.get("options") or []):
        if option.get("id") == option_id:
            return index, option
    raise KeyError(option_id)


def split_traits(text: str) -> list[str]:
    """Traits typed as "craft:knitting, skill:beginner", each in its one spelling.

    Text that is not a trait is kept as typed, so the validator can say what is wrong with it
    beside the field instead of the owner's typing silently disappearing.
    """
    traits: list[str] = []
    for raw in re.split(r"[,\n]", text or ""):
        raw = raw.strip()
        if not raw:
            continue
        try:
            trait = normalise_trait(raw)
        except TraitError:
            trait = raw
        if trait not in traits:
            traits.append(trait)
    return traits


def _moved(items: list, index: int, direction: str) -> list:
    other = index - 1 if direction == "up" else index + 1
    if direction not in DIRECTIONS or not 0 <= other < len(items):
        return items
    items[index], items[other] = items[other], items[index]
    return items


# --- the survey as a whole -------------------------------------------------------------------


def set_details(definition: dict, title: str, thank_you: str) -> dict:
    draft = copy.deepcopy(definition)
    draft["title"] = title
    draft["thank_you"] = thank_you
    return draft


def set_triggers(definition: dict, triggers: dict[str, Any]) -> dict:
    draft = copy.deepcopy(definition)
    draft["triggers"] = triggers
    return draft


# --- questions -------------------------------------------------------------------------------


def add_question(
    definition: dict, question_type: QuestionType | str, taken: Iterable[str] = ()
) -> tuple[dict, str]:
    """The draft with a new question at the end, and its id.

    `taken` adds ids that must not come back (published or answered questions), so a new
    question never inherits the answers of a deleted one.
    """
    draft = copy.deepcopy(definition)
    questions = draft.setdefault("questions", [])
    if len(questions) >= MAX_QUESTIONS:
        raise DraftError(f"A survey has at most {MAX_QUESTIONS} questions.")
    ids = {q.get("id") for q in questions} | set(taken)
    question = new_question(question_type, ids)
    questions.append(question)
    return draft, question["id"]


def update_question(definition: dict, question_id: str, fields: dict[str, Any]) -> dict:
    """The draft with the question's prompt, required flag and type settings changed.

    A change of type keeps the prompt and, between the two choice types, the options;
    the old type's other settings go. Jumps go when several options may be ticked.
    """
    draft = copy.deepcopy(definition)
    index, question = find_question(draft, question_id)
    new_type = QuestionType(fields.get("type") or question["type"])
    if new_type != question["type"]:
        replacement = new_question(new_type, [])
        if new_type in CHOICE_TYPES and question["type"] in CHOICE_TYPES:
            for key in ("options", "allow_other", "other_label"):
                replacement[key] = question.get(key, replacement[key])
        question = {**replacement, "id": question["id"], "prompt": question.get("prompt", "")}
    else:
        question.update({k: v for k, v in fields.items() if k in type_keys(new_type)})
    question["prompt"] = fields.get("prompt", question.get("prompt", ""))
    question["required"] = bool(fields.get("required", question.get("required", True)))
    if new_type is not QuestionType.SINGLE_CHOICE:
        for option in question.get("options") or []:
            option["jump"] = None
    draft["questions"][index] = question
    return draft


def move_question(definition: dict, question_id: str, direction: str) -> dict:
    draft = copy.deepcopy(definition)
    index, _ = find_question(draft, question_id)
    _moved(draft["questions"], index, direction)
    return draft


def delete_question(definition: dict, question_id: str) -> dict:
    """The draft without the question; options that jumped to it go on to the next one."""
    draft = copy.deepcopy(definition)
    index, _ = find_question(draft, question_id)
    del draft["questions"][index]
    for question in draft["questions"]:
        for option in question.get("options") or []:
            if option.get("jump") == question_id:
                option["jump"] = None
    return draft


# --- options ---------------------------------------------------------------------------------


def add_option(definition: dict, question_id: str, taken: Iterable[str] = ()) -> tuple[dict, str]:
    """The draft with a new option ("Option N") on a choice question, and its id."""
    draft = copy.deepcopy(definition)
    _, question = find_question(draft, question_id)
    if question.get("type") not in CHOICE_TYPES:
        raise DraftError("Only choice questions have options.")
    options = question.setdefault("options", [])
    if len(options) >= MAX_OPTIONS:
        raise DraftError(f"A question has at most {MAX_OPTIONS} options.")
    labels = {str(o.get("label", "")).casefold() for o in options}
    number = next(
        n for n in range(len(options) + 1, 2 * MAX_OPTIONS + 2) if f"option {n}" not in labels
    )
    option = new_option(f"Option {number}", {o.get("id") for o in options} | set(taken))
    options.append(option)
    return draft, option["id"]


def update_option(
    definition: dict,
    question_id: str,
    option_id: str,
    *,
    label: str,
    traits: list[str],
    jump: str | None,
) -> dict:
    draft = copy.deepcopy(definition)
    _, question = find_question(draft, question_id)
    _, option = find_option(question, option_id)
    option["label"] = label
    option["traits"] = traits
    option["jump"] = jump if question.get("type") == QuestionType.SINGLE_CHOICE else None
    return draft


def move_option(definition: dict, question_id: str, option_id: str, direction: str) -> dict:
    draft = copy.deepcopy(definition)
    _, question = find_question(draft, question_id)
    index, _ = find_option(question, option_id)
    _moved(question["options"], index, direction)
    return draft


def delete_option(definition: dict, question_id: str, option_id: str) -> dict:
    draft = copy.deepcopy(definition)
    _, question = find_question(draft, question_id)
    index, _ = find_option(question, option_id)
    del question["options"][index]
    return draft


def jump_targets(definition: dict, question_id: str) -> list[tuple[str, str]]:
    """(value, label) for an option's jump: the next question, a later one, or the end."""
    index, _ = find_question(definition, question_id)
    later = [
        (q["id"], f"Question {i + 1}: {q.get('prompt') or '(no question yet)'}")
        for i, q in enumerate(definition["questions"])
        if i > index and isinstance(q.get("id"), str)
    ]
    return [("", "Next question"), *later, (END, "End the survey")]
