"""What a refresh run computes per customer, and the runs themselves.

Every computed row carries the id of the run that wrote it. A run writes its rows while
readers keep using the current run (the latest run whose status is ``done``); marking the new
run ``done`` is the swap, one short UPDATE. The rows of the run before the current one are
kept too (movement between runs compares them); older rows are deleted after each swap.
Readers therefore always filter on ``run_id`` (webapp.segmentation.refresh.current_run_id).

The computed tables declare no foreign keys: only the refresh writes them, from customers
that exist, and checking millions of rows against customers and runs on every copy would
cost more than the computation; the refresh deletes a run's rows itself.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db
from webapp.models._types import UTCDateTime, utcnow


class RefreshRun(db.Model):
    """One refresh: when, as of which day, how it went, and what it counted."""

    __tablename__ = "refresh_runs"
    __table_args__ = (Index("ix_refresh_runs_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    trigger: Mapped[str] = mapped_column(String(20))  # cli|browser|schedule
    as_of: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10), default="running")  # running|done|failed
    step: Mapped[str] = mapped_column(String(80), default="")  # what a running run is doing
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    # {"customers", "with_orders", "rfm_segments", "lifecycle", "behaviours", "rfm_grid", ...}
    counts: Mapped[dict | None] = mapped_column(JSON)
    # [{"from": segment or None, "to": segment or None, "customers": n}, ...] vs the run
    # that was current when this one was swapped in.
    movement: Mapped[list | None] = mapped_column(JSON)
    previous_run_id: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")


class CustomerProfile(db.Model):
    """One customer as of a run: RFM, lifecycle and behaviours. R/F/M are NULL for
    customers without counted orders (prospects)."""

    __tablename__ = "customer_profiles"
    # Few indexes: every run writes every row, and counting a run's profiles by any field
    # scans at most a million narrow rows.
    __table_args__ = (Index("ix_customer_profiles_segment", "run_id", "rfm_segment"),)

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    frequency: Mapped[int] = mapped_column(Integer, default=0)
    monetary_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    aov_cents: Mapped[int | None] = mapped_column(BigInteger)
    first_order_on: Mapped[date | None] = mapped_column(Date)
    last_order_on: Mapped[date | None] = mapped_column(Date)
    recency_days: Mapped[int | None] = mapped_column(Integer)
    r: Mapped[int | None] = mapped_column(Integer)
    f: Mapped[int | None] = mapped_column(Integer)
    m: Mapped[int | None] = mapped_column(Integer)
    rfm_segment: Mapped[str | None] = mapped_column(String(60))  # display name at the run
    lifecycle: Mapped[str] = mapped_column(String(10))  # prospect|new|active|lapsed|churned
    is_frequent: Mapped[bool] = mapped_column(Boolean, default=False)
    is_seasonal: Mapped[bool] = mapped_column(Boolean, default=False)
    seasonal_quarter: Mapped[int | None] = mapped_column(Integer)  # 1-4 when seasonal
    is_vip: Mapped[bool] = mapped_column(Boolean, default=False)
    is_cart_abandoner: Mapped[bool] = mapped_column(Boolean, default=False)
    objection: Mapped[str | None] = mapped_column(String(64))  # the abandoner's, if given
    abandoned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_class_taker: Mapped[bool] = mapped_column(Boolean, default=False)
    is_engaged: Mapped[bool] = mapped_column(Boolean, default=False)  # opened/clicked lately


class CustomerCategoryStat(db.Model):
    """Per customer and product category (counted orders up to the as-of day): what segment
    conditions on order facts read, so that they never scan order lines."""

    __tablename__ = "customer_category_stats"
    __table_args__ = (
        Index("ix_customer_category_stats_last", "run_id", "category", "last_purchase_on"),
    )

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category: Mapped[str] = mapped_column(String(80), primary_key=True)  # "" = uncategorised
    orders: Mapped[int] = mapped_column(Integer)  # distinct orders with a line in it
    spend_cents: Mapped[int] = mapped_column(BigInteger)  # sum of quantity x unit price
    spend_365_cents: Mapped[int] = mapped_column(BigInteger)  # the same, last 365 days
    last_purchase_on: Mapped[date] = mapped_column(Date)  # in the shop's time zone


class CustomerTrait(db.Model):
    """A customer's preference in one dimension and the evidence behind it.

    No row means `unknown`. ``value`` is the best-scoring value, or `mixed` when no value
    reaches the threshold (or two tie for best). Declared evidence: the values named by the
    latest survey response that declared this dimension. Observed evidence: the value with
    the largest share of spend, over the last 365 days or all time when that year is empty.
    """

    __tablename__ = "customer_traits"
    __table_args__ = (Index("ix_customer_traits_value", "run_id", "dimension", "value"),)

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dimension: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)  # the best value's score, 0-1
    declared_values: Mapped[str | None] = mapped_column(String(400))  # comma-separated
    declared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    declared_response_id: Mapped[int | None] = mapped_column(Integer)
    observed_value: Mapped[str | None] = mapped_column(String(64))
    observed_share: Mapped[float | None] = mapped_column(Float)
    observed_window: Mapped[str | None] = mapped_column(String(10))  # 365d|all


class RfmSegmentMap(db.Model):
    """The owner's names for ranges of R and F scores; the first matching row (by position)
    names a customer's RFM segment."""

    __tablename__ = "rfm_segment_map"

    id: Mapped[int] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(60))
    r_min: Mapped[int] = mapped_column(Integer)
    r_max: Mapped[int] = mapped_column(Integer)
    f_min: Mapped[int] = mapped_column(Integer)
    f_max: Mapped[int] = mapped_column(Integer)
