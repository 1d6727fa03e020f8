"""The shopper's survey pages: the iframe's steps, the hosted link, and the owner's preview.

One question per step, a plain HTML form that htmx swaps in place (and that works as a
normal form post without JavaScript). Each step is saved at once through
webapp.surveys.responses, so a shopper who leaves halfway still counts. The answer's rules
live in surveys.answers; a rejected answer comes back as its reason next to the field.

- /r/<token>  the response's steps (the embed's iframe, and the hosted link after its first
              answer); the signed token is the only key to the response.
- /s/<slug>   the hosted link for emails: a GET shows the first question and records nothing
              (mail scanners prefetch links); the first answer creates the response.
- /surveys/<id>/preview  the owner's look at the draft; nothing is stored.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from surveys.answers import AnswerError, next_question, validate_answer
from surveys.definition import Question, SurveyDefinition, parse_definition, validate_definition
from surveys.triggers import device_class
from webapp.auth import public
from webapp.extensions import db, htmx, limiter
from webapp.models import Survey, SurveyAnswer, SurveyResponse
from webapp.shop import get_shop
from webapp.surveys.public import (
    ShopperError,
    identity_from,
    rate_limited,
    response_for_token,
    shop_origins,
)
from webapp.surveys.responses import (
    AnswerRejected,
    live_definition,
    record_answer,
    start_response,
)
from webapp.surveys.step_forms import error_field, raw_answer, step_form
from webapp.surveys.tokens import response_token

bp = Blueprint("respond", __name__)


# --- what every page here sends --------------------------------------------------------------


@bp.after_request
def _shopper_page_headers(response: Response) -> Response:
    """Only the shop's own pages may frame a survey; nothing leaks or lingers in caches."""
    ancestors = ["'self'"]
    if request.endpoint == "respond.step":
        ancestors += shop_origins(get_shop())
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; base-uri 'none';"
        f" frame-ancestors {' '.join(ancestors)}"
    )
    # The token in the address is the key to the response: never send it to another site.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _error_page(status: int, reason: str, headers: dict | None = None):
    db.session.rollback()
    template = "respond/_closed_step.html" if htmx else "respond/closed.html"
    html = render_template(template, status=status, reason=reason)
    return html, status, headers or {}


@bp.errorhandler(ShopperError)
def _shopper_error(error: ShopperError):
    return _error_page(error.status, error.reason)


def _http_error(error: HTTPException):
    if error.code == 429:
        wait = limiter.retry_after()
        reason = f"Too many requests from your address; please try again in {wait} seconds."
        return _error_page(429, reason, {"Retry-After": str(wait)})
    if error.code == 413:
        return _error_page(413, "That answer is too long to send.")
    return _error_page(error.code or 400, error.description or "")


for _code in (400, 404, 405, 410, 413, 429):
    # By code: the app's owner-facing error pages are registered by code and would win.
    bp.register_error_handler(_code, _http_error)


# --- rendering a step ------------------------------------------------------------------------


def _previous_step(definition: SurveyDefinition, question_id: str | None, answered) -> str | None:
    """The answered question before `question_id` (before the end when None): Back's target."""
    end = definition.index_of(question_id) if question_id else len(definition.questions)
    earlier = [q.id for q in definition.questions[:end] if q.id in answered]
    return earlier[-1] if earlier else None


def _render(
    *,
    mode: str,
    definition: SurveyDefinition,
    question: Question | None,
    form=None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    action: str = "",
    method: str = "post",
    back: dict[str, str] | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
):
    """The step (the partial for htmx, else the whole page); `question` None: the thank-you."""
    context: dict[str, Any] = {
        "mode": mode,
        "definition": definition,
        "question": question,
        "form": form,
        "errors": errors or {},
        "notice": notice,
        "action": action,
        "method": method,
        "back": back,
        "total": len(definition.questions),
        "number": definition.index_of(question.id) + 1 if question else None,
    }
    template = "respond/_step.html" if htmx else "respond/page.html"
    return render_template(template, **context), status, headers or {}


def _answers(survey_response: SurveyResponse) -> dict[str, SurveyAnswer]:
    rows = db.session.scalars(
        select(SurveyAnswer).where(SurveyAnswer.response_id == survey_response.id)
    )
    return {row.question_id: row for row in rows}


def _can_show(survey_response: SurveyResponse, question_id: str | None, answered) -> bool:
    """A step a shopper may see (and answer): an answered one, or the one being waited for."""
    return question_id is not None and (
        question_id in answered or question_id == survey_response.next_question
    )


def _mode(survey_response: SurveyResponse) -> str:
    return "link" if survey_response.channel == "link" else "embed"


def _show_response_step(
    token: str,
    survey_response: SurveyResponse,
    definition: SurveyDefinition,
    question_id: str | None,
    *,
    form=None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
):
    answered = _answers(survey_response)
    if not _can_show(survey_response, question_id, answered):
        question_id = survey_response.next_question
    if question_id is not None and question_id not in {q.id for q in definition.questions}:
        # Republished without the question this response waits for: it cannot go on.
        raise ShopperError(
            410, "survey_changed", "This survey has changed. Thank you for your time!"
        )
    question = definition.question(question_id) if question_id else None
    if question is not None and form is None:
        stored = answered.get(question.id)
        form = step_form(question, stored=stored.value if stored else None)
    previous = _previous_step(definition, question_id, answered) if question else None
    back = {"action": url_for(".step", token=token), "step": previous} if previous else None
    return _render(
        mode=_mode(survey_response),
        definition=definition,
        question=question,
        form=form,
        errors=errors,
        notice=notice,
        action=url_for(".step", token=token),
        back=back,
        status=status,
        headers=headers,
    )


# --- the response's steps --------------------------------------------------------------------


@bp.route("/r/<token>", methods=["GET", "POST"])
@public
@rate_limited
def step(token: str):
    survey_response = response_for_token(token)
    definition = live_definition(survey_response.survey)
    if request.method != "POST":  # GET and HEAD
        wanted = request.args.get("step")
        return _show_response_step(token, survey_response, definition, wanted)

    question = _posted_question(definition)
    form = step_form(question, formdata=request.form)
    try:
        answer = record_answer(db.session, survey_response, question.id, raw_answer(question, form))
    except AnswerRejected as error:  # a stale page: show the step the response is at
        db.session.rollback()
        return _show_response_step(
            token, survey_response, definition, None, notice=error.reason, status=409
        )
    except AnswerError as error:
        db.session.rollback()
        return _show_response_step(
            token,
            survey_response,
            definition,
            question.id,
            form=form,
            errors={error_field(question, error): error.reason},
            status=422,
        )
    db.session.commit()
    following = next_question(definition, question.id, answer)
    if not htmx:  # post/redirect/get, so a reload never sends the answer again
        return redirect(url_for(".step", token=token, step=following), 303)
    return _show_response_step(token, survey_response, definition, following)


def _posted_question(definition: SurveyDefinition) -> Question:
    question_id = request.form.get("question", "")
    try:
        return definition.question(question_id)
    except KeyError:
        raise ShopperError(400, "unknown_question", "This survey has no such question.") from None


# --- the hosted link -------------------------------------------------------------------------


def _open_survey(slug: str) -> Survey:
    survey = db.session.scalar(select(Survey).where(Survey.slug == slug[:80]))
    if survey is None or survey.published is None:
        raise ShopperError(404, "unknown_survey", "There is no survey at this address.")
    if not survey.is_active:
        raise ShopperError(410, "survey_closed", "This survey is closed. Thank you for your time!")
    return survey


@bp.route("/s/<slug>", methods=["GET", "POST"])
@public
@rate_limited
def hosted(slug: str):
    survey = _open_survey(slug)
    definition = live_definition(survey)
    first = definition.questions[0]
    # Keep the link's query (the shopper's identity) on the form's address for the POST.
    action = url_for(".hosted", slug=slug, **request.args)
    if request.method != "POST":  # never records anything: mail scanners prefetch links
        return _render(
            mode="link", definition=definition, question=first, form=step_form(first), action=action
        )

    identity = identity_from(request.args)
    question = _posted_question(definition)
    form = step_form(question, formdata=request.form)
    if question.id != first.id:
        raise ShopperError(400, "out_of_order", "Answer the questions in order.")
    try:
        validate_answer(question, raw_answer(question, form))
    except AnswerError as error:  # nothing is stored until the first answer is valid
        return _render(
            mode="link",
            definition=definition,
            question=question,
            form=form,
            errors={error_field(question, error): error.reason},
            action=action,
            status=422,
        )
    survey_response = start_response(
        db.session,
        survey,
        get_shop(),
        channel="link",
        identity=identity,
        device=device_class(request.headers.get("User-Agent")),
    )
    record_answer(db.session, survey_response, question.id, raw_answer(question, form))
    db.session.commit()
    token = response_token(survey_response.public_id)
    following = survey_response.next_question
    if not htmx:
        return redirect(url_for(".step", token=token, step=following), 303)
    # The rest of the survey continues at the response's own address.
    push = {"HX-Push-Url": url_for(".step", token=token)}
    return _show_response_step(token, survey_response, definition, following, headers=push)


# --- the owner's preview ---------------------------------------------------------------------


@bp.get("/surveys/<int:survey_id>/preview")
def preview(survey_id: int):
    """The draft as shoppers would see it; answers are checked, never stored."""
    survey = db.get_or_404(Survey, survey_id)
    problems = validate_definition(survey.definition)
    if problems:
        return render_template("respond/preview_invalid.html", survey=survey, problems=problems)
    definition = parse_definition(survey.definition)
    answered_id = request.args.get("question")  # set when "Next" was pressed on a step
    question = _preview_question(definition, answered_id or request.args.get("step"))
    form = step_form(question)
    errors: dict[str, str] = {}
    if answered_id == question.id:
        form = step_form(question, formdata=request.args)
        try:
            answer = validate_answer(question, raw_answer(question, form))
        except AnswerError as error:
            errors = {error_field(question, error): error.reason}
        else:
            following = next_question(definition, question.id, answer)
            if following is None:
                return _render(mode="preview", definition=definition, question=None)
            question = definition.question(following)
            form = step_form(question)
    index = definition.index_of(question.id)
    action = url_for(".preview", survey_id=survey_id)
    back = {"action": action, "step": definition.questions[index - 1].id} if index > 0 else None
    return _render(
        mode="preview",
        definition=definition,
        question=question,
        form=form,
        errors=errors,
        action=action,
        method="get",
        back=back,
        status=422 if errors else 200,
    )


def _preview_question(definition: SurveyDefinition, question_id: str | None) -> Question:
    try:
        return definition.question(question_id or "")
    except KeyError:
        return definition.questions[0]
