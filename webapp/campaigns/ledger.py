"""The ledger of a campaign's recipients (campaign_recipients): frozen when a send starts,
read by the campaign page and the command line, settled by the owner.

One row per (campaign, customer), unique; its status says what became of that customer
(webapp.models.campaigns lists them). The send itself moves rows along in
webapp.campaigns.sending.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import and_, case, exists, func, insert, literal, or_, select, update
from sqlalchemy.orm import aliased

from webapp.campaigns.render import check
from webapp.extensions import db
from webapp.models import Campaign, CampaignRecipient, Customer, Segment, ShopSettings
from webapp.segmentation import compiler
from webapp.segmentation.rules import RulesError, validate
from webapp.segmentation.segments import live_scope

R = CampaignRecipient


class CampaignError(RuntimeError):
    """The campaign cannot be sent as it is; the message says why, in the owner's words."""


def readiness(campaign: Campaign, shop: ShopSettings) -> list[str]:
    """What stops the campaign from being sent; empty when it can go."""
    problems = []
    if not shop.postal_address.strip():
        problems.append("Set your shop's postal address in Settings: every email carries it.")
    if campaign.segment_id is None:
        problems.append("Pick the segment to send to.")
    if not campaign.from_email:
        problems.append("Set the from address.")
    if not campaign.uses_template and not campaign.subject.strip():
        problems.append("Write a subject.")
    if not campaign.uses_template and not campaign.body.strip():
        problems.append("Write the body, or give a SendGrid dynamic template id.")
    problems += [str(error) for error in check(campaign, shop)]
    return problems


def suppression_reason():
    """Why a customer may not be mailed (a SQL CASE over customers), NULL when they may."""
    c = Customer.__table__.c
    return case(
        (or_(c.email_norm.is_(None), c.erased_at.is_not(None)), literal("no_address")),
        (c.accepts_marketing.is_not(True), literal("no_consent")),
        (c.unsubscribed_at.is_not(None), literal("unsubscribed")),
        (c.bounced_at.is_not(None), literal("bounced")),
        (c.spam_reported_at.is_not(None), literal("spam_report")),
        else_=literal(None),
    )


def freeze(campaign: Campaign, shop: ShopSettings, now: datetime) -> dict:
    """Write the ledger: every member of the segment now, suppressed, capped, held out or
    queued. One INSERT ... SELECT and a random holdout, in the caller's transaction."""
    segment = db.session.get(Segment, campaign.segment_id) if campaign.segment_id else None
    if segment is None:
        raise CampaignError("The campaign's segment no longer exists.")
    scope = live_scope(db.session)
    if scope is None:
        raise CampaignError("Segments have no members before the first refresh: refresh first.")
    try:
        tree = validate(segment.rules)
    except RulesError as exc:
        raise CampaignError(f"The segment's rules no longer hold: {exc}") from None

    members = compiler.members(tree, scope).subquery()
    c = Customer.__table__.c
    earlier = aliased(CampaignRecipient)
    capped = exists().where(
        earlier.customer_id == c.id,
        earlier.campaign_id != campaign.id,
        or_(
            and_(
                earlier.status.in_(("sent", "unknown")),
                earlier.sent_at >= now - timedelta(days=campaign.frequency_cap_days),
            ),
            earlier.status.in_(("queued", "sending")),  # another campaign under way
        ),
    )
    reason = suppression_reason()
    status = case(
        (reason.is_not(None), literal("suppressed")),
        (and_(literal(campaign.frequency_cap_days > 0), capped), literal("capped")),
        else_=literal("queued"),
    )
    rows = select(literal(campaign.id), c.id, c.email, status, reason).select_from(
        members.join(Customer.__table__, c.id == members.c.customer_id)
    )
    db.session.execute(
        insert(CampaignRecipient).from_select(
            ["campaign_id", "customer_id", "email", "status", "reason"], rows
        )
    )

    queued = (
        db.session.scalars(
            select(R.id).where(R.campaign_id == campaign.id, R.status == "queued").order_by(R.id)
        ).all()
        if campaign.holdout_percent
        else []
    )
    seed = random.SystemRandom().randrange(2**31)
    held = random.Random(seed).sample(queued, round(len(queued) * campaign.holdout_percent / 100))
    for start in range(0, len(held), 1000):
        db.session.execute(
            update(R).where(R.id.in_(held[start : start + 1000])).values(status="held_out")
        )
    return {"run_id": scope.run_id, "holdout_seed": seed, "held_out": len(held)}


def status_counts(campaign_id: int) -> dict[str, int]:
    rows = db.session.execute(
        select(R.status, func.count()).where(R.campaign_id == campaign_id).group_by(R.status)
    )
    return dict(rows.all())


def settle_unknown(campaign_id: int, resend: bool) -> int:
    """The owner's decision on recipients whose mail may or may not have gone: count them
    as sent, or queue them again (the owner accepts a possible second copy)."""
    changed = db.session.execute(
        update(R)
        .where(R.campaign_id == campaign_id, R.status == "unknown")
        .values(status="queued", batch=None, sent_at=None, error=None)
        if resend
        else update(R)
        .where(R.campaign_id == campaign_id, R.status == "unknown")
        .values(status="sent", error="Counted as sent by the owner (no answer from SendGrid).")
    ).rowcount
    if resend and changed:
        db.session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.status.in_(("sent", "paused")))
            .values(status="sending", finished_at=None, paused_reason="")
        )
    db.session.commit()
    return changed


def problems_of(campaign_id: int, limit: int = 5) -> list[tuple[str, str, int]]:
    """The commonest reasons recipients failed or are unknown: (status, error, how many)."""
    return db.session.execute(
        select(R.status, R.error, func.count())
        .where(R.campaign_id == campaign_id, R.status.in_(("failed", "unknown")))
        .group_by(R.status, R.error)
        .order_by(func.count().desc())
        .limit(limit)
    ).all()
