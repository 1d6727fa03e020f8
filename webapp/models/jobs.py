"""The scheduler's tables: each timed job's settings, the ledger of keyed runs, and the
heartbeats of scheduler processes (webapp.scheduler)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db
from webapp.models._types import UTCDateTime, utcnow


class JobSetting(db.Model):
    """How one job runs, as the owner set it on the Schedule page.

    Periodic jobs fire at ``at_time`` (shop time) on the first day of each month or quarter,
    on ``weekday`` (Monday 0) each week, or every day. ``effective_since`` is when this
    schedule took effect: a scheduler that starts after downtime runs a missed period only if
    the period's time came after it.
    """

    __tablename__ = "job_settings"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    frequency: Mapped[str] = mapped_column(String(12))  # quarterly|monthly|weekly|daily|interval
    at_time: Mapped[str] = mapped_column(String(5), default="03:00")
    weekday: Mapped[int] = mapped_column(Integer, default=0)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    # Housekeeping only: run details older than this many days are pruned.
    retention_days: Mapped[int | None] = mapped_column(Integer)
    effective_since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobRun(db.Model):
    """One run of a job under its idempotency key (``refresh:2026-Q4``, ``manual:<uuid>``,
    ``campaign:42``). The key is unique: a key that is done never runs again, whoever asks.

    A runner holds the row's lease while it works and renews it; one that dies leaves a
    lease that expires, and the next runner takes the same row (and key) over.
    """

    __tablename__ = "job_runs"
    __table_args__ = (
        Index("ix_job_runs_job_id", "job", "id"),
        Index("ix_job_runs_status_ack", "status", "acknowledged_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(200), unique=True)
    trigger: Mapped[str] = mapped_column(String(20))  # schedule|catch-up|manual|cli
    # queued|running|done|failed|busy (could not start: another run of the job held its lock)
    status: Mapped[str] = mapped_column(String(10), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a period's fire time
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text, default="")  # progress of a running run
    result: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[int | None] = mapped_column(Integer)  # the queued task of a "run now"
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a failure seen
    pruned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # details removed


class SchedulerHeartbeat(db.Model):
    """A scheduler process, as it last reported itself: /healthz and the Schedule page say
    when a scheduler was last alive and what it is running."""

    __tablename__ = "scheduler_heartbeats"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)  # host:pid:random
    host: Mapped[str] = mapped_column(String(80))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    running: Mapped[list] = mapped_column(JSON, default=list)  # keys of the runs under way
    # {job name: next fire time, ISO 8601} as the process's APScheduler has them
    next_runs: Mapped[dict] = mapped_column(JSON, default=dict)
