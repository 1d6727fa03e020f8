"""Running a job: under its lock and its key, recorded in job_runs, whoever asked for it (the
scheduler's timer, its catch-up at start, "run now" in the browser, `patchwork jobs run`)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import update

from webapp.extensions import db
from webapp.models import JobRun, Task
from webapp.models._types import utcnow
from webapp.scheduler import ledger
from webapp.scheduler.registry import Body, Job, JobBusy, JobContext, get_job
from webapp.tasks import Progress as TaskProgress
from webapp.tasks import runner_name

log = logging.getLogger("webapp.scheduler")


class KeyClash(ValueError):
    """A key names a run of another job."""


@dataclass
class Outcome:
    """What became of a request to run a job under a key."""

    status: str  # done|failed|busy|skipped
    job: str
    key: str
    run: JobRun | None = None
    result: dict | None = None
    error: str | None = None  # why it failed
    reason: str | None = None  # why it did not run (skipped, busy)
    exception: BaseException | None = None

    def as_dict(self, tz: ZoneInfo | None = None) -> dict:
        run = self.run
        return {
            "status": self.status,
            "job": self.job,
            "key": self.key,
            "started_at": iso(run.started_at, tz) if run else None,
            "finished_at": iso(run.finished_at, tz) if run else None,
            "result": self.result,
            "error": self.error,
            "reason": self.reason,
        }


def iso(moment: datetime | None, tz=None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(tz).isoformat() if tz else moment.isoformat()


@contextmanager
def _maybe_locked(name: str | None) -> Iterator[bool]:
    if name is None:
        yield True
        return
    with ledger.job_lock(db.engine, name) as got:
        yield got


def run_keyed(
    job: Job,
    key: str,
    trigger: str,
    *,
    body: Body | None = None,
    locked: bool = True,
    now: datetime | None = None,
    scheduled_for: datetime | None = None,
    retry_failed_before: datetime | None = None,
    max_attempts: int | None = None,
    task: tuple[int, str] | None = None,
    on_progress=None,
    stop: threading.Event | None = None,
) -> Outcome:
    """Run ``job`` (or ``body`` in its place) once under ``key``.

    Skipped when the key is done; busy when another run of the job holds its lock (or the
    key's run is held by a live runner). ``locked=False`` when the caller holds the job's
    lock already (the dispatcher's items). A failure is recorded and returned, not raised.
    """
    config = current_app.config
    owner = runner_name()
    existing = ledger.get_run(key)
    if existing is not None and existing.job != job.name:
        raise KeyClash(f"The key {key!r} belongs to a run of {existing.job!r}, not {job.name!r}.")
    if existing is not None and existing.status == "done":
        log.info("job %s: %s is done already; skipped", job.name, key)
        return Outcome("skipped", job.name, key, existing, existing.result, reason="already done")
    with _maybe_locked(job.lock if locked else None) as got:
        if not got:
            reason = f"Another run of {job.title.lower()} is under way."
            if existing is not None and existing.status == "queued":
                db.session.execute(
                    update(JobRun)
                    .where(JobRun.id == existing.id, JobRun.status == "queued")
                    .values(status="busy", error=reason, finished_at=utcnow())
                )
                db.session.commit()
            log.info("job %s: %s not started: %s", job.name, key, reason)
            return Outcome("busy", job.name, key, ledger.get_run(key), reason=reason)
        now = now or utcnow()
        run = ledger.claim(
            job.name,
            key,
            trigger,
            owner,
            now,
            config["SCHEDULER_LEASE_SECONDS"],
            max_attempts=max_attempts,
            retry_failed_before=retry_failed_before,
            scheduled_for=scheduled_for,
        )
        if run is None:
            current = ledger.get_run(key)
            if current is not None and current.status == "done":
                return Outcome(
                    "skipped", job.name, key, current, current.result, reason="already done"
                )
            reason = f"The run {key} is {current.status if current else 'gone'}; not taken over."
            log.info("job %s: %s", job.name, reason)
            return Outcome("busy", job.name, key, current, reason=reason)
        return _run_claimed(job, run, owner, body or job.run, task, on_progress, stop)


def _run_claimed(job: Job, run: JobRun, owner: str, body: Body, task, on_progress, stop):
    run_id, key = run.id, run.key
    log.info("job %s: %s started (%s, attempt %d)", job.name, key, run.trigger, run.attempts)
    engine = db.engine

    def progress(done: int, total: int | None = None, message: str | None = None) -> None:
        if on_progress is not None:
            on_progress(done, total, message)
        text = f"{message or 'working'} ({done}/{total})" if total else (message or "")
        ledger.set_message(run_id, owner, text)

    context = JobContext(job.name, key, run.trigger, utcnow(), progress, stop or threading.Event())
    started = time.perf_counter()
    with ledger.LeaseKeeper(
        engine, run_id, owner, current_app.config["SCHEDULER_LEASE_SECONDS"], task
    ):
        try:
            result = body(context)
        except job.busy_errors as exc:
            db.session.rollback()
            ledger.mark_busy(run_id, owner, str(exc))
            log.info("job %s: %s could not start: %s", job.name, key, exc)
            return Outcome("busy", job.name, key, _reload(run_id), reason=str(exc), exception=exc)
        except Exception as exc:
            db.session.rollback()
            error = f"{type(exc).__name__}: {exc}"
            log.exception("job %s: %s failed", job.name, key)
            ledger.fail(run_id, owner, error)
            return Outcome("failed", job.name, key, _reload(run_id), error=error, exception=exc)
        ledger.finish(run_id, owner, result)
    log.info("job %s: %s done in %.1f s: %s", job.name, key, time.perf_counter() - started, result)
    return Outcome("done", job.name, key, _reload(run_id), result)


def _reload(run_id: int) -> JobRun | None:
    return db.session.get(JobRun, run_id, populate_existing=True)


def run_unrecorded(job: Job, stop: threading.Event | None = None) -> dict | None:
    """One tick of an interval job: under its lock, but not in job_runs (what it starts is).
    None when another process holds the lock."""
    with _maybe_locked(job.lock) as got:
        if not got:
            return None
        return job.run(JobContext(job.name, "", "tick", utcnow(), stop=stop or threading.Event()))


def manual_key() -> str:
    return f"manual:{uuid.uuid4()}"


def run_now(job: Job, trigger: str = "manual") -> JobRun:
    """Queue a run of ``job`` under a new ``manual:<uuid>`` key for the task runner (the
    scheduler process polls the queue): the same lock and ledger as a scheduled run."""
    key = manual_key()
    run = JobRun(job=job.name, key=key, trigger=trigger, status="queued", attempts=0)
    db.session.add(run)
    db.session.flush()
    task = Task(
        kind=job.task_kind,
        key=key,
        params={"job": job.name, "job_key": key, "trigger": trigger},
    )
    db.session.add(task)
    db.session.flush()
    run.task_id = task.id
    db.session.commit()
    return run


def run_task_as_job(task: Task, progress: TaskProgress) -> dict:
    """A queued task that carries a job key runs the job's body through run_keyed: same
    lock, same key as a scheduled run, with the task's progress. Called by
    webapp.tasks.run_task; raises when the run failed or could not start, so that the task is
    recorded as failed with the reason."""
    params = task.params or {}
    job = get_job(params["job"])
    outcome = run_keyed(
        job,
        params["job_key"],
        params.get("trigger", "manual"),
        task=(task.id, progress.owner),
        on_progress=progress,
    )
    if outcome.status == "done":
        return outcome.result or {}
    if outcome.status == "skipped":
        return {"skipped": outcome.reason, "key": outcome.key}
    if outcome.exception is not None:
        raise outcome.exception
    raise JobBusy(outcome.reason)


def retry_cutoff(now: datetime) -> datetime:
    return now - timedelta(seconds=current_app.config["SCHEDULER_RETRY_SECONDS"])
