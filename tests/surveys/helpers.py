"""Survey definitions for the domain tests."""

from __future__ import annotations

from surveys.definition import (
    validate_definition,
)


def option(id_, label, traits=(), jump=None):
    return {"id": id_, "label": label, "traits": list(traits), "jump": jump}


def valid_definition() -> dict:
    return {
        "version": 1,
        "title": "After your order",
        "thank_you": "Thanks!",
        "questions": [
            {
                "id": "craft",
                "type": "single_choice",
                "prompt": "What are you making?",
                "options": [
                    option("knitting", "Knitting", ["craft:knitting"]),
                    option("crochet", "Crochet", ["craft:crochet", "skill:beginner"]),
                    option("nothing", "Nothing yet", jump="end"),
                    option("sewing", "Sewing", ["craft:sewing"], jump="email"),
                ],
                "allow_other": True,
            },
            {
                "id": "extras",
                "type": "multiple_choice",
                "prompt": "What else?",
                "required": False,
                "options": [
                    option("yarn", "Yarn", ["interest:yarn"]),
                    option("needles", "Needles"),
                    option("patterns", "Patterns", ["interest:patterns"]),
                ],
                "allow_other": True,
                "other_label": "Something else",
            },
            {"id": "stars", "type": "rating", "prompt": "How was it?", "low_label": "Bad"},
            {"id": "nps", "type": "nps", "prompt": "Recommend us?", "required": False},
            {"id": "note", "type": "short_text", "prompt": "Anything else?", "max_length": 20},
            {"id": "email", "type": "email", "prompt": "Your email?", "required": False},
        ],
        "triggers": {"kind": "post_purchase"},
    }


def errors_of(data) -> dict[str, str]:
    return {e.path: e.message for e in validate_definition(data)}


def edited(**changes):
    """A valid definition with changes applied at dotted paths (`questions.0.options.1.id`)."""
    data = valid_definition()
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = data
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if last.isdigit():
            last = int(last)
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return data


DELETE = object()
