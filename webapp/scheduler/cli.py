"""`patchwork scheduler` and `patchwork jobs list|run|history`."""

from __future__ import annotations

import logging
import sys

import click
from flask import current_app
from sqlalchemy import select

from webapp.cli import CommandError, emit_json, json_errors, needs_database
from webapp.extensions import db
from webapp.models import JobRun
from webapp.models._types import utcnow

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging() -> None:
    """Each run's start and outcome on stderr."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("webapp.scheduler").setLevel(logging.INFO)


@click.command("scheduler")
@needs_database
def scheduler_command() -> None:
    """Run every timed job (the segment refresh, the campaign dispatcher, the queue of work
    started in the browser, housekeeping) until SIGTERM or Ctrl-C.

    Run one per installation, beside the web workers (a second one started by mistake does
    nothing twice). It stops cleanly on SIGTERM, waiting for the job under way; a second
    signal stops it at once.
    """
    from webapp.scheduler.process import SchedulerProcess

    configure_logging()
    SchedulerProcess(current_app._get_current_object()).run_until_signalled()


@click.group("jobs")
def jobs_group() -> None:
    """The scheduler's jobs: list them, run one now, see what ran."""


@jobs_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@json_errors
@needs_database
def list_command(as_json: bool) -> None:
    """Every job, its schedule and its next run (in the shop's time zone)."""
    from webapp.scheduler import schedules
    from webapp.scheduler.status import overview

    tz = schedules.shop_timezone()
    jobs = [
        {
            "name": row.job.name,
            "schedule": row.schedule,
            "next_run": row.next_run.astimezone(tz).isoformat() if row.next_run else None,
            "paused": row.setting.paused,
        }
        for row in overview(tz, utcnow())
    ]
    if as_json:
        emit_json({"jobs": jobs})
        return
    for job in jobs:
        state = "paused" if job["paused"] else f"next {job['next_run'] or 'when a scheduler runs'}"
        click.echo(f"{job['name']:<14} {job['schedule']}; {state}")


@jobs_group.command("run")
@click.argument("name")
@click.option("--key", help="Run under this key (e.g. refresh:2026-Q4); default: a new manual key.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@json_errors
@needs_database
def run_command(name: str, key: str | None, as_json: bool) -> None:
    """Run job NAME now, in this process, through the same lock and key as the scheduler.

    A key already done is skipped (exit 0); a failed key is run again. Exits 1 when the run
    failed or another run of the job held its lock.
    """
    from webapp.scheduler import schedules
    from webapp.scheduler.registry import get_job
    from webapp.scheduler.runner import KeyClash, manual_key, run_keyed

    try:
        job = get_job(name)
    except LookupError as exc:
        raise CommandError(str(exc)) from None
    key = (key or "").strip() or manual_key()
    if len(key) > 200:
        raise CommandError("--key takes at most 200 characters.")
    now = utcnow()
    try:
        outcome = run_keyed(job, key, "cli", now=now, retry_failed_before=now)
    except KeyClash as exc:
        raise CommandError(str(exc)) from None
    if as_json:
        emit_json(outcome.as_dict(schedules.shop_timezone()))
    elif outcome.status == "done":
        click.echo(f"{job.name}: {key} done: {outcome.result}")
    elif outcome.status == "skipped":
        click.echo(f"{job.name}: {key} skipped: {outcome.reason}")
    else:
        why = outcome.error or outcome.reason
        click.echo(f"{job.name}: {key} {outcome.status}: {why}", err=True)
    if outcome.status in ("failed", "busy"):
        sys.exit(1)


@jobs_group.command("history")
@click.option("--job", "job_name", help="Only this job's runs.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@json_errors
@needs_database
def history_command(job_name: str | None, limit: int, as_json: bool) -> None:
    """What ran, newest first: each key once, with its status, times and error."""
    from webapp.scheduler import schedules

    query = select(JobRun).order_by(JobRun.id.desc()).limit(limit)
    if job_name:
        query = query.where(JobRun.job == job_name)
    tz = schedules.shop_timezone()

    def when(moment):
        return moment.astimezone(tz).isoformat() if moment else None

    runs = [
        {
            "job": run.job,
            "key": run.key,
            "status": run.status,
            "started_at": when(run.started_at),
            "finished_at": when(run.finished_at),
            "error": run.error,
        }
        for run in db.session.scalars(query)
    ]
    if as_json:
        emit_json({"runs": runs})
        return
    if not runs:
        click.echo("No runs yet.")
    for run in runs:
        error = f"  {run['error']}" if run["error"] else ""
        click.echo(
            f"{run['started_at'] or '-':<32} {run['job']:<13} {run['key']:<44} "
            f"{run['status']:<8}{error}"
        )
