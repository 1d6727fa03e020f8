"""Unit tests of the survey domain (surveys/): no database, no Flask."""

from __future__ import annotations

import pytest

from surveys.answers import (
    Answer,
    validate_answer,
)
from surveys.definition import (
    QuestionType,
)
from surveys.traits import Trait, TraitError, parse_trait, trait_evidence, traits_for_answers

# --- traits --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("craft:knitting", Trait("craft", "knitting")),
        ("  Craft : Knitting ", Trait("craft", "knitting")),
        ("objection:Shipping Cost", Trait("objection", "shipping_cost")),
        ("heard_from:word-of-mouth", Trait("heard_from", "word_of_mouth")),
        ("craft:Crochê", Trait("craft", "croche")),
        ("skill:3d_printing", Trait("skill", "3d_printing")),
    ],
)
def test_parse_trait_normalises(text, expected):
    assert parse_trait(text) == expected
    assert str(parse_trait(text)) == f"{expected.dimension}:{expected.value}"


@pytest.mark.parametrize(
    ("text", "message_part"),
    [
        ("knitting", "dimension:value"),
        (":knitting", "dimension"),
        ("craft:", "value"),
        ("1craft:x", "starts with a letter"),
        ("craft:knit/purl", "letters, digits and _"),
        ("craft:a:b", "letters, digits and _"),
        ("c" * 33 + ":x", "at most 32"),
        ("craft:" + "x" * 65, "at most 64"),
        ("craft:" + "x" * 500, "at most"),
    ],
)
def test_parse_trait_rejects(text, message_part):
    with pytest.raises(TraitError, match=message_part):
        parse_trait(text)


def test_parse_trait_rejects_non_text():
    with pytest.raises(TraitError):
        parse_trait(5)  # type: ignore[arg-type]


def test_traits_for_answers_follows_chosen_options_without_duplicates(survey):
    answers = [
        validate_answer(survey.question("craft"), "crochet"),
        validate_answer(
            survey.question("extras"),
            {"options": ["patterns", "yarn", "other"], "other": "buttons"},
        ),
        validate_answer(survey.question("stars"), 4),
    ]
    assert [str(t) for t in traits_for_answers(survey, answers)] == [
        "craft:crochet",
        "skill:beginner",
        "interest:yarn",
        "interest:patterns",
    ]
    evidence = trait_evidence(survey, answers)
    assert evidence[0].option_label == "Crochet" and evidence[0].question_id == "craft"


def test_traits_ignore_options_and_questions_removed_since_answering(survey):
    stale = [
        Answer("craft", QuestionType.SINGLE_CHOICE, option_ids=("macrame",)),
        Answer("gone", QuestionType.SINGLE_CHOICE, option_ids=("knitting",)),
    ]
    assert traits_for_answers(survey, stale) == []


def test_traits_deduplicate_across_questions(survey):
    answers = [
        Answer("craft", QuestionType.SINGLE_CHOICE, option_ids=("knitting",)),
        Answer("craft", QuestionType.SINGLE_CHOICE, option_ids=("knitting",)),
    ]
    assert traits_for_answers(survey, answers) == [Trait("craft", "knitting")]
