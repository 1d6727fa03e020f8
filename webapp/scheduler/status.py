"""What the scheduler is doing, for the Schedule page, `patchwork jobs list` and /healthz:
each job's schedule and next run, and the heartbeat of the scheduler process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import JobSetting, SchedulerHeartbeat
from webapp.models._types import utcnow
from webapp.scheduler import schedules
from webapp.scheduler.registry import Job, load_jobs


def latest_heartbeat() -> SchedulerHeartbeat | None:
    return db.session.scalar(
        select(SchedulerHeartbeat).order_by(SchedulerHeartbeat.beat_at.desc()).limit(1)
    )


def is_alive(
    beat: SchedulerHeartbeat | None, heartbeat_seconds: float, now: datetime | None = None
) -> bool:
    """A scheduler that beat within three heartbeats (and did not say it stopped)."""
    if beat is None or beat.stopped_at is not None:
        return False
    now = now or utcnow()
    return now - beat.beat_at <= timedelta(seconds=max(3 * heartbeat_seconds, 5))


def describe(job: Job, setting: JobSetting) -> str:
    """The schedule in words: "quarterly, 03:00 on 1 Jan, Apr, Jul and Oct"."""
    if job.periodic:
        return schedules.schedule_of(setting).describe()
    if job.interval_setting is None:
        return "only when run now"
    seconds = float(current_app.config[job.interval_setting])
    return f"every {seconds:g} s while the scheduler runs"


@dataclass
class JobStatus:
    job: Job
    setting: JobSetting
    schedule: str
    next_run: datetime | None  # UTC; None when paused, or unknown without a live scheduler


def overview(tz: ZoneInfo, now: datetime) -> list[JobStatus]:
    """Every job with its schedule and next run. A periodic job's next run follows from its
    schedule; an interval job's is what the live scheduler reported in its heartbeat."""
    settings = schedules.ensure_settings(now)
    beat = latest_heartbeat()
    alive = is_alive(beat, current_app.config["SCHEDULER_HEARTBEAT_SECONDS"], now)
    rows = []
    for job in load_jobs().values():
        setting = settings[job.name]
        if job.periodic:
            next_run = schedules.next_run(job, setting, tz, now)
        elif alive and beat is not None and not setting.paused:
            reported = (beat.next_runs or {}).get(job.name)
            next_run = datetime.fromisoformat(reported) if reported else None
        else:
            next_run = None
        rows.append(JobStatus(job, setting, describe(job, setting), next_run))
    return rows


def next_run_of(name: str, now: datetime | None = None) -> datetime | None:
    """When job ``name`` (e.g. "refresh") runs next by the owner's schedule, in UTC; None
    when it is paused or not periodic. For pages that mention the next refresh."""
    job = load_jobs()[name]
    setting = schedules.ensure_settings(now)[name]
    return schedules.next_run(job, setting, schedules.shop_timezone(), now or utcnow())
