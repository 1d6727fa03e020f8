"""The builder's forms, and how the definition validator's errors reach their fields.

The forms only turn posted text into values (a number, a list of lines); the rules of a good
survey live in `surveys.definition.validate_definition`, which the builder runs after every
edit and on publish, attaching each error to the field its path names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields import SelectChoice
from wtforms.validators import InputRequired, Length, Optional, ValidationError

from surveys.definition import QuestionType
from surveys.triggers import Device, Frequency, TriggerKind

# Far above every limit the validator sets: only keeps absurd posts out of the draft.
TEXT_CAP = 2000

QUESTION_TYPES = {
    QuestionType.SINGLE_CHOICE: "Single choice",
    QuestionType.MULTIPLE_CHOICE: "Multiple choice",
    QuestionType.RATING: "Rating 1–5",
    QuestionType.NPS: "NPS 0–10",
    QuestionType.SHORT_TEXT: "Short text",
    QuestionType.EMAIL: "Email with marketing consent",
}
TRIGGER_KINDS = {
    TriggerKind.EXIT_INTENT: "Exit intent (the shopper is about to leave)",
    TriggerKind.POST_PURCHASE: "Post-purchase (order confirmation page)",
    TriggerKind.AFTER_SECONDS: "After some seconds on a page",
    TriggerKind.PAGE_LOAD: "As soon as a page loads",
}
KIND_NAMES = {
    TriggerKind.EXIT_INTENT: "Exit intent",
    TriggerKind.POST_PURCHASE: "Post-purchase",
    TriggerKind.AFTER_SECONDS: "After N seconds",
    TriggerKind.PAGE_LOAD: "On page load",
}
DEVICES = {Device.ALL: "All devices", Device.DESKTOP: "Desktop", Device.MOBILE: "Mobile"}
FREQUENCIES = {
    Frequency.ONCE: "Once per shopper",
    Frequency.UNTIL_ANSWERED: "Until answered",
    Frequency.EVERY_N_DAYS: "At most every N days",
}


def choices(labels: dict) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in labels.items()]


def strip(value) -> str:
    """Text as stored: trimmed, and "" for a field the post left out."""
    return value.strip() if isinstance(value, str) else ""


def lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


class BuilderForm(FlaskForm):
    """CSRFProtect checks every POST (the form field or htmx's header) before a view runs,
    so the many small forms of the builder carry no token of their own."""

    class Meta:
        csrf = False


class DetailsForm(BuilderForm):
    title = StringField("Title", filters=[strip], validators=[Length(max=TEXT_CAP)])
    thank_you = StringField("Thank-you text", filters=[strip], validators=[Length(max=TEXT_CAP)])


class TriggerForm(BuilderForm):
    kind = SelectField("Show", choices=choices(TRIGGER_KINDS))
    delay_seconds = IntegerField("Seconds on the page", validators=[Optional()])
    url_include = TextAreaField("Only on pages matching", validators=[Length(max=TEXT_CAP * 5)])
    url_exclude = TextAreaField("Never on pages matching", validators=[Length(max=TEXT_CAP * 5)])
    device = SelectField("Devices", choices=choices(DEVICES))
    sample_percent = IntegerField(
        "Sample (% of visitors)", validators=[InputRequired("Enter a percentage.")]
    )
    frequency = SelectField("How often", choices=choices(FREQUENCIES))
    frequency_days = IntegerField("Days between showings", validators=[Optional()])

    @classmethod
    def for_triggers(cls, triggers: Mapping[str, Any], **kwargs) -> TriggerForm:
        data = dict(triggers)
        for key in ("url_include", "url_exclude"):
            data[key] = "\n".join(str(p) for p in data.get(key) or [])
        return cls(data=data, **kwargs)

    def to_triggers(self) -> dict[str, Any]:
        """The trigger settings as stored; a delay or a number of days only where it applies."""
        kind, frequency = self.kind.data, self.frequency.data
        return {
            "kind": kind,
            "delay_seconds": self.delay_seconds.data if kind == TriggerKind.AFTER_SECONDS else None,
            "url_include": lines(self.url_include.data),
            "url_exclude": lines(self.url_exclude.data),
            "device": self.device.data,
            "sample_percent": self.sample_percent.data,
            "frequency": frequency,
            "frequency_days": (
                self.frequency_days.data if frequency == Frequency.EVERY_N_DAYS else None
            ),
        }


class AddQuestionForm(BuilderForm):
    type = SelectField("New question", choices=choices(QUESTION_TYPES))


class QuestionForm(BuilderForm):
    prompt = StringField("Question", filters=[strip], validators=[Length(max=TEXT_CAP)])
    # Not posted when disabled (the question's type is fixed once shoppers answered it).
    type = SelectField("Type", choices=choices(QUESTION_TYPES), validate_choice=False)
    required = BooleanField("Required")
    allow_other = BooleanField("Offer “other” with a text box")
    other_label = StringField("“Other” label", filters=[strip], validators=[Length(max=TEXT_CAP)])
    low_label = StringField("Low end label", filters=[strip], validators=[Length(max=TEXT_CAP)])
    high_label = StringField("High end label", filters=[strip], validators=[Length(max=TEXT_CAP)])
    max_length = IntegerField("Longest answer (characters)", validators=[Optional()])
    placeholder = StringField("Placeholder", filters=[strip], validators=[Length(max=TEXT_CAP)])
    consent_label = StringField(
        "Consent checkbox text", filters=[strip], validators=[Length(max=TEXT_CAP)]
    )

    def validate_type(self, field) -> None:
        if field.data and field.data not in QUESTION_TYPES:
            raise ValidationError("Choose a question type from the list.")

    def to_fields(self) -> dict[str, Any]:
        return {name: field.data for name, field in self._fields.items()}


class OptionForm(BuilderForm):
    label = StringField("Label", filters=[strip], validators=[Length(max=TEXT_CAP)])
    traits = StringField(
        "Traits",
        filters=[strip],
        validators=[Length(max=TEXT_CAP)],
        description="dimension:value, separated by commas",
    )
    # Checked by the definition validator, which knows the later questions.
    jump = SelectField("Then", choices=[], validate_choice=False, validators=[Length(max=100)])

    @classmethod
    def for_option(cls, option: Mapping[str, Any], **kwargs) -> OptionForm:
        data = {
            "label": option.get("label", ""),
            "traits": ", ".join(str(t) for t in option.get("traits") or []),
            "jump": option.get("jump") or "",
        }
        return cls(data=data, **kwargs)


def attach_errors(
    form: FlaskForm,
    errors: Mapping[str, list[str]],
    prefix: str,
    values: Mapping[str, Any] | None = None,
) -> None:
    """Put the validator's errors for `prefix.<field>` (and its list items) on the fields.

    An error about one item of a list (`traits[1]`, `url_include[0]`) names the item, since
    the form shows the whole list in one input.
    """
    for name, field in form._fields.items():
        path = f"{prefix}.{name}" if prefix else name
        found = list(errors.get(path, []))
        for error_path, messages in errors.items():
            if not error_path.startswith(path + "["):
                continue
            item = error_path[len(path) + 1 :].split("]", 1)[0]
            value = (values or {}).get(name)
            if item.isdigit() and isinstance(value, list) and int(item) < len(value):
                found += [f"“{value[int(item)]}”: {m}" for m in messages]
            else:
                found += messages
        if found:
            field.errors = [*field.errors, *found]
