"""Unit tests of the survey domain (surveys/): no database, no Flask."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surveys.definition import (
    MAX_OPTIONS,
    QuestionType,
    SurveyDefinition,
    new_option,
    new_question,
    parse_definition,
    suggest_id,
    validate_definition,
)
from surveys.errors import DefinitionInvalid, errors_by_path
from surveys.triggers import (
    TriggerKind,
    TriggerSettings,
)
from tests.surveys.helpers import DELETE, edited, errors_of, option, valid_definition

# --- definitions ---------------------------------------------------------------------------


def test_valid_definition_has_no_errors_and_round_trips_through_its_dict():
    data = valid_definition()
    assert validate_definition(data) == []
    definition = parse_definition(data)
    assert definition.kind is TriggerKind.POST_PURCHASE
    assert parse_definition(definition.to_dict()) == definition
    assert SurveyDefinition.from_dict(definition.to_dict()).to_dict() == definition.to_dict()
    assert validate_definition(definition.to_dict()) == []


def test_parse_strips_text_and_normalises_traits():
    data = edited(title="  Hello  ")
    data["questions"][0]["options"][0]["traits"] = ["Craft: Knitting", "Heard From:Word of mouth"]
    definition = parse_definition(data)
    assert definition.title == "Hello"
    assert [str(t) for t in definition.questions[0].options[0].traits] == [
        "craft:knitting",
        "heard_from:word_of_mouth",
    ]


def test_missing_triggers_take_defaults():
    data = edited(triggers=DELETE)
    assert parse_definition(data).triggers == TriggerSettings()


@pytest.mark.parametrize(
    ("changes", "path", "message_part"),
    [
        ({"title": " "}, "title", "Enter a title"),
        ({"title": 5}, "title", "must be text"),
        ({"title": "x" * 121}, "title", "at most 120"),
        ({"title": "bad\x00"}, "title", "NUL"),
        ({"version": 2}, "version", "version 1"),
        ({"colour": "red"}, "colour", "Not a setting"),
        ({"questions": []}, "questions", "at least one question"),
        ({"questions": "no"}, "questions", "at least one question"),
        ({"questions__0": "no"}, "questions[0]", "must be an object"),
        ({"questions__0__prompt": ""}, "questions[0].prompt", "Enter the question"),
        ({"questions__0__type": "slider"}, "questions[0].type", "Choose a question type"),
        ({"questions__0__id": "Bad Id"}, "questions[0].id", "lower-case"),
        ({"questions__0__id": "end"}, "questions[0].id", "'end' is kept"),
        ({"questions__1__id": "craft"}, "questions[1].id", "Another question"),
        ({"questions__0__required": "yes"}, "questions[0].required", "true or false"),
        ({"questions__0__max_length": 5}, "questions[0].max_length", "Not a setting"),
        (
            {"questions__0__options": [option("a", "A")], "questions__0__allow_other": False},
            "questions[0].options",
            "at least two",
        ),
        ({"questions__0__options": None}, "questions[0].options", "Add the options"),
        (
            {"questions__0__options": [option(f"o{i}", f"O{i}") for i in range(MAX_OPTIONS + 1)]},
            "questions[0].options",
            "At most",
        ),
        ({"questions__0__options__1": "x"}, "questions[0].options[1]", "must be an object"),
        ({"questions__0__options__1__id": "knitting"}, "questions[0].options[1].id", "Another"),
        ({"questions__0__options__1__id": "other"}, "questions[0].options[1].id", "'other'"),
        ({"questions__0__options__1__label": "  "}, "questions[0].options[1].label", "Enter"),
        (
            {"questions__0__options__1__label": "knitting "},
            "questions[0].options[1].label",
            "same label",
        ),
        ({"questions__0__options__1__traits": ["craft"]}, "questions[0].options[1].traits[0]", ":"),
        (
            {"questions__0__options__1__traits": ["craft:knit", "craft:wool!"]},
            "questions[0].options[1].traits[1]",
            "letters, digits and _",
        ),
        (
            {"questions__0__options__1__traits": ["craft:a", "Craft:A"]},
            "questions[0].options[1].traits[1]",
            "listed twice",
        ),
        (
            {"questions__0__options__1__traits": [f"t:v{i}" for i in range(6)]},
            "questions[0].options[1].traits",
            "At most 5",
        ),
        ({"questions__0__options__1__traits": "craft:x"}, "questions[0].options[1].traits", "list"),
        (
            {"questions__0__options__1__jump": "nowhere"},
            "questions[0].options[1].jump",
            "No question",
        ),
        ({"questions__0__options__1__jump": 3}, "questions[0].options[1].jump", "question id"),
        ({"questions__2__type": "single_choice"}, "questions[2].options", "Add the options"),
        ({"questions__0__options__1__colour": "x"}, "questions[0].options[1].colour", "Not a"),
        (
            {"questions__1__options__0__jump": "note"},
            "questions[1].options[0].jump",
            "single-choice questions only",
        ),
        ({"questions__0__allow_other": "yes"}, "questions[0].allow_other", "true or false"),
        ({"questions__1__other_label": ""}, "questions[1].other_label", "Enter a label"),
        ({"questions__2__options": []}, "questions[2].options", "Not a setting"),
        ({"questions__2__high_label": 7}, "questions[2].high_label", "must be text"),
        ({"questions__4__max_length": 0}, "questions[4].max_length", "from 1 to 1000"),
        ({"questions__4__max_length": 1001}, "questions[4].max_length", "from 1 to 1000"),
        ({"questions__4__max_length": True}, "questions[4].max_length", "from 1 to 1000"),
        ({"questions__5__consent_label": ""}, "questions[5].consent_label", "Enter the consent"),
        ({"questions__5__consent_checked": True}, "questions[5].consent_checked", "never pre"),
        ({"questions__5__consent_default": True}, "questions[5].consent_default", "never pre"),
        ({"triggers__kind": "hover"}, "triggers.kind", "Choose a trigger"),
        ({"triggers": []}, "triggers", "must be an object"),
    ],
)
def test_each_definition_problem_is_reported_at_its_path(changes, path, message_part):
    errors = errors_of(edited(**changes))
    assert path in errors, errors
    assert message_part in errors[path]


def test_jump_to_an_earlier_or_the_same_question_is_an_error():
    data = valid_definition()
    data["questions"][2]["type"] = "single_choice"
    for key in ("low_label",):
        del data["questions"][2][key]
    data["questions"][2]["options"] = [
        option("a", "A", jump="craft"),
        option("b", "B", jump="stars"),
    ]
    errors = errors_of(data)
    assert errors["questions[2].options[0].jump"] == "A jump can only go to a later question."
    assert errors["questions[2].options[1].jump"] == "A jump can only go to a later question."


def test_two_errors_in_one_definition_are_both_reported():
    errors = errors_of(edited(title="", questions__0__options__0__label=""))
    assert set(errors) == {"title", "questions[0].options[0].label"}


def test_a_single_option_plus_other_is_enough():
    data = edited(questions__0__options=[option("a", "A")])
    assert validate_definition(data) == []


def test_parse_definition_raises_with_every_error():
    with pytest.raises(DefinitionInvalid) as caught:
        parse_definition(edited(title="", questions__0__prompt=""))
    assert {e.path for e in caught.value.errors} == {"title", "questions[0].prompt"}


@pytest.mark.parametrize("data", [None, [], "survey", 3, {"questions": [{"id": 1}]}])
def test_validate_definition_reports_garbage_instead_of_raising(data):
    assert validate_definition(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["id", "type", "prompt", "options", "label", "traits", "jump", "title", "questions"]
            )
            | st.text(max_size=4),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_validate_definition_never_raises(data):
    assert isinstance(validate_definition(data), list)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_mutated_valid_definitions_never_crash_the_validator(data):
    definition = valid_definition()
    question = data.draw(st.sampled_from(definition["questions"]))
    key = data.draw(st.sampled_from(sorted(question)))
    question[key] = data.draw(json_values)
    errors = validate_definition(definition)
    if not errors:
        assert parse_definition(definition).to_dict()


def test_suggest_id_slugs_labels_and_avoids_taken_and_reserved_ids():
    assert suggest_id("Shipping cost", []) == "shipping_cost"
    assert suggest_id("Crochê!", []) == "croche"
    assert suggest_id("Shipping cost", ["shipping_cost"]) == "shipping_cost_2"
    assert suggest_id("Shipping cost", ["shipping_cost", "shipping_cost_2"]) == "shipping_cost_3"
    assert suggest_id("Other", []) == "other_2"
    assert suggest_id("End", []) == "end_2"
    assert suggest_id("???", [], fallback="q") == "q"


# --- builder helpers and independence from the web app ------------------------------------


@pytest.mark.parametrize("question_type", list(QuestionType))
def test_new_question_needs_only_its_prompt_to_be_valid(question_type):
    data = valid_definition()
    taken = [q["id"] for q in data["questions"]]
    question = new_question(question_type, taken)
    assert question["id"] == "q1" and question["prompt"] == ""
    data["questions"].append(question)
    assert set(errors_of(data)) == {f"questions[{len(taken)}].prompt"}
    question["prompt"] = "Why?"
    assert validate_definition(data) == []


def test_new_question_ids_skip_taken_ones_and_email_starts_optional():
    assert new_question("rating", ["q1", "q2"])["id"] == "q3"
    assert new_question("email", [])["required"] is False
    assert new_option("Shipping cost", ["shipping_cost"])["id"] == "shipping_cost_2"


def test_errors_by_path_groups_messages_for_the_builder():
    grouped = errors_by_path(validate_definition(edited(title="", questions__0__prompt="")))
    assert grouped == {"title": ["Enter a title."], "questions[0].prompt": ["Enter the question."]}


def test_surveys_package_imports_neither_flask_nor_sqlalchemy_nor_webapp():
    code = (
        "import sys, surveys.answers, surveys.definition, surveys.export, surveys.nps, "
        "surveys.templates, surveys.traits, surveys.triggers\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'flask', 'sqlalchemy', 'webapp', 'werkzeug', 'wtforms'})\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
