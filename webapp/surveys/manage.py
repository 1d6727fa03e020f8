"""Creating, publishing and pausing surveys: the owner's actions, shared by builder and CLI."""

from __future__ import annotations

import copy
import re
import unicodedata
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from surveys.definition import validate_definition
from surveys.errors import DefinitionInvalid
from surveys.templates import template_definition
from webapp.models import Survey, SurveyAnswer, SurveyResponse
from webapp.models._types import utcnow
from webapp.surveys.drafts import blank_definition

SLUG_MAX = 60


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:SLUG_MAX].rstrip("-") or "survey"


def unique_slug(session: Session, title: str, survey_id: int | None = None) -> str:
    base = slugify(title)
    taken = set(
        session.scalars(
            select(Survey.slug).where(Survey.slug.like(f"{base}%"), Survey.id != (survey_id or 0))
        )
    )
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug


def create_survey(session: Session, template_key: str | None) -> Survey:
    """A new draft survey from a stock template, or a blank one for None.

    KeyError for an unknown template key.
    """
    definition = template_definition(template_key) if template_key else blank_definition()
    survey = Survey(
        slug=unique_slug(session, definition["title"]),
        definition=definition,
        template_key=template_key,
    )
    session.add(survey)
    session.flush()
    return survey


def publish(survey: Survey, now: datetime | None = None) -> None:
    """Shoppers see the draft from now on. Raises DefinitionInvalid if it has problems."""
    if errors := validate_definition(survey.definition):
        raise DefinitionInvalid(errors)
    survey.published = copy.deepcopy(survey.definition)
    survey.published_at = now or utcnow()
    survey.status = "active"


def pause(survey: Survey) -> None:
    """Stop showing the survey; tokens already handed out still take their answers."""
    if survey.status == "active":
        survey.status = "paused"


def resume(survey: Survey) -> None:
    if survey.status == "paused" and survey.published is not None:
        survey.status = "active"


def active_surveys(session: Session) -> list[Survey]:
    return list(
        session.scalars(select(Survey).where(Survey.status == "active").order_by(Survey.id))
    )


def save_draft(survey: Survey, definition: dict) -> None:
    """Keep the builder's edit. A new dict, because the JSON column does not track in-place
    changes; shoppers still see the published copy until the next publish."""
    survey.definition = copy.deepcopy(definition)


def used_question_ids(session: Session, survey: Survey) -> set[str]:
    """Ids a new question must not take: published or already answered, so that answers
    given to a deleted question never count for a new one."""
    published = (survey.published or {}).get("questions") or []
    answered = session.scalars(
        select(SurveyAnswer.question_id).where(SurveyAnswer.survey_id == survey.id).distinct()
    )
    return {q.get("id") for q in published} | set(answered)


def used_option_ids(survey: Survey, question_id: str) -> set[str]:
    """Option ids of the published question: a new option must not take one over."""
    for question in (survey.published or {}).get("questions") or []:
        if question.get("id") == question_id:
            return {o.get("id") for o in question.get("options") or []}
    return set()


def response_counts(session: Session) -> dict[int, tuple[int, int, int]]:
    """survey id -> (shown, started, completed), for the surveys list."""
    rows = session.execute(
        select(
            SurveyResponse.survey_id,
            func.count(),
            func.count(SurveyResponse.started_at),
            func.count(SurveyResponse.completed_at),
        ).group_by(SurveyResponse.survey_id)
    )
    return {survey_id: tuple(counts) for survey_id, *counts in rows}
