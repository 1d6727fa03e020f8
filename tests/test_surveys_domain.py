"""The survey domain on its own: no database, no Flask."""

from __future__ import annotations

import copy
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surveys.answers import (
    Answer,
    AnswerError,
    describe_answer,
    first_question,
    is_valid_email,
    next_question,
    validate_answer,
)
from surveys.definition import (
    MAX_OPTIONS,
    OTHER_OPTION_ID,
    QuestionType,
    SurveyDefinition,
    new_option,
    new_question,
    parse_definition,
    suggest_id,
    validate_definition,
)
from surveys.errors import DefinitionInvalid, errors_by_path
from surveys.export import safe_cell, safe_row
from surveys.nps import nps_breakdown, nps_score
from surveys.templates import TEMPLATES, template_definition, template_survey
from surveys.traits import Trait, TraitError, parse_trait, trait_evidence, traits_for_answers
from surveys.triggers import (
    DEFAULT_COOLDOWN_DAYS,
    TriggerKind,
    TriggerSettings,
    cooldown_allows,
    device_allowed,
    device_class,
    embed_document,
    frequency_allows,
    in_sample,
    parse_triggers,
    to_embed_config,
    url_matches,
    validate_cooldown_days,
    validate_triggers,
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


@pytest.fixture
def survey() -> SurveyDefinition:
    return parse_definition(valid_definition())


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


# --- answers -------------------------------------------------------------------------------


def test_single_choice_accepts_an_option_id_in_any_shape(survey):
    question = survey.question("craft")
    for raw in ("knitting", ["knitting"], {"option": "knitting"}, {"options": ["knitting"]}):
        answer = validate_answer(question, raw)
        assert answer.option_ids == ("knitting",)
        assert answer.other_text is None


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("macrame", "unknown_option"),
        (["knitting", "crochet"], "too_many"),
        ([5], "unknown_option"),
        ({"option": "knitting", "options": ["knitting"]}, "unexpected_field"),
        ({"option": "knitting", "colour": "red"}, "unexpected_field"),
        ({"option": "other"}, "other_missing"),
        ({"option": "other", "other": "   "}, "other_missing"),
        ({"option": "other", "other": "x" * 201}, "too_long"),
        ({"option": "other", "other": 5}, "invalid_type"),
        ({"option": "other", "other": "a\x00b"}, "invalid_text"),
        ({"option": "knitting", "other": "\ud800"}, "invalid_text"),
        ({"option": {"id": "knitting"}}, "invalid_type"),
        (42, "invalid_type"),
        (None, "required"),
        ("", "required"),
        ([], "required"),
        (["x"] * 101, "too_many"),
    ],
)
def test_single_choice_rejects(survey, raw, code):
    with pytest.raises(AnswerError) as caught:
        validate_answer(survey.question("craft"), raw)
    assert caught.value.code == code
    assert caught.value.reason


def test_other_option_keeps_stripped_text_only_when_chosen(survey):
    question = survey.question("craft")
    answer = validate_answer(question, {"option": "other", "other": "  macramé "})
    assert answer.option_ids == (OTHER_OPTION_ID,)
    assert answer.other_text == "macramé"
    assert validate_answer(question, {"option": "crochet", "other": "typed"}).other_text is None


def test_other_is_unknown_where_the_question_does_not_allow_it():
    data = edited(questions__0__allow_other=False)
    question = parse_definition(data).question("craft")
    with pytest.raises(AnswerError, match="not one of the options"):
        validate_answer(question, {"option": "other", "other": "x"})


def test_multiple_choice_stores_options_in_question_order_once(survey):
    question = survey.question("extras")
    answer = validate_answer(question, ["patterns", "yarn", "patterns"])
    assert answer.option_ids == ("yarn", "patterns")
    assert validate_answer(question, "needles").option_ids == ("needles",)


def test_optional_question_may_be_skipped(survey):
    answer = validate_answer(survey.question("extras"), [])
    assert answer.skipped and answer.to_value() is None
    assert validate_answer(survey.question("nps"), None).skipped
    assert validate_answer(survey.question("nps"), " ").skipped


@pytest.mark.parametrize(
    ("question_id", "raw", "expected"),
    [
        ("stars", 1, 1),
        ("stars", 5, 5),
        ("stars", " 3 ", 3),
        ("stars", {"number": 4}, 4),
        ("nps", 0, 0),
        ("nps", "10", 10),
        ("nps", "007", 7),
    ],
)
def test_scales_accept_whole_numbers_in_range(survey, question_id, raw, expected):
    assert validate_answer(survey.question(question_id), raw).number == expected


@pytest.mark.parametrize(
    ("question_id", "raw", "code"),
    [
        ("stars", 0, "out_of_range"),
        ("stars", 6, "out_of_range"),
        ("stars", "6", "out_of_range"),
        ("stars", 3.5, "invalid_type"),
        ("stars", 3.0, "invalid_type"),
        ("stars", True, "invalid_type"),
        ("stars", "three", "invalid_type"),
        ("stars", "-1", "invalid_type"),
        ("stars", "٣", "invalid_type"),
        ("stars", "9" * 5000, "out_of_range"),
        ("stars", None, "required"),
        ("stars", {"num": 3}, "unexpected_field"),
        ("nps", 11, "out_of_range"),
        ("nps", -1, "out_of_range"),
    ],
)
def test_scales_reject(survey, question_id, raw, code):
    with pytest.raises(AnswerError) as caught:
        validate_answer(survey.question(question_id), raw)
    assert caught.value.code == code


def test_short_text_is_stripped_and_limited(survey):
    question = survey.question("note")
    assert validate_answer(question, "  hello  ").text == "hello"
    assert validate_answer(question, {"text": "x" * 20}).text == "x" * 20
    assert validate_answer(question, " " * 50 + "ok").text == "ok"
    with pytest.raises(AnswerError) as caught:
        validate_answer(question, "x" * 21)
    assert caught.value.code == "too_long"
    for raw, code in [("  ", "required"), (5, "invalid_type"), ("a\x00", "invalid_text")]:
        with pytest.raises(AnswerError) as caught:
            validate_answer(question, raw)
        assert caught.value.code == code


@pytest.mark.parametrize(
    "address",
    ["ann@example.com", "Ann.Lee+shop@Mail.Example.co.uk", "o'neil@example.ie", "a@b.xn--p1ai"],
)
def test_plausible_emails_are_valid(address):
    assert is_valid_email(address)


@pytest.mark.parametrize(
    "address",
    [
        "ann",
        "ann@",
        "@example.com",
        "ann@example",
        "ann@@example.com",
        "ann@exa mple.com",
        "ann..lee@example.com",
        ".ann@example.com",
        "ann@-example.com",
        "ann@example.c",
        "ann@example.123",
        "ann@exam_ple.com",
        "ä@example.com",
        "a" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_implausible_emails_are_invalid(address):
    assert not is_valid_email(address)


def test_email_answer_keeps_spelling_and_consent_only_when_ticked(survey):
    question = survey.question("email")
    answer = validate_answer(question, {"email": "  Ann@Example.COM ", "consent": "y"})
    assert answer.email == "Ann@Example.COM"
    assert answer.email_key == "ann@example.com"
    assert answer.consent is True
    assert validate_answer(question, "ann@example.com").consent is False
    assert validate_answer(question, {"email": "ann@example.com"}).consent is False
    for unticked in (False, "off", "", None):
        raw = {"email": "ann@example.com", "consent": unticked}
        assert validate_answer(question, raw).consent is False
    assert validate_answer(question, {"email": "", "consent": False}).skipped


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not-an-email", "invalid_email"),
        ({"email": "", "consent": True}, "email_missing"),
        ({"email": "ann@example.com", "consent": "maybe"}, "invalid_type"),
        ({"email": "ann@example.com", "consent": 1}, "invalid_type"),
        ({"email": 5}, "invalid_type"),
        ({"email": "a@b.com", "name": "Ann"}, "unexpected_field"),
        ("x" * 255 + "@example.com", "too_long"),
    ],
)
def test_email_answer_rejects(survey, raw, code):
    with pytest.raises(AnswerError) as caught:
        validate_answer(survey.question("email"), raw)
    assert caught.value.code == code


def test_required_email_question_must_be_answered():
    data = edited(questions__5__required=True)
    with pytest.raises(AnswerError) as caught:
        validate_answer(parse_definition(data).question("email"), {"email": " "})
    assert caught.value.code == "required"


@pytest.mark.parametrize(
    ("question_id", "raw"),
    [
        ("craft", {"option": "other", "other": "felt"}),
        ("extras", ["yarn", "needles"]),
        ("stars", 2),
        ("nps", 9),
        ("note", "short"),
        ("email", {"email": "a@b.co", "consent": True}),
    ],
)
def test_stored_value_reads_back_as_the_same_answer(survey, question_id, raw):
    question = survey.question(question_id)
    answer = validate_answer(question, raw)
    assert validate_answer(question, copy.deepcopy(answer.to_value())) == answer


def test_describe_answer_in_words(survey):
    extras = survey.question("extras")
    answer = validate_answer(extras, {"options": ["yarn", "other"], "other": "felt"})
    assert describe_answer(extras, answer) == "Yarn, Something else: felt"
    nps = survey.question("nps")
    assert describe_answer(nps, validate_answer(nps, 7)) == "7"
    email = validate_answer(survey.question("email"), {"email": "a@b.co", "consent": True})
    assert describe_answer(survey.question("email"), email) == "a@b.co (consents)"


raw_answers = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["knitting", "other", "yarn", "5", "10", "a@b.co", "y", ""]),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(["option", "options", "other", "number", "text", "email", "consent"])
            | st.text(max_size=5),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


FUZZ_SURVEY = parse_definition(valid_definition())


@settings(max_examples=250, deadline=None)
@given(
    question_id=st.sampled_from(["craft", "extras", "stars", "nps", "note", "email"]),
    raw=raw_answers,
)
def test_validate_answer_raises_only_answer_error(question_id, raw):
    question = FUZZ_SURVEY.question(question_id)
    try:
        answer = validate_answer(question, raw)
    except AnswerError as exc:
        assert exc.reason and exc.code
        return
    assert answer.question_id == question_id
    assert validate_answer(question, answer.to_value()) == answer


# --- the one-question-per-step flow --------------------------------------------------------


def test_next_question_goes_in_order_without_a_jump(survey):
    assert first_question(survey) == "craft"
    knitting = validate_answer(survey.question("craft"), "knitting")
    assert next_question(survey, "craft", knitting) == "extras"
    assert next_question(survey, "extras", None) == "stars"
    assert next_question(survey, "note", validate_answer(survey.question("note"), "x")) == "email"


def test_next_question_follows_a_jump_to_a_later_question(survey):
    sewing = validate_answer(survey.question("craft"), "sewing")
    assert next_question(survey, "craft", sewing) == "email"


def test_next_question_ends_on_an_end_jump_and_after_the_last_question(survey):
    nothing = validate_answer(survey.question("craft"), "nothing")
    assert next_question(survey, "craft", nothing) is None
    assert next_question(survey, "email", None) is None


def test_next_question_on_other_or_skip_goes_on(survey):
    other = validate_answer(survey.question("craft"), {"option": "other", "other": "felt"})
    assert next_question(survey, "craft", other) == "extras"


def test_next_question_unknown_question_is_a_key_error(survey):
    with pytest.raises(KeyError):
        next_question(survey, "nope", None)


# --- triggers ------------------------------------------------------------------------------


def test_default_triggers_are_valid_and_round_trip():
    settings_ = TriggerSettings()
    assert validate_triggers(settings_.to_dict()) == []
    assert parse_triggers(settings_.to_dict()) == settings_
    assert parse_triggers({}) == settings_


@pytest.mark.parametrize(
    ("data", "path", "message_part"),
    [
        ({"kind": "after_seconds"}, "triggers.delay_seconds", "from 1 to 3600"),
        ({"kind": "after_seconds", "delay_seconds": 0}, "triggers.delay_seconds", "from 1"),
        ({"kind": "after_seconds", "delay_seconds": "5"}, "triggers.delay_seconds", "whole"),
        ({"kind": "page_load", "delay_seconds": 5}, "triggers.delay_seconds", "Only 'after N"),
        ({"device": "phone"}, "triggers.device", "all, desktop, mobile"),
        ({"sample_percent": 101}, "triggers.sample_percent", "0 to 100"),
        ({"sample_percent": -1}, "triggers.sample_percent", "0 to 100"),
        ({"sample_percent": 50.5}, "triggers.sample_percent", "whole number"),
        ({"frequency": "daily"}, "triggers.frequency", "once, until_answered"),
        ({"frequency": "every_n_days"}, "triggers.frequency_days", "from 1 to 365"),
        ({"frequency": "every_n_days", "frequency_days": 400}, "triggers.frequency_days", "365"),
        ({"frequency": "once", "frequency_days": 3}, "triggers.frequency_days", "Only 'every"),
        ({"url_include": "/products/*"}, "triggers.url_include", "list of patterns"),
        ({"url_include": ["products/*"]}, "triggers.url_include[0]", "Start a pattern with /"),
        ({"url_include": ["/a", ""]}, "triggers.url_include[1]", "Enter a pattern"),
        ({"url_include": ["/a b"]}, "triggers.url_include[0]", "spaces"),
        ({"url_exclude": ["/cart?x=1"]}, "triggers.url_exclude[0]", "query string"),
        ({"url_exclude": ["https:///cart"]}, "triggers.url_exclude[0]", "host"),
        ({"url_exclude": [3]}, "triggers.url_exclude[0]", "must be text"),
        ({"url_exclude": ["/" + "a" * 300]}, "triggers.url_exclude[0]", "at most 300"),
        ({"url_exclude": [f"/p{i}" for i in range(21)]}, "triggers.url_exclude", "At most 20"),
        ({"colour": "red"}, "triggers.colour", "Unknown setting"),
    ],
)
def test_each_trigger_problem_is_reported_at_its_path(data, path, message_part):
    errors = {e.path: e.message for e in validate_triggers(data)}
    assert path in errors, errors
    assert message_part in errors[path]


def test_parse_triggers_raises_on_invalid_settings():
    with pytest.raises(DefinitionInvalid):
        parse_triggers({"sample_percent": 200})


def test_cooldown_days_validation():
    assert validate_cooldown_days(DEFAULT_COOLDOWN_DAYS) is None
    assert validate_cooldown_days(0) is None
    assert DEFAULT_COOLDOWN_DAYS == 7
    for bad in (-1, 366, "7", 7.0, True):
        assert validate_cooldown_days(bad)


@pytest.mark.parametrize(
    ("include", "exclude", "url", "shown"),
    [
        ((), (), "https://shop.example/anything?x=1", True),
        (("/products/*",), (), "https://shop.example/products/yarn", True),
        (("/products/*",), (), "/products/yarn/red?variant=2#top", True),
        (("/products/*",), (), "https://shop.example/collections/yarn", False),
        (("/products/*",), (), "/products", False),
        (("/cart",), (), "/cart/", True),
        (("/cart/",), (), "/cart", True),
        (("/Cart",), (), "/CART", True),
        (("/",), (), "https://shop.example/", True),
        (("/",), (), "https://shop.example", True),
        (("/",), (), "/products/yarn", False),
        (("*",), (), "x", False),  # not a valid pattern anyway: never matches a path
        (("/collections/garné",), (), "/collections/garn%C3%A9", True),
        (("/a.b",), (), "/aXb", False),
        (("https://shop.example/*",), (), "https://shop.example/products/x", True),
        (("https://shop.example/*",), (), "https://other.example/products/x", False),
        (("https://*.shop.example/*",), (), "https://eu.shop.example/a", True),
        (("https://shop.example/*",), (), "/products/x", False),
        ((), ("/checkout*",), "/checkouts/123", False),
        ((), ("/checkout*",), "/products/x", True),
        (("/products/*",), ("/products/gift-card",), "/products/gift-card", False),
        (("/products/*",), ("/products/gift-card",), "/products/yarn", True),
    ],
)
def test_url_matches(include, exclude, url, shown):
    assert url_matches(TriggerSettings(url_include=include, url_exclude=exclude), url) is shown


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
            "mobile",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0 Mobile Safari/537.36",
            "mobile",
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 12_2 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Mobile/15E148",
            "tablet",
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0 Safari/537.36",
            "tablet",
        ),
        ("Mozilla/5.0 (Android 13; Tablet; rv:120.0) Gecko/120.0 Firefox/120.0", "tablet"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0 Safari/537.36",
            "desktop",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Safari/605.1.15",
            "desktop",
        ),
        ("", "desktop"),
        (None, "desktop"),
    ],
)
def test_device_class(user_agent, expected):
    assert device_class(user_agent) == expected


def test_device_setting_treats_tablets_as_mobile():
    assert device_allowed(TriggerSettings(), "tablet")
    desktop = parse_triggers({"device": "desktop"})
    mobile = parse_triggers({"device": "mobile"})
    assert device_allowed(desktop, "desktop") and not device_allowed(desktop, "mobile")
    assert device_allowed(mobile, "mobile") and device_allowed(mobile, "tablet")
    assert not device_allowed(mobile, "desktop")


def test_sampling_is_stable_and_roughly_the_percentage():
    assert not any(in_sample(0, 1, f"v{i}") for i in range(200))
    assert all(in_sample(100, 1, f"v{i}") for i in range(200))
    picked = sum(in_sample(30, 1, f"v{i}") for i in range(5000))
    assert 1300 < picked < 1700
    assert in_sample(50, 7, "visitor") == in_sample(50, 7, "visitor")


NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_frequency_once_shows_only_once():
    once = TriggerSettings()
    assert frequency_allows(once, last_shown=None, answered=False, now=NOW)
    assert not frequency_allows(once, last_shown=NOW - timedelta(days=400), answered=False, now=NOW)


def test_frequency_until_answered_repeats_until_answered():
    until = parse_triggers({"frequency": "until_answered"})
    assert frequency_allows(until, last_shown=NOW - timedelta(hours=1), answered=False, now=NOW)
    assert not frequency_allows(until, last_shown=NOW, answered=True, now=NOW)


def test_frequency_every_n_days_waits_n_days():
    every = parse_triggers({"frequency": "every_n_days", "frequency_days": 30})
    assert not frequency_allows(every, last_shown=NOW - timedelta(days=29), answered=True, now=NOW)
    assert frequency_allows(every, last_shown=NOW - timedelta(days=30), answered=True, now=NOW)


def test_shop_wide_cooldown():
    assert cooldown_allows(None, NOW)
    assert not cooldown_allows(NOW - timedelta(days=6, hours=23), NOW)
    assert cooldown_allows(NOW - timedelta(days=7), NOW)
    assert cooldown_allows(NOW, NOW, cooldown_days=0)


def test_embed_config_is_compact_and_carries_only_relevant_numbers():
    delayed = parse_triggers(
        {
            "kind": "after_seconds",
            "delay_seconds": 20,
            "url_include": ["/products/*"],
            "device": "mobile",
            "sample_percent": 25,
            "frequency": "every_n_days",
            "frequency_days": 14,
        }
    )
    assert to_embed_config(3, delayed) == {
        "id": 3,
        "kind": "after_seconds",
        "delay": 20,
        "include": ["/products/*"],
        "exclude": [],
        "device": "mobile",
        "sample": 25,
        "freq": "every_n_days",
        "days": 14,
    }
    plain = to_embed_config("abc", TriggerSettings())
    assert "delay" not in plain and "days" not in plain
    document = embed_document([(3, delayed), ("abc", TriggerSettings())])
    assert document["v"] == 1
    assert document["cooldown_days"] == 7
    assert [s["id"] for s in document["surveys"]] == [3, "abc"]


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
