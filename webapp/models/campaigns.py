"""Campaigns, their frozen recipient ledger, SendGrid's events, and the outbox.

The ledger (campaign_recipients) is what makes a send safe to resume: one row per
(campaign, customer), unique, frozen when the send starts. A row is marked ``sent`` only
after SendGrid accepted the request that carried it; rows of a request in flight are
``sending``, and a sender that finds such rows left by a dead process marks them
``unknown`` (SendGrid may or may not have taken them) rather than send them again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db
from webapp.models._types import UTCDateTime, utcnow

# Campaign.status: draft -> scheduled (a time is set) -> sending -> sent; sending <-> paused;
# scheduled/sending/paused -> cancelled.
#
# CampaignRecipient.status:
#   queued      to be mailed
#   sending     in the request in flight
#   sent        SendGrid (or the outbox) took it
#   failed      SendGrid refused it (a 4xx other than 429; error says why), or the
#               recipient's merge fields broke the template
#   unknown     in flight when the connection dropped or the sender died: the owner decides
#   held_out    the random holdout: never mailed by this campaign
#   suppressed  no consent, unsubscribed, bounced, spam report or no address (reason says)
#   capped      had another campaign within the frequency cap, or one under way
#   cancelled   still queued when the campaign was cancelled


class Campaign(db.Model):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id", ondelete="SET NULL"))
    from_email: Mapped[str] = mapped_column(String(320))
    from_name: Mapped[str] = mapped_column(String(120), default="")
    subject: Mapped[str] = mapped_column(String(255), default="")
    preheader: Mapped[str] = mapped_column(String(255), default="")
    body_format: Mapped[str] = mapped_column(String(10), default="markdown")  # markdown|html
    body: Mapped[str] = mapped_column(Text, default="")
    template_id: Mapped[str] = mapped_column(String(64), default="")  # SendGrid dynamic template
    discount_code: Mapped[str] = mapped_column(String(60), default="")
    holdout_percent: Mapped[int] = mapped_column(Integer, default=10)
    frequency_cap_days: Mapped[int] = mapped_column(Integer, default=3)
    attribution_days: Mapped[int] = mapped_column(Integer, default=7)
    status: Mapped[str] = mapped_column(String(10), default="draft")
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when to start
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the ledger was frozen
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The process sending it holds the lease (renewed per batch), so two never send at once.
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_reason: Mapped[str] = mapped_column(Text, default="")
    # {"run_id", "holdout_seed", "held_out", "mailer"}: what the start decided, kept.
    send_info: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def uses_template(self) -> bool:
        return bool(self.template_id)

    @property
    def editable(self) -> bool:
        return self.status in ("draft", "scheduled")


class CampaignRecipient(db.Model):
    """One (campaign, customer) of a started send: the ledger."""

    __tablename__ = "campaign_recipients"
    # A send moves each row twice (queued -> sending -> sent), so no index holds a column
    # the send changes (status, sent_at): the rows change in place, with no index entry to
    # move, and on PostgreSQL (where migration 0007 leaves half of each page free) as
    # heap-only updates. The send reads a campaign's rows in id order; the frequency cap
    # reads a customer's rows.
    __table_args__ = (
        UniqueConstraint("campaign_id", "customer_id"),
        Index("ix_campaign_recipients_campaign", "campaign_id", "id"),
        Index("ix_campaign_recipients_customer", "customer_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # No foreign keys: the ledger is a record, kept through erasure (customers) and never
    # deleted with its campaign (campaigns are not deleted); and a key checked per row cost
    # a third of freezing a ledger on PostgreSQL.
    campaign_id: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[int] = mapped_column(Integer)
    email: Mapped[str | None] = mapped_column(String(320))  # frozen at the start
    status: Mapped[str] = mapped_column(String(10), default="queued")
    reason: Mapped[str | None] = mapped_column(String(40))  # why suppressed
    batch: Mapped[int | None] = mapped_column(Integer)  # the request batch that carried it
    message_id: Mapped[str | None] = mapped_column(String(120))  # SendGrid's X-Message-Id
    error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EmailEvent(db.Model):
    """One event of SendGrid's Event Webhook, stored once (sg_event_id is unique)."""

    __tablename__ = "email_events"
    __table_args__ = (
        Index("ix_email_events_campaign", "campaign_id", "event"),
        Index("ix_email_events_customer", "customer_id", "event", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sg_event_id: Mapped[str] = mapped_column(String(120), unique=True)
    event: Mapped[str] = mapped_column(String(30))
    campaign_id: Mapped[int | None] = mapped_column(Integer)
    recipient_id: Mapped[int | None] = mapped_column(Integer)
    customer_id: Mapped[int | None] = mapped_column(Integer)
    machine_open: Mapped[bool] = mapped_column(Boolean, default=False)
    url: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxMessage(db.Model):
    """A message the outbox mailer kept instead of sending (no SENDGRID_API_KEY)."""

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_campaign", "campaign_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(Integer)
    recipient_id: Mapped[int | None] = mapped_column(Integer)
    to_email: Mapped[str] = mapped_column(String(320))
    from_email: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(255), default="")
    html: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    # The request SendGrid would have received (headers, custom_args, template data).
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    test: Mapped[bool] = mapped_column(Boolean, default=False)  # a test send to the owner
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
