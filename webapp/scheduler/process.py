"""The scheduler process (`patchwork scheduler`): APScheduler 3 fires every timed job; the
database decides what actually runs.

APScheduler keeps its jobs in memory, so it knows nothing of downtime. What is due is read
from the database instead: every SCHEDULER_POLL_SECONDS (and at start) the process re-reads
each job's settings, re-times its APScheduler job when the owner changed the schedule, and
fires at once every periodic job whose current period is not done (missed while stopped, or
left by a scheduler that died, or failed and due a retry). A firing runs the current period's
key through run_keyed, so a second scheduler started by mistake finds the key done, or its
lock held, and does nothing.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from flask import Flask

from webapp.extensions import db
from webapp.models import SchedulerHeartbeat
from webapp.models._types import utcnow
from webapp.scheduler import ledger, schedules
from webapp.scheduler.periods import Schedule, next_fire
from webapp.scheduler.registry import Job, load_jobs
from webapp.scheduler.runner import retry_cutoff, run_keyed, run_unrecorded

log = logging.getLogger("webapp.scheduler")
CONTROL = ("heartbeat", "sync")  # the process's own upkeep, on an executor of its own


class PeriodTrigger(BaseTrigger):
    """Fires a periodic job at its schedule's times (webapp.scheduler.periods), so what
    APScheduler does and what the Schedule page shows come from one function."""

    def __init__(self, schedule: Schedule, tz):
        self.schedule = schedule
        self.tz = tz

    def get_next_fire_time(self, previous_fire_time, now):
        after = previous_fire_time if previous_fire_time is not None else now
        return next_fire(self.schedule, self.tz, after.astimezone(UTC))[1]

    def __str__(self) -> str:
        return f"period[{self.schedule.describe()} {self.tz.key}]"


class SchedulerProcess:
    """One scheduler: APScheduler's timers, the heartbeat, and the sync with the database."""

    def __init__(self, app: Flask):
        # Its own chatter (each poll of the queue, a poll skipped while a long task runs)
        # only when something is wrong: this module logs every run.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        self.app = app
        self.config = app.config
        self.id = f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(3)}"
        self.stop = threading.Event()
        self.started_at = utcnow()
        self._running: dict[str, str] = {}  # job name -> key of the run under way
        self._running_lock = threading.Lock()
        self._applied: dict[str, tuple] = {}  # job name -> the settings its timer was made of
        self._sync_lock = threading.Lock()
        # Held by each heartbeat and sync for all its work. APScheduler's shutdown(wait=True)
        # holds the job-store lock while it waits for the pool's threads, so one of these
        # still touching the scheduler then would wait on that lock for ever: shutdown takes
        # this lock first, and afterwards they see `stop` and touch nothing.
        self._control_lock = threading.Lock()
        self.scheduler = BackgroundScheduler(
            executors={
                "default": ThreadPoolExecutor(4),
                "control": ThreadPoolExecutor(2),
            },
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        jobs = load_jobs()
        for job in jobs.values():
            # The periodic ones are timed by sync(), from the database.
            if not job.periodic and job.interval_setting is not None:
                self.scheduler.add_job(
                    self._tick,
                    IntervalTrigger(seconds=float(self.config[job.interval_setting])),
                    id=job.name,
                    name=job.title,
                    args=[job.name],
                    next_run_time=utcnow(),
                )
        for what, setting in (
            ("heartbeat", "SCHEDULER_HEARTBEAT_SECONDS"),
            ("sync", "SCHEDULER_POLL_SECONDS"),
        ):
            self.scheduler.add_job(
                self._control,
                IntervalTrigger(seconds=float(self.config[setting])),
                id=what,
                args=[what],
                executor="control",
            )
        self.scheduler.start()
        with self.app.app_context():
            try:
                self.sync()  # times the periodic jobs and fires what was missed meanwhile
                self.beat()
            finally:
                db.session.remove()
        log.info("scheduler %s started: %s", self.id, "; ".join(self.describe_jobs()))

    def shutdown(self) -> None:
        """Stop firing, let the runs under way finish, then say so in the heartbeat."""
        self.stop.set()
        with self._control_lock:
            pass  # a heartbeat or sync under way has finished; later ones do nothing
        running = self.running()
        if running:
            log.info("scheduler %s stopping: waiting for %s", self.id, ", ".join(running))
        else:
            log.info("scheduler %s stopping", self.id)
        self.scheduler.shutdown(wait=True)
        with self.app.app_context():
            try:
                self.beat(stopped=True)
            except Exception:
                log.exception("recording the scheduler's stop failed")
            db.session.remove()
        log.info("scheduler %s stopped", self.id)

    def run_until_signalled(self) -> None:
        """The `patchwork scheduler` command: run until SIGTERM or SIGINT, then stop
        cleanly, waiting for the job under way. A second signal stops at once."""

        def on_signal(signum, frame):
            if self.stop.is_set():
                log.warning("second %s: exiting without waiting", signal.Signals(signum).name)
                os._exit(1)
            log.info("%s received", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        while not self.stop.wait(1):
            pass
        self.shutdown()

    # --- what runs -----------------------------------------------------------------------

    def running(self) -> list[str]:
        with self._running_lock:
            return list(self._running.values())

    def _tick(self, name: str) -> None:
        """An interval job's run: the queue poll, the dispatcher."""
        if self.stop.is_set():
            return
        with self.app.app_context():
            try:
                run_unrecorded(load_jobs()[name], self.stop)
            except Exception:  # the database may be briefly away; the next tick retries
                log.exception("job %s: tick failed", name)
            finally:
                db.session.remove()

    def _fire(self, name: str) -> None:
        """A periodic job's timer went off (or sync fired it): run the current period's key
        if it is due and not done."""
        if self.stop.is_set():
            return
        with self.app.app_context():
            try:
                job = load_jobs()[name]
                now = utcnow()
                setting = schedules.ensure_settings(now)[name]
                tz = schedules.shop_timezone()
                due = schedules.due(job, setting, tz, now)
                if due is None or not self._needs_run(due.key, now):
                    return
                late = now - due.fire > timedelta(seconds=max(60.0, self._poll() * 2))
                self._mark(name, due.key)
                run_keyed(
                    job,
                    due.key,
                    "catch-up" if late else "schedule",
                    now=now,
                    scheduled_for=due.fire,
                    retry_failed_before=retry_cutoff(now),
                    max_attempts=self.config["SCHEDULER_MAX_ATTEMPTS"],
                    stop=self.stop,
                )
            except Exception:
                log.exception("job %s: firing failed", name)
            finally:
                self._mark(name, None)
                db.session.remove()

    def _needs_run(self, key: str, now: datetime) -> bool:
        return schedules.needs_run(
            ledger.get_run(key),
            now,
            self.config["SCHEDULER_RETRY_SECONDS"],
            self.config["SCHEDULER_MAX_ATTEMPTS"],
        )

    def _mark(self, name: str, key: str | None) -> None:
        with self._running_lock:
            if key is None:
                self._running.pop(name, None)
            else:
                self._running[name] = key

    def _poll(self) -> float:
        return float(self.config["SCHEDULER_POLL_SECONDS"])

    # --- upkeep --------------------------------------------------------------------------

    def _control(self, what: str) -> None:
        with self._control_lock:
            if self.stop.is_set():
                return
            with self.app.app_context():
                try:
                    self.beat() if what == "heartbeat" else self.sync()
                except Exception:
                    log.exception("scheduler %s failed", what)
                finally:
                    db.session.remove()

    def sync(self) -> None:
        """Bring the timers in line with the database, and fire what is due but not done."""
        with self._sync_lock:
            self._sync()

    def _sync(self) -> None:
        now = utcnow()
        settings = schedules.ensure_settings(now)
        tz = schedules.shop_timezone()
        given_up = ledger.give_up_interrupted(now, self.config["SCHEDULER_MAX_ATTEMPTS"])
        if given_up:
            log.warning("%d interrupted runs were given up after too many attempts", given_up)
        for job in load_jobs().values():
            setting = settings[job.name]
            if job.periodic:
                self._apply(job, setting, tz)
                due = schedules.due(job, setting, tz, now)
                with self._running_lock:
                    busy_here = job.name in self._running
                if due is not None and not busy_here and self._needs_run(due.key, now):
                    log.info("job %s: %s is due and not done: firing it", job.name, due.key)
                    self.scheduler.modify_job(job.name, next_run_time=now)
            else:
                self._pause(job.name, setting.paused)

    def _apply(self, job: Job, setting, tz) -> None:
        applied = (setting.frequency, setting.at_time, setting.weekday, setting.paused, tz.key)
        if self._applied.get(job.name) == applied:
            return
        trigger = PeriodTrigger(schedules.schedule_of(setting), tz)
        if self.scheduler.get_job(job.name) is None:
            self.scheduler.add_job(
                self._fire, trigger, id=job.name, name=job.title, args=[job.name]
            )
        else:
            self.scheduler.reschedule_job(job.name, trigger=trigger)
        self._pause(job.name, setting.paused)
        self._applied[job.name] = applied
        log.info("job %s: %s", job.name, "paused" if setting.paused else f"timed by {trigger}")

    def _pause(self, name: str, paused: bool) -> None:
        job = self.scheduler.get_job(name)
        if job is None:
            return
        if paused and job.next_run_time is not None:
            self.scheduler.pause_job(name)
        elif not paused and job.next_run_time is None:
            self.scheduler.resume_job(name)

    def beat(self, stopped: bool = False) -> None:
        """Say this process is alive, what it runs, and when each job fires next."""
        now = utcnow()
        row = db.session.get(SchedulerHeartbeat, self.id)
        if row is None:
            host, pid, _ = self.id.rsplit(":", 2)
            row = SchedulerHeartbeat(
                id=self.id, host=host, pid=int(pid), started_at=self.started_at
            )
            db.session.add(row)
        row.beat_at = now
        row.running = self.running()
        row.next_runs = {
            job.id: job.next_run_time.astimezone(UTC).isoformat()
            for job in self.scheduler.get_jobs()
            if job.id not in CONTROL and getattr(job, "next_run_time", None) is not None
        }
        if stopped:
            row.stopped_at = now
            row.running = []
        db.session.commit()

    def describe_jobs(self) -> list[str]:
        return [f"{job.id} ({job.trigger})" for job in self.scheduler.get_jobs()]


def start_in_process(app: Flask) -> SchedulerProcess:
    """The demo's scheduler: a thread of the web process (never in production, where web
    workers are many and the scheduler is one process of its own)."""
    process = SchedulerProcess(app)
    process.start()
    app.extensions["patchwork_scheduler"] = process
    return process
