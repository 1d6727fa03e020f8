"""Exactly once: the ledger of keyed runs (job_runs), their leases, and each job's lock.

A run happens under two guards. The job's lock (a PostgreSQL advisory lock; on SQLite an
flock beside the database file) is held by the process while it works and released by the
database or the OS when that process dies, so two runs of one job never overlap. The run's
row, unique by its key, says what was done: a runner claims it with a lease that it renews
while it works; a key that is done is never run again; a runner that dies leaves a lease that
expires, after which the next runner takes the same row over. Claims happen only under the
lock, so a lease can only be taken from a runner that is gone.
"""

from __future__ import annotations

import fcntl
import logging
import re
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, and_, false, or_, select, text, true, update
from sqlalchemy.exc import IntegrityError

from webapp.extensions import db
from webapp.models import JobRun, Task
from webapp.models._types import utcnow
from webapp.tasks import LEASE_SECONDS as TASK_LEASE_SECONDS

log = logging.getLogger(__name__)

_PG_JOB_LOCKS = 0x5041_534A  # "PASJ": the advisory lock class of scheduler jobs
_MEMORY_LOCKS: dict[str, threading.Lock] = {}
_MEMORY_LOCKS_GUARD = threading.Lock()
LOCK_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
ERROR_LIMIT = 4000


@contextmanager
def job_lock(engine: Engine, name: str) -> Iterator[bool]:
    """Try to take job ``name``'s lock without waiting; yields whether it was taken."""
    if not LOCK_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a job name")
    if engine.dialect.name == "postgresql":
        key = {"c": _PG_JOB_LOCKS, "o": zlib.crc32(name.encode()) - 2**31}
        with engine.connect() as conn:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:c, :o)"), key).scalar()
            conn.commit()
            try:
                yield bool(got)
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:c, :o)"), key)
                    conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        with _MEMORY_LOCKS_GUARD:
            lock = _MEMORY_LOCKS.setdefault(name, threading.Lock())
        got = lock.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                lock.release()
        return
    with open(Path(f"{database}.job-{name}.lock"), "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def get_run(key: str) -> JobRun | None:
    return db.session.scalar(select(JobRun).where(JobRun.key == key))


def claim(
    job: str,
    key: str,
    trigger: str,
    owner: str,
    now: datetime,
    lease_seconds: float,
    *,
    max_attempts: int | None,
    retry_failed_before: datetime | None = None,
    scheduled_for: datetime | None = None,
) -> JobRun | None:
    """Take the run of ``key`` for ``owner``: a new row, or the existing one when it is
    queued, was busy, lost its runner (lease expired) or failed before
    ``retry_failed_before``. None when it is done or someone else holds it.

    ``max_attempts`` (None: no limit) bounds the takeovers of expired and failed runs.
    """
    lease = now + timedelta(seconds=lease_seconds)
    # A new key is inserted; one that exists (or was inserted a moment ago) is taken over.
    is_new = db.session.scalar(select(JobRun.id).where(JobRun.key == key)) is None
    if is_new and (run := _insert(job, key, trigger, owner, now, lease, scheduled_for)):
        return run
    below_limit = JobRun.attempts < max_attempts if max_attempts is not None else true()
    retry_failed = (
        and_(JobRun.status == "failed", JobRun.finished_at <= retry_failed_before, below_limit)
        if retry_failed_before is not None
        else false()
    )
    claimable = or_(
        JobRun.status.in_(("queued", "busy")),
        and_(JobRun.status == "running", JobRun.lease_expires_at < now, below_limit),
        retry_failed,
    )
    taken = db.session.execute(
        update(JobRun)
        .where(JobRun.key == key, JobRun.job == job, claimable)
        .values(
            status="running",
            lease_owner=owner,
            lease_expires_at=lease,
            attempts=JobRun.attempts + 1,
            started_at=now,
            finished_at=None,
            duration_ms=None,
        )
    ).rowcount
    db.session.commit()
    if not taken:
        return None
    return db.session.scalars(
        select(JobRun).where(JobRun.key == key), execution_options={"populate_existing": True}
    ).one()


def _insert(job, key, trigger, owner, now, lease, scheduled_for) -> JobRun | None:
    """A new run, or None when another runner inserted the key at the same moment."""
    run = JobRun(
        job=job,
        key=key,
        trigger=trigger,
        status="running",
        attempts=1,
        scheduled_for=scheduled_for,
        lease_owner=owner,
        lease_expires_at=lease,
        started_at=now,
    )
    db.session.add(run)
    try:
        db.session.commit()
        return run
    except IntegrityError:
        db.session.rollback()
        return None


def _close(run_id: int, owner: str, **values) -> bool:
    """Settle a run this owner holds; False if its lease had been taken over."""
    now = utcnow()
    started = db.session.scalar(select(JobRun.started_at).where(JobRun.id == run_id))
    closed = db.session.execute(
        update(JobRun)
        .where(JobRun.id == run_id, JobRun.lease_owner == owner, JobRun.status == "running")
        .values(
            finished_at=now,
            duration_ms=int((now - started).total_seconds() * 1000) if started else None,
            lease_owner=None,
            lease_expires_at=None,
            **values,
        )
    ).rowcount
    db.session.commit()
    if not closed:
        log.error("run %s was taken over by another runner before it finished", run_id)
    return bool(closed)


def finish(run_id: int, owner: str, result: dict | None) -> bool:
    return _close(run_id, owner, status="done", result=result, error=None, message="done")


def fail(run_id: int, owner: str, error: str) -> bool:
    return _close(run_id, owner, status="failed", error=error[:ERROR_LIMIT], acknowledged_at=None)


def mark_busy(run_id: int, owner: str, reason: str) -> bool:
    """Another run of the job held its lock: nothing ran, so the try does not count."""
    return _close(
        run_id, owner, status="busy", error=reason[:ERROR_LIMIT], attempts=JobRun.attempts - 1
    )


def give_up_interrupted(now: datetime, max_attempts: int) -> int:
    """Runs whose runners died ``max_attempts`` times are failed, not taken over again."""
    given_up = db.session.execute(
        update(JobRun)
        .where(
            JobRun.status == "running",
            JobRun.lease_expires_at < now,
            JobRun.attempts >= max_attempts,
        )
        .values(
            status="failed",
            finished_at=now,
            lease_owner=None,
            lease_expires_at=None,
            acknowledged_at=None,
            error=f"interrupted {max_attempts} times: the process running it stopped each time",
        )
    ).rowcount
    db.session.commit()
    return given_up


def set_message(run_id: int, owner: str, message: str) -> None:
    db.session.execute(
        update(JobRun)
        .where(JobRun.id == run_id, JobRun.lease_owner == owner)
        .values(message=message[:500])
    )
    db.session.commit()


class LeaseKeeper:
    """Renews a run's lease (and its queued task's, for a "run now") from a thread of its
    own while the run works, however long one of its steps takes."""

    def __init__(
        self,
        engine: Engine,
        run_id: int,
        owner: str,
        lease_seconds: float,
        task: tuple[int, str] | None = None,
    ):
        self.engine = engine
        self.run_id = run_id
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.task = task  # (task id, the task runner's lease owner)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._renew_until_stopped, daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join()

    def _renew_until_stopped(self) -> None:
        while not self.stop.wait(self.lease_seconds / 3):
            try:
                self.renew()
            except Exception:  # a missed renewal is retried; the lease has slack for it
                log.exception("renewing the lease of run %s failed", self.run_id)

    def renew(self) -> None:
        expires = utcnow() + timedelta(seconds=self.lease_seconds)
        with self.engine.begin() as conn:
            kept = conn.execute(
                update(JobRun)
                .where(JobRun.id == self.run_id, JobRun.lease_owner == self.owner)
                .values(lease_expires_at=expires)
            ).rowcount
            if self.task is not None:
                task_id, task_owner = self.task
                task_lease = max(expires, utcnow() + timedelta(seconds=TASK_LEASE_SECONDS))
                conn.execute(
                    update(Task)
                    .where(Task.id == task_id, Task.lease_owner == task_owner)
                    .values(lease_expires_at=task_lease)
                )
        if not kept:
            log.error("run %s: its lease is no longer ours", self.run_id)
