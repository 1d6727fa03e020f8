"""Privacy: export everything held about a customer, and erase their personal data.

Erasure keeps the customer row and its orders (anonymised) so the shop's totals do not change,
and keeps a one-way hash of the email so that a later import never brings the person back.
Their survey responses stay too (the results' counts do not change), without what could
identify them: the identity the shop's page claimed, the page, the visitor id, and every
address or free text they typed.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import selectinload

from webapp.extensions import db
from webapp.models import Customer, ErasedEmail, Order, SurveyAnswer, SurveyResponse
from webapp.surveys.responses import live_definition
from webapp.surveys.stats import answer_words

EXPORT_FORMAT = "patchwork.customer-export/1"

# Everything on the customer row that identifies a person; erasure sets each to NULL.
PERSONAL_FIELDS = (
    "external_id",
    "email",
    "email_norm",
    "first_name",
    "last_name",
    "city",
    "country",
)


def email_hash(email: str) -> str:
    """A one-way HMAC-SHA256 of the normalised (trimmed, lower-cased) email, keyed with this
    installation's secret erasure key: a plain hash of an email is reversed by a dictionary."""
    from webapp.shop import get_shop

    key = get_shop().erasure_key.encode()
    return hmac.new(key, email.strip().lower().encode(), hashlib.sha256).hexdigest()


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def customer_orders(customer: Customer) -> list[Order]:
    """The customer's orders with their lines, newest first."""
    return list(
        db.session.scalars(
            select(Order)
            .where(Order.customer_id == customer.id)
            .options(selectinload(Order.lines))
            .order_by(Order.placed_at.desc(), Order.id.desc())
        )
    )


def export_customer(customer: Customer) -> dict[str, Any]:
    """Everything held about the customer, JSON-ready: amounts in integer minor units, UTC times."""
    return {
        "format": EXPORT_FORMAT,
        "exported_at": _iso(datetime.now(UTC)),
        "customer": {
            "id": customer.id,
            **{field: getattr(customer, field) for field in PERSONAL_FIELDS},
            "created_at": _iso(customer.created_at),
            "updated_at": _iso(customer.updated_at),
            "erased_at": _iso(customer.erased_at),
            "orders_count": customer.orders_count,
            "spent_cents": customer.spent_cents,
            "last_order_at": _iso(customer.last_order_at),
        },
        "consent": {
            "accepts_marketing": bool(customer.accepts_marketing),
            "source": customer.consent_source,
            "consented_at": _iso(customer.consent_at),
            "unsubscribed_at": _iso(customer.unsubscribed_at),
        },
        "orders": [_export_order(order) for order in customer_orders(customer)],
        "survey_responses": [_export_response(r) for r in survey_responses_of(customer)],
    }


def _export_order(order: Order) -> dict[str, Any]:
    return {
        "external_id": order.external_id,
        "shopify_id": order.shopify_id,
        "placed_at": _iso(order.placed_at),
        "currency": order.currency,
        "total_cents": order.total_cents,
        "refunded_cents": order.refunded_cents,
        "financial_status": order.financial_status,
        "cancelled_at": _iso(order.cancelled_at),
        "source": order.source,
        "tags": order.tags,
        "lines": [
            {
                "position": line.position,
                "sku": line.sku,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price_cents": line.price_cents,
                "category": line.category,
                "tier": line.tier,
            }
            for line in order.lines
        ],
    }


def survey_responses_of(customer: Customer) -> list[SurveyResponse]:
    """The customer's survey responses, oldest first: those linked to them, and unlinked ones
    that name their email (an unverified claim, or an address typed without consent)."""
    email = customer.email_norm
    mine = [SurveyResponse.customer_id == customer.id]
    if email:
        mine.append(func.lower(func.trim(SurveyResponse.claimed_email)) == email)
        mine.append(
            exists(
                select(SurveyAnswer.id).where(
                    SurveyAnswer.response_id == SurveyResponse.id,
                    func.lower(SurveyAnswer.value["email"].as_string()) == email,
                )
            )
        )
    return list(
        db.session.scalars(
            select(SurveyResponse)
            .where(or_(*mine))
            .options(selectinload(SurveyResponse.answers), selectinload(SurveyResponse.survey))
            .order_by(SurveyResponse.shown_at, SurveyResponse.id)
        )
    )


def _export_response(response: SurveyResponse) -> dict[str, Any]:
    definition = live_definition(response.survey)
    questions = {q.id: q for q in definition.questions}
    return {
        "survey": {"id": response.survey_id, "title": response.survey.title},
        "shown_at": _iso(response.shown_at),
        "started_at": _iso(response.started_at),
        "completed_at": _iso(response.completed_at),
        "dismissed_at": _iso(response.dismissed_at),
        "channel": response.channel,
        "device": response.device,
        "page_url": response.page_url,
        "visitor_id": response.visitor_id,
        "order_ref": response.order_ref,
        "claimed_email": response.claimed_email,
        "claimed_customer_ref": response.claimed_customer_ref,
        "identity_verified": response.identity_verified,
        "answers": [
            {
                "question_id": answer.question_id,
                "question": q.prompt if (q := questions.get(answer.question_id)) else None,
                "answer": answer_words(q, answer.value) if q else None,
                "value": answer.value,
                "answered_at": _iso(answer.answered_at),
            }
            for answer in sorted(response.answers, key=lambda a: (a.answered_at, a.id))
        ],
    }


ERASED_TEXT = "(erased)"


def _erased_value(value: Any) -> Any:
    """A stored answer without what the shopper typed: choices stay, so the counts do."""
    if not isinstance(value, dict):
        return value
    if "email" in value:
        return None  # the address was the whole answer
    if value.get("text"):
        return {**value, "text": ERASED_TEXT}
    if value.get("other"):
        return {**value, "other": ERASED_TEXT}
    return value


def _erase_survey_responses(customer: Customer) -> None:
    for response in survey_responses_of(customer):
        response.claimed_email = None
        response.claimed_customer_ref = None
        response.page_url = None
        response.visitor_id = None
        for answer in response.answers:
            answer.value = _erased_value(answer.value)


def erase_customer(customer: Customer) -> None:
    """Remove the customer's personal data for good; orders and amounts stay, anonymised.

    The email's hash is recorded first, pointing at this row, so that the order importer
    attaches later orders with the same email here instead of recreating the person.
    Commits, so the erasure is never half done.
    """
    email = customer.email_norm or customer.email
    if email and email.strip():
        digest = email_hash(email)
        kept = db.session.get(ErasedEmail, digest)
        if kept is None:
            db.session.add(ErasedEmail(email_hash=digest, customer_id=customer.id))
        elif kept.customer_id is None:
            kept.customer_id = customer.id
    _erase_survey_responses(customer)  # first: it finds unlinked responses by the email
    for field in PERSONAL_FIELDS:
        setattr(customer, field, None)
    # A consent record of nobody in particular means nothing; no mail can reach the row anyway.
    customer.accepts_marketing = False
    customer.consent_source = None
    customer.consent_at = None
    customer.erased_at = customer.erased_at or datetime.now(UTC)
    db.session.commit()
