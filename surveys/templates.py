"""Stock surveys an owner starts from with one click.

Each template is a definition dict, ready for the builder; `template_definition` returns a
fresh copy so edits never leak back into the stock. Option traits follow the dimensions the
segments use: craft, skill, occasion, heard_from, objection.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from surveys.definition import END, SurveyDefinition, parse_definition


def _options(dimension: str, labels: dict[str, str], jump: str | None = None) -> list[dict]:
    return [
        {"id": value, "label": label, "traits": [f"{dimension}:{value}"], "jump": jump}
        for value, label in labels.items()
    ]


def _post_purchase(frequency: str = "once") -> dict[str, Any]:
    return {"kind": "post_purchase", "frequency": frequency}


CRAFT_QUESTION = {
    "id": "craft",
    "type": "multiple_choice",
    "prompt": "What are you making?",
    "required": True,
    "options": _options(
        "craft",
        {
            "knitting": "Knitting",
            "crochet": "Crochet",
            "sewing": "Sewing",
            "quilting": "Quilting",
            "embroidery": "Embroidery",
            "weaving": "Weaving",
            "painting": "Painting",
            "scrapbooking": "Scrapbooking",
            "pottery": "Pottery",
            "jewellery": "Jewellery making",
        },
    ),
    "allow_other": True,
    "other_label": "Something else",
}

SKILL_QUESTION = {
    "id": "skill",
    "type": "single_choice",
    "prompt": "How would you describe your skill?",
    "required": True,
    "options": _options(
        "skill",
        {"beginner": "Beginner", "intermediate": "Intermediate", "experienced": "Experienced"},
    ),
}

OCCASION_QUESTION = {
    "id": "occasion",
    "type": "single_choice",
    "prompt": "Is this a gift or for you?",
    "required": True,
    "options": [
        {"id": "gift", "label": "A gift", "traits": ["occasion:gift"], "jump": None},
        {"id": "self", "label": "For me", "traits": ["occasion:self"], "jump": None},
    ],
}

HEARD_FROM_QUESTION = {
    "id": "heard_from",
    "type": "single_choice",
    "prompt": "How did you hear about us?",
    "required": True,
    "options": _options(
        "heard_from",
        {
            "instagram": "Instagram",
            "facebook": "Facebook",
            "pinterest": "Pinterest",
            "tiktok": "TikTok",
            "youtube": "YouTube",
            "search": "Google or another search engine",
            "friend": "A friend",
            "craft_fair": "A craft fair or market",
            "blog_or_podcast": "A blog or podcast",
        },
    ),
    "allow_other": True,
}

OBJECTION_QUESTION = {
    "id": "objection",
    "type": "single_choice",
    "prompt": "What stopped you today?",
    "required": True,
    "options": [
        # Only "couldn't find" goes on to ask what was missing; every other reason is enough.
        *_options(
            "objection",
            {
                "shipping_cost": "Shipping cost",
                "price": "The price",
                "just_browsing": "Just browsing",
            },
            jump=END,
        ),
        {
            "id": "not_found",
            "label": "I couldn't find what I wanted",
            "traits": ["objection:not_found"],
            "jump": None,
        },
        {
            "id": "come_back_later",
            "label": "I'll come back later",
            "traits": ["objection:come_back_later"],
            "jump": END,
        },
    ],
}

LOOKING_FOR_QUESTION = {
    "id": "looking_for",
    "type": "short_text",
    "prompt": "What were you looking for?",
    "required": False,
    "max_length": 200,
    "placeholder": "",
}

NPS_QUESTION = {
    "id": "recommend",
    "type": "nps",
    "prompt": "How likely are you to recommend us to a friend?",
    "required": True,
    "low_label": "Not at all likely",
    "high_label": "Extremely likely",
}


@dataclass(frozen=True, slots=True)
class SurveyTemplate:
    key: str
    name: str
    description: str
    definition: dict[str, Any]


def _template(key: str, name: str, description: str, title: str, questions, triggers):
    return SurveyTemplate(
        key,
        name,
        description,
        {"version": 1, "title": title, "questions": list(questions), "triggers": triggers},
    )


TEMPLATES: dict[str, SurveyTemplate] = {
    t.key: t
    for t in (
        _template(
            "post_purchase_profile",
            "Post-purchase: get to know your customer",
            "Craft, skill, gift or self, and how they found you: four quick questions.",
            "Tell us about you",
            [CRAFT_QUESTION, SKILL_QUESTION, OCCASION_QUESTION, HEARD_FROM_QUESTION],
            _post_purchase(),
        ),
        _template(
            "craft",
            "What are you making?",
            "Learn which crafts your customers do.",
            "What are you making?",
            [CRAFT_QUESTION],
            _post_purchase(),
        ),
        _template(
            "skill",
            "How would you describe your skill?",
            "Beginner, intermediate or experienced.",
            "Your skill level",
            [SKILL_QUESTION],
            _post_purchase(),
        ),
        _template(
            "occasion",
            "Is this a gift or for you?",
            "Find your gift buyers.",
            "Gift or for you?",
            [OCCASION_QUESTION],
            _post_purchase(),
        ),
        _template(
            "heard_from",
            "How did you hear about us?",
            "See which channels bring customers.",
            "How did you hear about us?",
            [HEARD_FROM_QUESTION],
            _post_purchase(),
        ),
        _template(
            "exit_intent_objection",
            "Exit intent: what stopped you today?",
            "Ask leaving visitors why they did not buy.",
            "Before you go",
            [OBJECTION_QUESTION, LOOKING_FOR_QUESTION],
            {"kind": "exit_intent", "frequency": "until_answered", "url_exclude": ["/checkout*"]},
        ),
        _template(
            "nps",
            "Net Promoter Score",
            "How likely are customers to recommend you, 0 to 10; asked at most every 90 days.",
            "How are we doing?",
            [NPS_QUESTION],
            {"kind": "post_purchase", "frequency": "every_n_days", "frequency_days": 90},
        ),
    )
}


def template_definition(key: str) -> dict[str, Any]:
    """A fresh copy of the template's definition dict; KeyError for an unknown key."""
    return copy.deepcopy(TEMPLATES[key].definition)


def template_survey(key: str) -> SurveyDefinition:
    return parse_definition(template_definition(key))
