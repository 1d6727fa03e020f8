"""Unit tests of the survey domain (surveys/): no database, no Flask."""

from __future__ import annotations

import pytest

from surveys.answers import (
    next_question,
    validate_answer,
)
from surveys.definition import (
    parse_definition,
    validate_definition,
)
from surveys.export import safe_cell, safe_row
from surveys.nps import nps_breakdown, nps_score
from surveys.templates import TEMPLATES, template_definition, template_survey
from surveys.triggers import (
    TriggerKind,
)

# --- templates -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(TEMPLATES))
def test_every_template_validates_cleanly(key):
    data = template_definition(key)
    assert validate_definition(data) == []
    assert parse_definition(data).to_dict() == template_survey(key).to_dict()


def test_template_copies_are_independent():
    first = template_definition("craft")
    first["questions"][0]["prompt"] = "changed"
    assert template_definition("craft")["questions"][0]["prompt"] == "What are you making?"


def test_templates_tag_options_with_the_segment_dimensions():
    profile = template_survey("post_purchase_profile")
    assert profile.kind is TriggerKind.POST_PURCHASE
    traits = {str(t) for q in profile.questions for o in q.options for t in o.traits}
    for trait in (
        "craft:knitting",
        "craft:crochet",
        "craft:sewing",
        "craft:painting",
        "craft:scrapbooking",
        "craft:pottery",
        "skill:beginner",
        "skill:intermediate",
        "skill:experienced",
        "occasion:gift",
        "occasion:self",
        "heard_from:instagram",
    ):
        assert trait in traits
    exit_intent = template_survey("exit_intent_objection")
    assert exit_intent.kind is TriggerKind.EXIT_INTENT
    objection = exit_intent.questions[0]
    assert objection.prompt == "What stopped you today?"
    assert [str(o.traits[0]) for o in objection.options] == [
        "objection:shipping_cost",
        "objection:price",
        "objection:just_browsing",
        "objection:not_found",
        "objection:come_back_later",
    ]


def test_exit_intent_template_asks_what_was_missing_only_after_not_found():
    survey = template_survey("exit_intent_objection")
    question = survey.question("objection")
    not_found = validate_answer(question, "not_found")
    price = validate_answer(question, "price")
    assert next_question(survey, "objection", not_found) == "looking_for"
    assert next_question(survey, "objection", price) is None


# --- results -------------------------------------------------------------------------------


def test_nps_is_promoters_minus_detractors_as_a_percentage():
    scores = [10, 9, 9, 8, 7, 6, 0, 10, 3, 5]  # 4 promoters, 2 passives, 4 detractors
    breakdown = nps_breakdown(scores)
    assert (breakdown.promoters, breakdown.passives, breakdown.detractors) == (4, 2, 4)
    assert breakdown.total == 10
    assert breakdown.score == 0.0
    assert nps_score([10, 10, 10]) == 100.0
    assert nps_score([0, 6]) == -100.0
    assert nps_score([9, 7, 7]) == 33.3
    assert nps_score([9, 0, 1]) == -33.3
    assert nps_score([]) is None


@pytest.mark.parametrize("bad", [11, -1, 7.5, True, "9"])
def test_nps_rejects_scores_outside_the_scale(bad):
    with pytest.raises(ValueError):
        nps_score([9, bad])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("Knitting", "Knitting"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
        (7, "7"),
        (-3, "-3"),
        (True, "true"),
    ],
)
def test_safe_cell_neutralises_formulas(value, expected):
    assert safe_cell(value) == expected


def test_safe_row():
    assert safe_row(["=1", 2, None]) == ["'=1", "2", ""]
