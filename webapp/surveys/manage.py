"""Creating, publishing and pausing surveys: the owner's actions, shared by builder and CLI."""

from __future__ import annotations

import copy
import re
import unicodedata
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from surveys.definition import validate_definition
from surveys.errors import DefinitionInvalid
from surveys.templates import template_definition
from webapp.models import Survey
from webapp.models._types import utcnow

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


def create_survey(session: Session, template_key: str) -> Survey:
    """A new draft survey from a stock template (KeyError for an unknown key)."""
    definition = template_definition(template_key)
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
