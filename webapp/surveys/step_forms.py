"""The form of one survey step: a WTForms form per question type, and the answer it sends.

The fields only carry what the shopper typed or ticked. Whether that is a valid answer is
decided in one place, surveys.answers.validate_answer (through record_answer), whose reason
the page shows next to the field it concerns.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    RadioField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.widgets import CheckboxInput, ListWidget

from surveys.answers import OTHER_TEXT_MAX, AnswerError
from surveys.definition import OTHER_OPTION_ID, Question, QuestionType


class StepForm(FlaskForm):
    class Meta:
        # A cross-site iframe gets no session cookie to hold a CSRF token; the signed
        # response token in the address is what protects the response instead.
        csrf = False

    question = HiddenField()


class SingleChoiceStep(StepForm):
    answer = RadioField(choices=[], validate_choice=False)
    other = StringField(render_kw={"maxlength": OTHER_TEXT_MAX, "autocomplete": "off"})


class MultipleChoiceStep(StepForm):
    answer = SelectMultipleField(
        choices=[],
        validate_choice=False,
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )
    other = StringField(render_kw={"maxlength": OTHER_TEXT_MAX, "autocomplete": "off"})


class ScaleStep(StepForm):
    answer = RadioField(choices=[], validate_choice=False)


class ShortTextStep(StepForm):
    answer = TextAreaField()


class EmailStep(StepForm):
    email = EmailField(render_kw={"autocomplete": "email", "inputmode": "email"})
    consent = BooleanField(default=False)  # never pre-checked: the shopper ticks it


_FORMS: dict[QuestionType, type[StepForm]] = {
    QuestionType.SINGLE_CHOICE: SingleChoiceStep,
    QuestionType.MULTIPLE_CHOICE: MultipleChoiceStep,
    QuestionType.RATING: ScaleStep,
    QuestionType.NPS: ScaleStep,
    QuestionType.SHORT_TEXT: ShortTextStep,
    QuestionType.EMAIL: EmailStep,
}


def _stored_data(question: Question, stored: Mapping | None) -> dict:
    """Form data from a stored answer (`Answer.to_value()`), so Back shows what was given."""
    if not stored:
        return {}
    if question.is_choice:
        options = list(stored.get("options") or [])
        chosen = (
            options if question.type is QuestionType.MULTIPLE_CHOICE else next(iter(options), None)
        )
        return {"answer": chosen, "other": stored.get("other")}
    if "number" in stored:
        return {"answer": str(stored["number"])}
    if question.type is QuestionType.SHORT_TEXT:
        return {"answer": stored.get("text")}
    return {"email": stored.get("email"), "consent": bool(stored.get("consent"))}


def step_form(
    question: Question, *, formdata: Mapping | None = None, stored: Mapping | None = None
) -> StepForm:
    """The step's form: from what was posted (`formdata`), else from the stored answer."""
    form = _FORMS[question.type](formdata=formdata, data=_stored_data(question, stored))
    form.question.data = question.id
    if question.is_choice:
        choices = [(option.id, option.label) for option in question.options]
        if question.allow_other:
            choices.append((OTHER_OPTION_ID, question.other_label))
        form.answer.choices = choices
    elif question.scale:
        low, high = question.scale
        form.answer.choices = [(str(n), str(n)) for n in range(low, high + 1)]
    elif question.type is QuestionType.SHORT_TEXT:
        form.answer.render_kw = {"maxlength": question.max_length, "rows": 3}
    return form


def raw_answer(question: Question, form: StepForm) -> object:
    """What the form holds, in a shape surveys.answers.validate_answer accepts."""
    if question.type is QuestionType.SINGLE_CHOICE:
        chosen = form.answer.data
        return {"options": [chosen] if chosen else [], "other": form.other.data}
    if question.type is QuestionType.MULTIPLE_CHOICE:
        return {"options": list(form.answer.data or []), "other": form.other.data}
    if question.type is QuestionType.EMAIL:
        return {"email": form.email.data, "consent": bool(form.consent.data)}
    return form.answer.data


_OTHER_TEXT_CODES = frozenset({"other_missing", "invalid_text", "too_long"})


def error_field(question: Question, error: AnswerError) -> str:
    """The field an answer's error belongs beside."""
    if question.is_choice and error.code in _OTHER_TEXT_CODES:
        return "other"
    if question.type is QuestionType.EMAIL:
        return "email"
    return "answer"
