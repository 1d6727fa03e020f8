"""Surveys, the responses shoppers give, and the traits their answers declare.

A survey keeps two copies of its definition (surveys.definition's dict form): `definition`
is the draft the builder edits, `published` is what shoppers see, copied from the draft on
publish. Editing a live survey therefore never changes it under a shopper mid-answer.

A response is created when the survey is shown and collects one answer row per question
(unique, so sending the same answer twice stores it once). Choices and declared traits are
kept in their own narrow tables so that results and segments count them with GROUP BY.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.extensions import db
from webapp.models._types import UTCDateTime, utcnow


class Survey(db.Model):
    __tablename__ = "surveys"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)  # the hosted link /s/<slug>
    status: Mapped[str] = mapped_column(String(10), default="draft")  # draft|active|paused
    definition: Mapped[dict] = mapped_column(JSON)
    published: Mapped[dict | None] = mapped_column(JSON)
    template_key: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def title(self) -> str:
        return (self.published or self.definition).get("title") or f"Survey {self.id}"

    @property
    def is_active(self) -> bool:
        return self.status == "active" and self.published is not None

    @property
    def has_unpublished_changes(self) -> bool:
        return self.published != self.definition


class SurveyResponse(db.Model):
    """One showing of a survey to one shopper, and who they are as far as we know.

    Identity arrives three ways: verified (signed by the shop's page), claimed (unsigned,
    linked only when the shop trusts unsigned identity) or not at all (a visitor id, linked
    when that visitor is identified later). `order_ref` keeps a verified order id whose order
    is not imported yet, so the import can link it when it arrives.
    """

    __tablename__ = "survey_responses"
    __table_args__ = (
        Index("ix_survey_responses_survey_shown", "survey_id", "shown_at"),
        Index("ix_survey_responses_pending_order", "order_id", "order_ref"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)  # inside the signed token
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(10), default="embed")  # embed|link
    visitor_id: Mapped[str | None] = mapped_column(String(64), index=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("orders.id", ondelete="SET NULL"), index=True
    )
    order_ref: Mapped[str | None] = mapped_column(String(120))
    claimed_email: Mapped[str | None] = mapped_column(String(320))
    claimed_customer_ref: Mapped[str | None] = mapped_column(String(120))
    identity_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    device: Mapped[str] = mapped_column(String(10), default="desktop")  # mobile|tablet|desktop
    page_url: Mapped[str | None] = mapped_column(Text)
    next_question: Mapped[str | None] = mapped_column(String(40))  # None once completed
    shown_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    survey: Mapped[Survey] = relationship()
    answers: Mapped[list[SurveyAnswer]] = relationship(
        back_populates="response", cascade="all, delete-orphan", passive_deletes=True
    )


class SurveyAnswer(db.Model):
    """A response's answer to one question, in `surveys.answers.Answer.to_value()` form."""

    __tablename__ = "survey_answers"
    __table_args__ = (UniqueConstraint("response_id", "question_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    response_id: Mapped[int] = mapped_column(
        ForeignKey("survey_responses.id", ondelete="CASCADE")
    )
    survey_id: Mapped[int] = mapped_column(
        ForeignKey("surveys.id", ondelete="CASCADE"), index=True
    )
    question_id: Mapped[str] = mapped_column(String(40))
    value: Mapped[dict | None] = mapped_column(JSON)  # None: an optional question skipped
    number: Mapped[int | None] = mapped_column(Integer)  # rating and NPS, for aggregates
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    response: Mapped[SurveyResponse] = relationship(back_populates="answers")


class AnswerChoice(db.Model):
    """One option chosen in a choice answer (several for multiple choice)."""

    __tablename__ = "survey_answer_choices"
    __table_args__ = (Index("ix_survey_answer_choices_question", "survey_id", "question_id"),)

    answer_id: Mapped[int] = mapped_column(
        ForeignKey("survey_answers.id", ondelete="CASCADE"), primary_key=True
    )
    option_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"))
    question_id: Mapped[str] = mapped_column(String(40))


class DeclaredTrait(db.Model):
    """A trait a shopper declared by choosing an option that carries it (`craft:knitting`).

    The customer is the response's; segments take each customer's latest declaration per
    dimension.
    """

    __tablename__ = "declared_traits"
    __table_args__ = (Index("ix_declared_traits_dimension", "dimension", "response_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    answer_id: Mapped[int] = mapped_column(
        ForeignKey("survey_answers.id", ondelete="CASCADE"), index=True
    )
    response_id: Mapped[int] = mapped_column(
        ForeignKey("survey_responses.id", ondelete="CASCADE")
    )
    dimension: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(64))
    declared_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
