"""The database-backed queue of long work started from the browser, and its runner.

A view enqueues a Task and answers at once; a runner (a thread in the demo and the
development server, the scheduler process in production, or `patchwork worker`) claims it
with a lease, runs its handler and records progress that the page polls. A runner that dies
leaves a lease that expires; the next runner takes the task over.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import Flask
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from webapp.extensions import db
from webapp.models import Task

log = logging.getLogger(__name__)

LEASE_SECONDS = 60
Handler = Callable[[Task, "Progress"], dict]
HANDLERS: dict[str, Handler] = {}


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that runs tasks of ``kind``."""

    def register(func: Handler) -> Handler:
        HANDLERS[kind] = func
        return func

    return register


def enqueue(kind: str, params: dict, key: str | None = None) -> Task:
    """Queue work once: a second call with the same key returns the first task."""
    key = key or f"{kind}:{uuid.uuid4()}"
    task = Task(kind=kind, key=key, params=params)
    db.session.add(task)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return db.session.scalars(select(Task).where(Task.key == key)).one()
    return task


class Progress:
    """Handed to a handler: records how far it got and keeps its lease alive."""

    def __init__(self, task: Task, owner: str, stop: threading.Event | None = None):
        self.task_id = task.id
        self.owner = owner
        # Set when the runner is asked to stop: long work may stop early and be resumed.
        self.stop = stop or threading.Event()

    def __call__(self, done: int, total: int | None = None, message: str | None = None) -> None:
        values: dict = {
            "progress_done": done,
            "lease_expires_at": datetime.now(UTC) + timedelta(seconds=LEASE_SECONDS),
        }
        if total is not None:
            values["progress_total"] = total
        if message is not None:
            values["message"] = message
        db.session.execute(
            update(Task)
            .where(Task.id == self.task_id, Task.lease_owner == self.owner)
            .values(**values)
        )
        db.session.commit()


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def claim_next(owner: str) -> Task | None:
    """Take the oldest queued task, or one whose runner's lease ran out. Atomic on both DBs."""
    now = datetime.now(UTC)
    claimable = or_(
        Task.status == "queued",
        and_(Task.status == "running", Task.lease_expires_at < now),
    )
    candidates = db.session.scalars(
        select(Task.id).where(claimable).order_by(Task.id).limit(5)
    ).all()
    for task_id in candidates:
        claimed = db.session.execute(
            update(Task)
            .where(Task.id == task_id, claimable)
            .values(
                status="running",
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=LEASE_SECONDS),
                attempts=Task.attempts + 1,
                started_at=now,
            )
        ).rowcount
        db.session.commit()
        if claimed:
            return db.session.get(Task, task_id, populate_existing=True)
    return None


def run_task(task: Task, owner: str, stop: threading.Event | None = None) -> None:
    func = HANDLERS.get(task.kind)
    task_id = task.id
    try:
        progress = Progress(task, owner, stop)
        if (task.params or {}).get("job_key"):
            # A scheduler job's "run now": the job's body, under its lock and its run's key.
            from webapp.scheduler.runner import run_task_as_job

            result = run_task_as_job(task, progress)
        elif func is None:
            raise LookupError(f"no handler for task kind {task.kind!r}")
        else:
            result = func(task, progress)
        status, error = "done", None
    except Exception as exc:  # a failed task is recorded, never kills the runner
        db.session.rollback()
        log.error("task %s (%s) failed:\n%s", task_id, task.kind, traceback.format_exc())
        result, status, error = None, "failed", f"{type(exc).__name__}: {exc}"
    db.session.execute(
        update(Task)
        .where(Task.id == task_id)
        .values(
            status=status,
            result=result,
            error=error,
            finished_at=datetime.now(UTC),
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    db.session.commit()


def run_pending(owner: str | None = None, stop: threading.Event | None = None) -> int:
    """Run queued tasks until none is left (or ``stop`` is set); returns how many ran."""
    load_handlers()
    owner = owner or runner_name()
    ran = 0
    while not (stop and stop.is_set()) and (task := claim_next(owner)) is not None:
        run_task(task, owner, stop)
        ran += 1
    return ran


def run_forever(app: Flask, stop: threading.Event) -> None:
    owner = runner_name()
    while not stop.is_set():
        try:
            with app.app_context():
                run_pending(owner)
                db.session.remove()
        except Exception:  # the database may be briefly away; keep polling
            log.exception("task runner poll failed")
        stop.wait(app.config["TASK_POLL_SECONDS"])


def start_runner_thread(app: Flask) -> threading.Event:
    """The in-process runner of the demo and the development server."""
    stop = threading.Event()
    thread = threading.Thread(target=run_forever, args=(app, stop), name="task-runner", daemon=True)
    thread.start()
    app.extensions["patchwork_task_runner"] = stop
    return stop


def load_handlers() -> None:
    """Import every module that registers @handler functions, so any runner can run any
    task whatever the process imported before."""
    import webapp.campaigns.sending  # noqa: F401
    import webapp.catalog_views  # noqa: F401
    import webapp.imports.products  # noqa: F401
    import webapp.imports.service  # noqa: F401
    import webapp.imports.uploads  # noqa: F401
    import webapp.scheduler.jobs  # noqa: F401
    import webapp.segmentation.refresh  # noqa: F401
