"""A survey's results: funnel, a chart per question, NPS, the responses list and CSV export.

The page is one GET form of filters; htmx swaps only the results below it (active filtering,
the URL pushed so a reload or a shared link shows the same), and the page works as plain
links and forms without JavaScript. The export takes the same filters as the page.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from flask import Blueprint, Response, abort, render_template, request, stream_with_context
from flask_wtf import FlaskForm
from wtforms import DateField, SelectField
from wtforms.fields import SelectChoice
from wtforms.validators import Optional

from surveys.definition import OTHER_OPTION_ID, SurveyDefinition
from surveys.export import safe_row
from webapp.extensions import db, htmx
from webapp.models import Survey
from webapp.shop import shop_timezone
from webapp.surveys.responses import live_definition
from webapp.surveys.stats import (
    Cursor,
    ResponseRow,
    ResultsFilter,
    all_responses,
    answer_words,
    day_bounds,
    funnel,
    question_charts,
    responses_page,
)
from webapp.web import format_datetime

bp = Blueprint("survey_results", __name__, url_prefix="/surveys")

RESULTS_TARGET = "survey-results"
WHO = {"linked": True, "anonymous": False}
_MAX_INT = 2**63 - 1


class FilterForm(FlaskForm):
    """The filters, read from the query string (a GET changes nothing: no CSRF token)."""

    class Meta:
        csrf = False

    since = DateField("From", validators=[Optional()])
    until = DateField("To", validators=[Optional()])
    answer = SelectField("Answered", default="")
    who = SelectField(
        "Who",
        default="",
        choices=[
            SelectChoice("", "Everyone"),
            SelectChoice("linked", "Linked to a customer"),
            SelectChoice("anonymous", "Anonymous"),
        ],
    )

    def __init__(self, definition: SurveyDefinition, **kwargs) -> None:
        super().__init__(formdata=request.args, **kwargs)
        self.answer.choices = [SelectChoice("", "Any answer"), *answer_options(definition)]

    def results_filter(self) -> ResultsFilter:
        start, end = day_bounds(self.since.data, self.until.data, shop_timezone())
        question_id, _, option_id = (self.answer.data or "").partition(":")
        return ResultsFilter(
            start=start,
            end=end,
            question_id=question_id or None,
            option_id=option_id or None,
            linked=WHO.get(self.who.data or ""),
        )

    def query_args(self) -> dict[str, str]:
        """The filters as they go into links (paging, export), empty ones left out."""
        return {
            name: value
            for name in ("since", "until", "answer", "who")
            if (value := request.args.get(name, "").strip())
        }

    def problems(self) -> str:
        return " ".join(
            f"{getattr(self, name).label.text}: {errors[0]}" for name, errors in self.errors.items()
        )


def answer_options(definition: SurveyDefinition) -> list[SelectChoice]:
    """Every option a response can be filtered by ("question:option"), grouped by question."""
    choices = []
    for question in definition.questions:
        if not question.is_choice:
            continue
        labels = [(o.id, o.label) for o in question.options]
        if question.allow_other:
            labels.append((OTHER_OPTION_ID, question.other_label))
        choices += [
            SelectChoice(f"{question.id}:{option_id}", label, optgroup=question.prompt)
            for option_id, label in labels
        ]
    return choices


def _survey_or_404(survey_id: int) -> Survey:
    survey = db.session.get(Survey, survey_id) if survey_id <= _MAX_INT else None
    if survey is None:
        abort(404, "There is no such survey.")
    return survey


def _wants_partial() -> bool:
    """An htmx request for the results alone (a history restore needs the whole page)."""
    return bool(htmx) and not htmx.history_restore_request and htmx.target == RESULTS_TARGET


@bp.get("/<int:survey_id>/results")
def results(survey_id: int):
    survey = _survey_or_404(survey_id)
    if survey.published is None:  # a draft (maybe half-edited) that no shopper has seen
        return render_template("surveys/results_unpublished.html", survey=survey)
    definition = live_definition(survey)
    form = FilterForm(definition)
    context = {"survey": survey, "definition": definition, "form": form}
    if not form.validate():
        return render_template("surveys/results.html", **context), 400
    where = form.results_filter()
    context |= {
        "args": form.query_args(),
        "funnel": funnel(db.session, survey.id, where),
        "charts": question_charts(db.session, survey.id, definition, where),
        "page": responses_page(
            db.session, survey.id, where, Cursor.decode(request.args.get("after"))
        ),
        "describe": lambda row: describe_row(definition, row),
        "first_page": "after" not in request.args,
    }
    template = "surveys/results_body.html" if _wants_partial() else "surveys/results.html"
    response = Response(render_template(template, **context))
    # The same URL answers with a fragment or a page: caches must tell them apart.
    response.vary.add("HX-Request")
    return response


def describe_row(definition: SurveyDefinition, row: ResponseRow) -> list[tuple[str, str]]:
    """(question, answer in words) for each question the response answered, in survey order."""
    return [
        (question.prompt, answer_words(question, row.answers[question.id]))
        for question in definition.questions
        if question.id in row.answers
    ]


# --- export ----------------------------------------------------------------------------------

FIXED_COLUMNS = (
    "Response",
    "Shown at",
    "Started at",
    "Completed at",
    "Dismissed at",
    "Device",
    "Page",
    "Customer id",
    "Customer",
    "Email",
    "Order",
)


def _customer_cells(row: ResponseRow) -> list[object]:
    customer = row.customer
    if customer is None:
        return ["", "", ""]
    if customer.erased_at is not None:
        return [customer.id, f"Erased customer #{customer.id}", ""]
    return [customer.id, customer.display_name, customer.email or ""]


def export_rows(survey: Survey, where: ResultsFilter) -> Iterator[str]:
    """The CSV's lines: a header, then one row per response with a column per question."""
    definition = live_definition(survey)
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values: list[object]) -> str:
        writer.writerow(safe_row(values))
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line([*FIXED_COLUMNS, *(q.prompt for q in definition.questions)])
    for row in all_responses(db.session, survey.id, where):
        response = row.response
        times = [
            format_datetime(moment, "%Y-%m-%d %H:%M:%S")
            for moment in (
                response.shown_at,
                response.started_at,
                response.completed_at,
                response.dismissed_at,
            )
        ]
        answers = [
            answer_words(q, row.answers[q.id]) if q.id in row.answers else ""
            for q in definition.questions
        ]
        yield line(
            [
                response.id,
                *times,
                response.device,
                response.page_url or "",
                *_customer_cells(row),
                row.order_name or "",
                *answers,
            ]
        )


@bp.get("/<int:survey_id>/responses.csv")
def export(survey_id: int):
    survey = _survey_or_404(survey_id)
    if survey.published is None:
        abort(404, "This survey has never been published, so it has no responses.")
    form = FilterForm(live_definition(survey))
    if not form.validate():
        abort(400, form.problems())
    return Response(
        stream_with_context(export_rows(survey, form.results_filter())),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{survey.slug}-responses.csv"',
            "Cache-Control": "no-store",
        },
    )
