"""Unit tests of the survey domain (surveys/): no database, no Flask."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surveys.answers import (
    AnswerError,
    describe_answer,
    first_question,
    is_valid_email,
    next_question,
    validate_answer,
)
from surveys.definition import (
    OTHER_OPTION_ID,
    parse_definition,
)
from tests.surveys.helpers import edited, valid_definition

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
