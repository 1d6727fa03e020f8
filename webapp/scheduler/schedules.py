"""Each job's settings (job_settings) as schedules: the next run, the period that is due,
and the owner's changes from the Schedule page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from webapp.extensions import db
from webapp.models import JobRun, JobSetting, ShopSettings
from webapp.models._types import utcnow
from webapp.scheduler.periods import (
    FREQUENCIES,
    Schedule,
    next_fire,
    parse_time,
    period_key,
    previous_fire,
)
from webapp.scheduler.registry import Job, load_jobs

DEFAULT_RETENTION_DAYS = 90
MAX_RETENTION_DAYS = 3650


def shop_timezone() -> ZoneInfo:
    """The shop's zone, read afresh: the scheduler is a long-running process."""
    shop = db.session.get(ShopSettings, 1, populate_existing=True)
    return ZoneInfo(shop.timezone if shop else "UTC")


def ensure_settings(now: datetime | None = None) -> dict[str, JobSetting]:
    """Every job's settings row, made with the job's defaults where missing. A new schedule
    takes effect now: periods before it are not caught up."""
    now = now or utcnow()
    jobs = load_jobs()
    rows = {s.name: s for s in db.session.scalars(select(JobSetting))}
    for job in jobs.values():
        if job.name in rows:
            continue
        default = job.default
        row = JobSetting(
            name=job.name,
            frequency=default.frequency if default else "interval",
            at_time=default.at.strftime("%H:%M") if default else "00:00",
            weekday=default.weekday if default else 0,
            paused=False,
            retention_days=DEFAULT_RETENTION_DAYS if job.retention else None,
            effective_since=now,
            updated_at=now,
        )
        db.session.add(row)
        try:
            db.session.commit()
        except IntegrityError:  # another process made it at the same moment
            db.session.rollback()
            row = db.session.get(JobSetting, job.name, populate_existing=True)
        rows[job.name] = row
    return rows


def schedule_of(setting: JobSetting) -> Schedule:
    return Schedule(setting.frequency, parse_time(setting.at_time), setting.weekday)


@dataclass(frozen=True)
class Due:
    key: str
    fire: datetime  # UTC


def due(job: Job, setting: JobSetting, tz: ZoneInfo, now: datetime) -> Due | None:
    """The period whose time has come at ``now`` (the latest), unless the job is paused or
    that time came before the schedule took effect. Earlier missed periods never run: a
    scheduler back after two quarters runs the current one, once."""
    if not job.periodic or setting.paused:
        return None
    schedule = schedule_of(setting)
    fire_date, fire = previous_fire(schedule, tz, now)
    if fire <= setting.effective_since:
        return None
    return Due(period_key(job.name, schedule, fire_date), fire)


def next_run(job: Job, setting: JobSetting, tz: ZoneInfo, now: datetime) -> datetime | None:
    """When a periodic job fires next (UTC); None when paused or not periodic."""
    if not job.periodic or setting.paused:
        return None
    return next_fire(schedule_of(setting), tz, now)[1]


def needs_run(run: JobRun | None, now: datetime, retry_seconds: float, max_attempts: int) -> bool:
    """Whether a due period's run should be (re)started: not yet run, waiting for a lock, left
    by a runner that died (its lease ran out), or failed and due a retry."""
    if run is None or run.status in ("queued", "busy"):
        return True
    if run.status == "running":
        return run.lease_expires_at is not None and run.lease_expires_at < now
    if run.status == "failed":
        return (
            run.attempts < max_attempts
            and run.finished_at is not None
            and run.finished_at <= now - timedelta(seconds=retry_seconds)
        )
    return False


class ScheduleError(ValueError):
    """An owner's schedule that cannot be: said next to the field."""


def update_schedule(
    job: Job, frequency: str, at_time: str, weekday: int, now: datetime | None = None
) -> JobSetting:
    """Change a periodic job's schedule; the new one takes effect now."""
    if not job.periodic:
        raise ScheduleError(f"{job.title} runs at an interval, not on a schedule.")
    if frequency not in job.frequencies or frequency not in FREQUENCIES:
        raise ScheduleError(f"Choose one of: {', '.join(job.frequencies)}.")
    if not 0 <= weekday <= 6:
        raise ScheduleError("Choose a day of the week.")
    setting = ensure_settings(now)[job.name]
    changed = (setting.frequency, setting.at_time, setting.weekday) != (
        frequency,
        at_time,
        weekday,
    )
    if changed:
        now = now or utcnow()
        setting.frequency, setting.at_time, setting.weekday = frequency, at_time, weekday
        setting.effective_since = now
        setting.updated_at = now
        db.session.commit()
    return setting


def set_paused(job: Job, paused: bool, now: datetime | None = None) -> JobSetting:
    """Pause or resume. Periods that came while paused are not caught up on resuming."""
    now = now or utcnow()
    setting = ensure_settings(now)[job.name]
    if setting.paused != paused:
        setting.paused = paused
        setting.updated_at = now
        if not paused:
            setting.effective_since = now
        db.session.commit()
    return setting


def set_retention(job: Job, days: int, now: datetime | None = None) -> JobSetting:
    if not job.retention:
        raise ScheduleError(f"{job.title} keeps no run details to prune.")
    if not 1 <= days <= MAX_RETENTION_DAYS:
        raise ScheduleError(f"Keep run details between 1 and {MAX_RETENTION_DAYS} days.")
    setting = ensure_settings(now)[job.name]
    setting.retention_days = days
    setting.updated_at = now or utcnow()
    db.session.commit()
    return setting
