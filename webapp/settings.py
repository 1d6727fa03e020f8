"""The Settings page: the shop's own settings, its secrets and the API tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from types import SimpleNamespace
from urllib.parse import urlsplit
from zoneinfo import available_timezones

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf import FlaskForm
from sqlalchemy import delete, select
from werkzeug.datastructures import MultiDict
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
    ValidationError,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange

from surveys.triggers import validate_cooldown_days
from webapp.extensions import db, htmx
from webapp.models import ApiToken, RfmSegmentMap, ShopSettings
from webapp.segmentation import rfm
from webapp.shop import get_shop

bp = Blueprint("settings", __name__, url_prefix="/settings")

TOKEN_MARKER = "pw_"  # lets secret scanners and people recognise a leaked Patchwork token
# A fresh secret travels to the next page view in the session, then is gone: post/redirect/get
# without ever showing a stored secret back.


# --- values ------------------------------------------------------------------------------


@cache
def timezone_choices() -> list[str]:
    return sorted(available_timezones())


def normalise_hhmm(value: str) -> str:
    """'9:05' or '09:05' -> '09:05'; anything else is a ValueError."""
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", value or "")
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(f"{value!r} is not a time like 09:00 (HH:MM, 24-hour clock).")
    return f"{int(match[1]):02d}:{match[2]}"


def normalise_origin(value: str) -> str:
    """An origin as browsers send it: scheme://host[:port], lower-case, default port dropped."""
    text = value.strip()
    example = "like https://shop.example.com"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} is not an origin {example}.") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an origin {example}.")
    if parts.username or parts.password or parts.query or parts.fragment or "*" in text:
        raise ValueError(f"{text!r} is not an origin {example}: only scheme, host and port.")
    if parts.path not in ("", "/"):
        raise ValueError(f"{text!r} has a path; an origin is only scheme, host and port.")
    scheme = parts.scheme.lower()
    try:
        host = parts.hostname.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"{text!r} does not have a valid host name.") from None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    default_port = 443 if scheme == "https" else 80
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    return f"{scheme}://{netloc}"


def last4(secret: str) -> str:
    return secret[-4:] if secret else ""


def hash_token(token: str) -> str:
    """API tokens are stored as SHA-256: enough for 256-bit random secrets, and indexable."""
    return hashlib.sha256(token.encode()).hexdigest()


# --- forms -------------------------------------------------------------------------------


def strip(value):
    return value.strip() if isinstance(value, str) else value


class ShopForm(FlaskForm):
    name = StringField("Shop name", filters=[strip], validators=[DataRequired(), Length(max=200)])
    postal_address = TextAreaField("Postal address", filters=[strip], validators=[Length(max=2000)])
    timezone = SelectField("Time zone", validate_choice=False)
    currency = StringField(
        "Currency",
        filters=[strip, lambda v: v.upper() if isinstance(v, str) else v],
        validators=[DataRequired()],
    )
    churn_window_days = IntegerField(
        "Churn window (days)",
        validators=[
            InputRequired("Enter a number of days."),
            NumberRange(1, 3650, "Between 1 and 3650 days."),
        ],
    )
    quiet_hours_start = StringField("Send from", filters=[strip], validators=[DataRequired()])
    quiet_hours_end = StringField("Send until", filters=[strip], validators=[DataRequired()])
    holdout_percent = IntegerField(
        "Holdout (% of recipients)",
        validators=[InputRequired("Enter a percentage."), NumberRange(0, 50, "Between 0 and 50.")],
    )
    frequency_cap_days = IntegerField(
        "Frequency cap (days)",
        validators=[
            InputRequired("Enter a number of days."),
            NumberRange(0, 365, "Between 0 and 365 days."),
        ],
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timezone.choices = timezone_choices()

    def validate_timezone(self, field):
        if field.data not in set(timezone_choices()):
            raise ValidationError("Choose a time zone from the list, like Europe/Berlin.")

    def validate_currency(self, field):
        if not re.fullmatch(r"[A-Z]{3}", field.data or ""):
            raise ValidationError("A 3-letter ISO 4217 code, like EUR or USD.")

    def _validate_time(self, field):
        try:
            field.data = normalise_hhmm(field.data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    validate_quiet_hours_start = _validate_time
    validate_quiet_hours_end = _validate_time


SHOP_FIELDS = (
    "name",
    "postal_address",
    "timezone",
    "currency",
    "churn_window_days",
    "quiet_hours_start",
    "quiet_hours_end",
    "holdout_percent",
    "frequency_cap_days",
)


class SurveySettingsForm(FlaskForm):
    """Surveys on the shop's pages: where they may appear and how much to trust a page."""

    survey_cooldown_days = IntegerField(
        "Days between surveys",
        validators=[InputRequired("Enter a number of days (0: no cooldown).")],
    )
    allowed_origins = TextAreaField("Allowed origins")
    trust_unsigned_identity = BooleanField("Trust unsigned identity")

    def validate_survey_cooldown_days(self, field):
        if problem := validate_cooldown_days(field.data):
            raise ValidationError(problem)

    def validate_allowed_origins(self, field):
        origins, problems = [], []
        for number, line in enumerate((field.data or "").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                origin = normalise_origin(line)
            except ValueError as exc:
                problems.append(f"Line {number}: {exc}")
                continue
            if origin not in origins:
                origins.append(origin)
        if problems:
            raise ValidationError(" ".join(problems))
        field.data = "\n".join(origins)


SURVEY_FIELDS = ("survey_cooldown_days", "allowed_origins", "trust_unsigned_identity")


class WebhookSecretForm(FlaskForm):
    webhook_secret = PasswordField(
        "Shopify webhook signing secret",
        filters=[strip],
        validators=[
            DataRequired("Paste the secret Shopify shows under Settings › Notifications."),
            Length(16, 128, "Shopify's secret is 16 to 128 characters long."),
        ],
    )


class TokenForm(FlaskForm):
    token_name = StringField(
        "Token name",
        filters=[strip],
        validators=[DataRequired("Name the token after what will use it."), Length(max=100)],
    )


# --- customer profiles: trait weights and the RFM map ------------------------------------


def _percent_field(label: str) -> IntegerField:
    return IntegerField(
        label,
        validators=[
            InputRequired("Enter a percentage."),
            NumberRange(0, 100, "Between 0 and 100."),
        ],
    )


class TraitWeightsForm(FlaskForm):
    """How declared (survey) and observed (orders) evidence combine into a trait."""

    trait_declared_weight_pct = _percent_field("Declared weight (%)")
    trait_observed_weight_pct = _percent_field("Observed weight (%)")
    trait_threshold_pct = _percent_field("Threshold (%)")

    def validate_trait_observed_weight_pct(self, field):
        declared = self.trait_declared_weight_pct.data
        if not all(isinstance(v, int) and 0 <= v <= 100 for v in (declared, field.data)):
            return  # each field says what is wrong with it
        if declared + field.data != 100:
            raise ValidationError(
                f"The declared and observed weights must add up to 100 "
                f"(now {declared} + {field.data} = {declared + field.data})."
            )


TRAIT_FIELDS = ("trait_declared_weight_pct", "trait_observed_weight_pct", "trait_threshold_pct")

MAX_RFM_ROWS = 25  # one per cell: a 26th row could never name a cell
RFM_ROW_FIELDS = ("name", "r_min", "r_max", "f_min", "f_max")
_RFM_KEY = re.compile(r"rows-(\d{1,4})-(\w+)")


def _score_field(label: str) -> IntegerField:
    return IntegerField(
        label,
        validators=[
            InputRequired("A score from 1 to 5."),
            NumberRange(1, 5, "A score from 1 to 5."),
        ],
    )


def _not_below(low, high) -> None:
    if isinstance(low.data, int) and isinstance(high.data, int) and high.data < low.data:
        raise ValidationError(f"At least {low.data}: the range runs from min to max.")


class RfmRowForm(Form):
    """One row of the RFM map: customers whose R and F scores fall in both ranges."""

    name = StringField(
        "Segment name",
        filters=[strip],
        validators=[
            DataRequired("Name the segment."),
            Length(max=60, message="At most 60 characters."),
        ],
    )
    r_min = _score_field("R min")
    r_max = _score_field("R max")
    f_min = _score_field("F min")
    f_max = _score_field("F max")

    def validate_r_max(self, field):
        _not_below(self.r_min, field)

    def validate_f_max(self, field):
        _not_below(self.f_min, field)


class RfmMapForm(FlaskForm):
    rows = FieldList(FormField(RfmRowForm))

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        if not self.rows.entries:
            self.form_errors.append(
                "Keep at least one row: without one no customer gets a segment."
            )
            return False
        if len(self.rows.entries) > MAX_RFM_ROWS:
            self.form_errors.append(
                f"At most {MAX_RFM_ROWS} rows: the grid has only {MAX_RFM_ROWS} cells."
            )
            return False
        return valid


def map_rows(rows: list[RfmSegmentMap]) -> list[dict]:
    return [{field: getattr(row, field) for field in RFM_ROW_FIELDS} for row in rows]


def default_map_rows() -> list[dict]:
    return [
        {"name": name, "r_min": r[0], "r_max": r[1], "f_min": f[0], "f_max": f[1]}
        for name, r, f in rfm.DEFAULT_MAP
    ]


def submitted_map_rows(formdata) -> list[dict]:
    """The table's rows as typed (strings), in their order, for add/remove/move."""
    indices = sorted({int(m[1]) for key in formdata if (m := _RFM_KEY.fullmatch(key))})
    return [
        {field: formdata.get(f"rows-{i}-{field}", "") for field in RFM_ROW_FIELDS}
        for i in indices[: MAX_RFM_ROWS + 1]
    ]


def edit_map_rows(rows: list[dict], action: str) -> list[dict] | None:
    """`add`, `reset`, `remove-<i>`, `up-<i>` or `down-<i>` applied to the rows; None for
    anything else."""
    rows = list(rows)
    if action == "add":
        if len(rows) >= MAX_RFM_ROWS:
            return rows
        return rows + [{"name": "", "r_min": 1, "r_max": 5, "f_min": 1, "f_max": 5}]
    if action == "reset":
        return default_map_rows()
    verb, _, index = action.partition("-")
    if not index.isdigit() or not 0 <= int(index) < len(rows):
        return None
    i = int(index)
    if verb == "remove":
        del rows[i]
    elif verb == "up" and i > 0:
        rows[i - 1], rows[i] = rows[i], rows[i - 1]
    elif verb == "down" and i < len(rows) - 1:
        rows[i + 1], rows[i] = rows[i], rows[i + 1]
    elif verb not in ("up", "down"):
        return None
    return rows


def map_formdata(rows: list[dict]) -> MultiDict:
    return MultiDict(
        {
            f"rows-{i}-{field}": str(row[field])
            for i, row in enumerate(rows)
            for field in RFM_ROW_FIELDS
        }
    )


def _score(value) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 1 <= number <= 5 else None


@dataclass
class MapPreview:
    """What a map (as typed) does to the 25 cells."""

    names: dict[tuple[int, int], str]
    uncovered: list[tuple[int, int]]
    unused: list[str]  # rows that name no cell: rows above them cover all of theirs


def preview_map(rows: list[dict]) -> MapPreview:
    """The first row covering a cell names it; rows with a bad range are left out."""
    usable = []
    for row in rows:
        scores = [_score(row.get(field)) for field in RFM_ROW_FIELDS[1:]]
        r_min, r_max, f_min, f_max = scores
        if None in scores or r_min > r_max or f_min > f_max:
            continue
        usable.append(
            SimpleNamespace(
                name=row.get("name") or "(unnamed)",
                r_min=r_min,
                r_max=r_max,
                f_min=f_min,
                f_max=f_max,
            )
        )
    names = rfm.grid_names(usable)
    unused = []
    for index, row in enumerate(usable):
        if not rfm.grid_names(usable[: index + 1]).keys() - rfm.grid_names(usable[:index]).keys():
            unused.append(row.name)
    return MapPreview(names, rfm.uncovered_cells(usable), unused)


def save_rfm_map(rows: list[dict]) -> None:
    """Replace the map with `rows`, in their order, in one transaction."""
    db.session.execute(delete(RfmSegmentMap))
    for position, row in enumerate(rows):
        db.session.add(RfmSegmentMap(position=position, **{f: row[f] for f in RFM_ROW_FIELDS}))
    db.session.commit()


def rfm_form_of_map() -> RfmMapForm:
    return RfmMapForm(formdata=None, data={"rows": map_rows(rfm.segment_map(db.session))})


# --- services ----------------------------------------------------------------------------


def create_api_token(name: str) -> tuple[ApiToken, str]:
    """A new token; the plain text is returned once and only its SHA-256 is stored."""
    plain = TOKEN_MARKER + secrets.token_urlsafe(32)
    token = ApiToken(name=name, token_hash=hash_token(plain), prefix=plain[:10])
    db.session.add(token)
    db.session.commit()
    return token, plain


def list_api_tokens() -> list[ApiToken]:
    return list(
        db.session.scalars(
            select(ApiToken).order_by(ApiToken.revoked_at.is_not(None), ApiToken.id.desc())
        )
    )


def public_url(endpoint: str) -> str:
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/") + url_for(endpoint)


# --- views -------------------------------------------------------------------------------


def render_page(
    shop: ShopSettings,
    new_token: dict | None = None,
    new_embed_secret: str | None = None,
    **forms,
):
    """The whole page. A fresh secret is rendered straight into the POST's answer, never
    carried through the session: Flask's session cookie is signed, not encrypted."""
    forms.setdefault("form", ShopForm(formdata=None, obj=shop))
    forms.setdefault("survey_form", SurveySettingsForm(formdata=None, obj=shop))
    forms.setdefault("secret_form", WebhookSecretForm())
    forms.setdefault("token_form", TokenForm(formdata=None))
    forms.setdefault("traits_form", TraitWeightsForm(formdata=None, obj=shop))
    forms.setdefault("rfm_form", rfm_form_of_map())
    response = make_response(
        render_template(
            "settings/index.html",
            shop=shop,
            tokens=list_api_tokens(),
            new_token=new_token,
            new_embed_secret=new_embed_secret,
            webhook_url=public_url("api.shopify_orders_webhook"),
            embed_script_url=public_url("embed.loader"),
            api_url=public_url("api.orders"),
            last4=last4,
            rfm_preview=preview_map(forms["rfm_form"].rows.data),
            max_rows=MAX_RFM_ROWS,
            **forms,
        )
    )
    # The page can show a fresh API token: keep it out of every cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def render_tokens(token_form: TokenForm, new_token: dict | None = None):
    """Only the API tokens section, for htmx."""
    response = make_response(
        render_template(
            "settings/_tokens.html",
            token_form=token_form,
            tokens=list_api_tokens(),
            new_token=new_token,
            api_url=public_url("api.orders"),
        )
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/", methods=["GET", "POST"])
def index():
    shop = get_shop()
    form = ShopForm(obj=shop)
    if form.validate_on_submit():
        for name in SHOP_FIELDS:
            setattr(shop, name, getattr(form, name).data)
        db.session.commit()
        flash("Settings saved.", "success")
        return redirect(url_for("settings.index"))
    return render_page(shop, form=form)


@bp.route("/surveys", methods=["POST"])
def surveys():
    shop = get_shop()
    survey_form = SurveySettingsForm()
    if not survey_form.validate_on_submit():
        return render_page(shop, survey_form=survey_form)
    for name in SURVEY_FIELDS:
        setattr(shop, name, getattr(survey_form, name).data)
    db.session.commit()
    flash("Survey settings saved.", "success")
    return redirect(url_for("settings.index", _anchor="surveys"))


@bp.route("/webhook-secret", methods=["POST"])
def webhook_secret():
    shop = get_shop()
    secret_form = WebhookSecretForm()
    if not secret_form.validate_on_submit():
        return render_page(shop, secret_form=secret_form)
    shop.webhook_secret = secret_form.webhook_secret.data
    db.session.commit()
    flash("Shopify webhook secret saved.", "success")
    return redirect(url_for("settings.index", _anchor="secrets"))


@bp.route("/embed-secret", methods=["POST"])
def regenerate_embed_secret():
    shop = get_shop()
    shop.embed_secret = secrets.token_hex(32)
    db.session.commit()
    flash(
        "New embed secret made. Update the secret your shop's pages sign with: "
        "signatures made with the old one no longer link shoppers.",
        "success",
    )
    return render_page(shop, new_embed_secret=shop.embed_secret)


@bp.route("/tokens", methods=["POST"])
def create_token():
    token_form = TokenForm()
    if not token_form.validate_on_submit():
        if htmx:
            return render_tokens(token_form)
        return render_page(get_shop(), token_form=token_form)
    token, plain = create_api_token(token_form.token_name.data)
    new_token = {"id": token.id, "name": token.name, "token": plain}
    if htmx:
        return render_tokens(TokenForm(formdata=None), new_token)
    return render_page(get_shop(), new_token=new_token)


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
def revoke_token(token_id: int):
    token = db.session.get(ApiToken, token_id) or abort(404)
    if token.revoked_at is None:
        token.revoked_at = datetime.now(UTC)
        db.session.commit()
    if htmx:
        return render_template("settings/_token_row.html", token=token)
    flash(f"Token “{token.name}” revoked: calls with it are refused from now on.", "success")
    return redirect(url_for("settings.index", _anchor="api-tokens"))


@bp.route("/traits", methods=["POST"])
def traits():
    shop = get_shop()
    traits_form = TraitWeightsForm()
    if not traits_form.validate_on_submit():
        return render_page(shop, traits_form=traits_form)
    for name in TRAIT_FIELDS:
        setattr(shop, name, getattr(traits_form, name).data)
    db.session.commit()
    flash("Trait weights saved. They take effect at the next refresh.", "success")
    return redirect(url_for("settings.index", _anchor="traits"))


def render_rfm_map(rfm_form: RfmMapForm, unsaved: bool = False, saved: bool = False):
    """The RFM map editor alone for htmx, else the whole page."""
    if htmx:
        return render_template(
            "settings/_rfm_map.html",
            rfm_form=rfm_form,
            rfm_preview=preview_map(rfm_form.rows.data),
            max_rows=MAX_RFM_ROWS,
            unsaved=unsaved,
            saved=saved,
        )
    return render_page(get_shop(), rfm_form=rfm_form, unsaved=unsaved)


@bp.route("/rfm-map", methods=["POST"])
def rfm_map():
    """Save the table, or add, remove or move a row of it (unsaved until Save)."""
    action = request.form.get("action", "save")
    if action == "save":
        rfm_form = RfmMapForm()
        if not rfm_form.validate_on_submit():
            return render_rfm_map(rfm_form, unsaved=True)
        save_rfm_map(rfm_form.rows.data)
        if htmx:
            return render_rfm_map(rfm_form_of_map(), saved=True)
        flash("RFM map saved. It takes effect at the next refresh.", "success")
        return redirect(url_for("settings.index", _anchor="rfm-map"))
    rows = edit_map_rows(submitted_map_rows(request.form), action)
    if rows is None:
        abort(400, f"Unknown change to the RFM map: {action[:40]!r}.")
    return render_rfm_map(RfmMapForm(formdata=map_formdata(rows)), unsaved=True)
