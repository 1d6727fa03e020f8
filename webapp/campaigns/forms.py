"""The campaign editor's form and the schedule form."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask_wtf import FlaskForm
from wtforms import (
    DateField,
    IntegerField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
    TimeField,
)
from wtforms.fields import SelectChoice
from wtforms.validators import (
    DataRequired,
    Email,
    Length,
    NumberRange,
    Optional,
    Regexp,
    ValidationError,
)

from webapp.campaigns.render import ContentError, check
from webapp.models import Campaign

STARTER_BODY = """Hi {{ first_name or "there" }},

Something new for you at {{ shop_name }}.

{% if recommendations %}
Picked for you:

{% for p in recommendations %}
- {{ p.title }} ({{ p.price }})
{% endfor %}
{% endif %}

{% if discount_code %}Use **{{ discount_code }}** at checkout.{% endif %}
"""


class CampaignForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    segment_id = SelectField("Send to segment", coerce=int, validators=[DataRequired()])
    from_email = StringField(
        "From address", validators=[DataRequired(), Email(check_deliverability=False)]
    )
    from_name = StringField("From name", validators=[Optional(), Length(max=120)])
    subject = StringField("Subject", validators=[Optional(), Length(max=255)])
    preheader = StringField("Preheader", validators=[Optional(), Length(max=255)])
    body_format = RadioField(
        "Body written in",
        choices=[SelectChoice("markdown", "Markdown"), SelectChoice("html", "HTML")],
        default="markdown",
    )
    body = TextAreaField("Body", default=STARTER_BODY, render_kw={"rows": 16})
    template_id = StringField(
        "Or a SendGrid dynamic template id",
        validators=[Optional(), Regexp(r"^d-[0-9a-f]{32}$", message="Like d-0123... (34 chars).")],
    )
    discount_code = StringField("Discount code", validators=[Optional(), Length(max=60)])
    holdout_percent = IntegerField(
        "Holdout (% of sendable members never mailed, to measure the lift)",
        validators=[NumberRange(0, 50)],
    )
    frequency_cap_days = IntegerField(
        "At most one campaign per customer every N days", validators=[NumberRange(0, 365)]
    )
    attribution_days = IntegerField(
        "Count orders within N days after the send", validators=[NumberRange(1, 90)]
    )

    def __init__(self, *args, shop=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.shop = shop

    def validate_subject(self, field):
        if not self.template_id.data and not field.data.strip():
            raise ValidationError("A subject is needed unless you use a dynamic template.")

    def validate_body(self, field):
        if not self.template_id.data and not field.data.strip():
            raise ValidationError("Write the body, or give a SendGrid dynamic template id.")

    def content_errors(self) -> list[ContentError]:
        """Compile and trial-render the content as the send will; each error goes to its
        field."""
        draft = Campaign()  # never added to the session
        self.populate_obj(draft)
        errors = check(draft, self.shop)
        for exc in errors:
            target = {"Subject": self.subject, "Preheader": self.preheader}.get(exc.part, self.body)
            where = f"Line {exc.line}: " if exc.line and target is self.body else ""
            target.errors = [*target.errors, where + exc.message]
        return errors


class ScheduleForm(FlaskForm):
    when = RadioField(
        "When", choices=[SelectChoice("now", "Now"), SelectChoice("later", "Later")], default="now"
    )
    date = DateField("Date", validators=[Optional()])
    time = TimeField("Time", validators=[Optional()])

    def moment(self, tz: ZoneInfo) -> datetime | None:
        """The chosen moment in UTC terms (None: now)."""
        if self.when.data == "now":
            return None
        return datetime.combine(self.date.data, self.time.data, tzinfo=tz)

    def validate_date(self, field):
        if self.when.data == "later" and (not field.data or not self.time.data):
            raise ValidationError("Pick a date and a time.")
