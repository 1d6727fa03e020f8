"""The jobs Patchwork's scheduler runs: the segment refresh, the dispatcher, the queue of work
started in the browser, and housekeeping."""

from __future__ import annotations

import logging
from datetime import time, timedelta

from flask import current_app
from sqlalchemy import delete, select, update

from webapp import tasks
from webapp.extensions import db
from webapp.imports.uploads import delete_upload
from webapp.models import JobRun, JobSetting, SchedulerHeartbeat, Task
from webapp.scheduler.periods import Schedule
from webapp.scheduler.registry import (
    Job,
    JobContext,
    load_dispatch_sources,
    register,
)
from webapp.scheduler.schedules import DEFAULT_RETENTION_DAYS
from webapp.segmentation.refresh import RefreshBusy, run_refresh

log = logging.getLogger("webapp.scheduler")

# RefreshRun.trigger of each way a refresh job starts ("schedule" covers catching up).
REFRESH_TRIGGERS = {
    "schedule": "schedule",
    "catch-up": "schedule",
    "cli": "cli",
    "browser": "browser",
}


def refresh(context: JobContext) -> dict:
    run = run_refresh(
        trigger=REFRESH_TRIGGERS.get(context.trigger, "manual"), progress=context.progress
    )
    counts = run.counts or {}
    return {
        "run_id": run.id,  # the RefreshRun, named as the refresh task's result names it
        "as_of": run.as_of.isoformat(),
        "customers": counts.get("customers", 0),
    }


def dispatch(context: JobContext) -> dict:
    """Start every piece of work whose time has come (campaigns, once they exist), each
    once under its own key. Runs under the dispatcher's lock, so items take none."""
    from webapp.scheduler.runner import retry_cutoff, run_keyed

    config = current_app.config
    outcomes: dict[str, str] = {}
    for name, source in load_dispatch_sources().items():
        for item in source(context.now):
            if context.stop.is_set():
                break
            outcome = run_keyed(
                DISPATCHER,
                item.key,
                "schedule" if context.trigger == "tick" else context.trigger,
                body=item.run,
                locked=False,
                retry_failed_before=retry_cutoff(context.now),
                max_attempts=config["SCHEDULER_MAX_ATTEMPTS"],
            )
            outcomes[item.key] = outcome.status
            log.debug("dispatch source %s: %s %s", name, item.key, outcome.status)
    return {
        "dispatched": sum(status == "done" for status in outcomes.values()),
        "failed": sorted(key for key, status in outcomes.items() if status == "failed"),
    }


def poll_queue(context: JobContext) -> dict:
    """Run the work queued from the browser until none is left (or the scheduler stops)."""
    return {"tasks": tasks.run_pending(stop=context.stop)}


def housekeeping(context: JobContext) -> dict:
    """Prune run details older than the retention the owner set: job runs keep their key
    and outcome (a key once done never runs again) but lose their result and error; finished
    queued tasks go, with files they left in the upload folder; so do the heartbeats of
    schedulers long gone."""
    setting = db.session.get(JobSetting, "housekeeping")
    days = (setting.retention_days if setting else None) or DEFAULT_RETENTION_DAYS
    cutoff = context.now - timedelta(days=days)
    runs = db.session.execute(
        update(JobRun)
        .where(
            JobRun.status.in_(("done", "failed", "busy")),
            JobRun.finished_at < cutoff,
            JobRun.pruned_at.is_(None),
        )
        .values(result=None, error=None, message="", pruned_at=context.now)
    ).rowcount
    # A failure left unacknowledged that long no longer needs the banner.
    db.session.execute(
        update(JobRun)
        .where(JobRun.status == "failed", JobRun.finished_at < cutoff)
        .where(JobRun.acknowledged_at.is_(None))
        .values(acknowledged_at=context.now)
    )
    db.session.commit()

    upload_dir = current_app.config["UPLOAD_DIR"]
    in_use = {
        (params or {}).get("path")
        for params in db.session.scalars(
            select(Task.params).where(Task.status.in_(("queued", "running")))
        )
    }
    old = db.session.execute(
        select(Task.id, Task.params).where(
            Task.status.in_(("done", "failed")), Task.finished_at < cutoff
        )
    ).all()
    for _, params in old:
        path = (params or {}).get("path")
        if path and path not in in_use:
            delete_upload(path, upload_dir)
    for start in range(0, len(old), 500):
        ids = [task_id for task_id, _ in old[start : start + 500]]
        db.session.execute(delete(Task).where(Task.id.in_(ids)))
        db.session.commit()

    beats = db.session.execute(
        delete(SchedulerHeartbeat).where(
            SchedulerHeartbeat.beat_at < min(cutoff, context.now - timedelta(days=1))
        )
    ).rowcount
    db.session.commit()
    return {
        "retention_days": days,
        "job_runs_pruned": runs,
        "tasks_deleted": len(old),
        "heartbeats_deleted": beats,
    }


REFRESH = register(
    Job(
        name="refresh",
        title="Segment refresh",
        about="Recomputes every customer's profile and every segment's members.",
        run=refresh,
        default=Schedule("quarterly", time(3, 0)),
        frequencies=("monthly", "quarterly", "weekly"),
        lock="refresh",
        busy_errors=(RefreshBusy,),
        task_kind="refresh",  # its queued task is the refresh's own, with its progress page
    )
)
DISPATCHER = register(
    Job(
        name="dispatch",
        title="Campaign dispatcher",
        about="Starts campaigns whose scheduled time has come.",
        run=dispatch,
        interval_setting="SCHEDULER_DISPATCH_SECONDS",
        lock="dispatch",
    )
)
QUEUE = register(
    Job(
        name="tasks",
        title="Background work",
        about="Runs work started in the browser: imports, refreshes, sends.",
        run=poll_queue,
        interval_setting="TASK_POLL_SECONDS",
        owner_controls=False,
    )
)
HOUSEKEEPING = register(
    Job(
        name="housekeeping",
        title="Housekeeping",
        about="Prunes old run details past the retention you set.",
        run=housekeeping,
        default=Schedule("daily", time(4, 30)),
        frequencies=("daily",),
        lock="housekeeping",
        retention=True,
    )
)
