"""Segments: the owner's rule trees, and what each refresh run found for them.

A segment's members are computed by a refresh run (webapp.segmentation.segments) and kept
under the run's id like the profiles, so the swap that makes a run current makes its
memberships current in the same UPDATE. Like the other computed tables, memberships and
per-run figures declare no foreign keys; deleting a segment deletes its rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db
from webapp.models._types import UTCDateTime, utcnow


class Segment(db.Model):
    """A named tree of ALL/ANY groups of conditions (webapp.segmentation.rules)."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    rules: Mapped[dict] = mapped_column(JSON)
    template: Mapped[str | None] = mapped_column(String(40))  # the template it started from
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SegmentMember(db.Model):
    """A customer in a segment as of a run."""

    __tablename__ = "segment_members"
    # Covering, so that a customer's segments and the overlap of two segments (a self-join
    # on the customer) read this index alone; SQLite would otherwise pair rows through the
    # primary key, segment by segment, quadratically.
    __table_args__ = (
        Index("ix_segment_members_customer", "run_id", "customer_id", "segment_id"),
    )

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    segment_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class SegmentRunStat(db.Model):
    """A segment's figures at one run: kept for every run, for the size chart."""

    __tablename__ = "segment_run_stats"

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    segment_id: Mapped[int] = mapped_column(Integer, primary_key=True, index=True)
    members: Mapped[int] = mapped_column(Integer, default=0)
    sendable: Mapped[int] = mapped_column(Integer, default=0)  # consented, not suppressed
    with_orders: Mapped[int] = mapped_column(Integer, default=0)
    repeat_customers: Mapped[int] = mapped_column(Integer, default=0)  # two orders or more
    orders: Mapped[int] = mapped_column(Integer, default=0)
    revenue_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    joined: Mapped[int | None] = mapped_column(Integer)  # vs the previous run; None: first
    left: Mapped[int | None] = mapped_column(Integer)
    # {other segment id (as text): members in both}, for the over-segmentation warning
    overlaps: Mapped[dict] = mapped_column(JSON, default=dict)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
