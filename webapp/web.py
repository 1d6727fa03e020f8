"""The home page, template helpers and error pages shared by every blueprint."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, Flask, render_template
from flask_login import current_user
from sqlalchemy import func, select

from webapp import runs
from webapp.extensions import db
from webapp.models import Customer, Survey, Task
from webapp.scheduler.status import next_run_of
from webapp.segmentation import rfm
from webapp.shop import get_shop, shop_timezone
from webapp.surveys.manage import active_surveys, response_counts

bp = Blueprint("web", __name__)


@bp.route("/")
def home():
    # From the totals every import keeps per customer (orders not cancelled, net of
    # refunds): one pass over customers instead of two over ten times as many orders.
    customers, orders, revenue = db.session.execute(
        select(
            func.count(Customer.id),
            func.coalesce(func.sum(Customer.orders_count), 0),
            func.coalesce(func.sum(Customer.spent_cents), 0),
        )
    ).one()
    stats = {"customers": customers, "orders": orders, "revenue_cents": revenue}
    recent_tasks = db.session.scalars(select(Task).order_by(Task.id.desc()).limit(5)).all()
    return render_template("home.html", stats=stats, recent_tasks=recent_tasks, **dashboard())


@dataclass(frozen=True)
class SurveyRate:
    survey: Survey
    shown: int
    completed: int

    @property
    def completion_percent(self) -> float:
        return 100 * self.completed / self.shown if self.shown else 0.0


def survey_rates() -> list[SurveyRate]:
    """Shown, completed and the completion rate of every active survey, all time."""
    counts = response_counts(db.session)  # one grouped query for every survey
    rates = []
    for survey in active_surveys(db.session):
        if survey.published is not None:
            shown, _, completed = counts.get(survey.id, (0, 0, 0))
            rates.append(SurveyRate(survey, shown, completed))
    return rates


def dashboard() -> dict:
    """The current refresh's RFM grid, lifecycle and behaviours; the last and next refresh;
    survey response rates."""
    run = runs.current_run()
    latest = runs.latest_run()
    counts = (run.counts or {}) if run else {}
    return {
        "run": run,
        # A run after the current one that failed or is under way, to say so.
        "latest_run": latest if latest is not None and latest != run else None,
        "grid": counts.get("rfm_grid") or [[0] * 5 for _ in range(5)],
        "grid_names": rfm.grid_names(rfm.segment_map(db.session)),
        "lifecycle": runs.ordered_counts(counts.get("lifecycle") or {}, runs.LIFECYCLE_ORDER),
        "behaviours": [
            (label, (counts.get("behaviours") or {}).get(key, 0))
            for key, label in runs.BEHAVIOURS.items()
        ],
        "active_task": runs.active_refresh_task(),
        "next_refresh": next_run_of("refresh"),  # None while the owner has paused it
        "survey_rates": survey_rates(),
    }


def format_money(cents: int | None, currency: str | None = None) -> str:
    """Integer minor units as the shop shows them: 123456 -> "1,234.56 USD"."""
    if cents is None:
        return ""
    currency = currency or get_shop().currency
    sign = "-" if cents < 0 else ""
    whole, minor = divmod(abs(int(cents)), 100)
    return f"{sign}{whole:,}.{minor:02d} {currency}"


def format_datetime(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A UTC timestamp shown in the shop's time zone."""
    if value is None:
        return ""
    return value.astimezone(shop_timezone()).strftime(fmt)


def register_template_helpers(app: Flask) -> None:
    app.add_template_filter(format_money, "money")
    app.add_template_filter(format_datetime, "shoptime")
    app.add_template_filter(lambda v: format_datetime(v, "%Y-%m-%d"), "shopdate")

    @app.context_processor
    def inject_shop():
        if current_user.is_authenticated:
            return {"shop": get_shop()}
        return {}

    for code, title in (
        (400, "Bad request"),
        (403, "Forbidden"),
        (404, "Not found"),
        (405, "Method not allowed"),
        (413, "File too large"),
        (429, "Too many requests"),
    ):
        app.register_error_handler(code, _error_page(code, title))


def _error_page(code: int, title: str):
    def handle(error):
        from webapp.surveys.embed import http_error_json, wants_json_error

        if wants_json_error():  # the embed's API answers in JSON, also when unrouted
            return http_error_json(error)
        description = getattr(error, "description", "") or ""
        return render_template("error.html", code=code, title=title, description=description), code

    return handle
