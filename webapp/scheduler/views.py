"""The Schedule page (each job's next run, recent runs, pause/resume, run now, the refresh's
schedule and the retention of run details), a run's page, the failed-job banner on every
owner page, and GET /healthz for load balancers and monitors."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from wtforms import IntegerField, SelectField, StringField, ValidationError
from wtforms.fields import SelectChoice
from wtforms.validators import InputRequired, NumberRange

from webapp.auth import public, safe_next
from webapp.extensions import db, htmx
from webapp.models import JobRun, JobSetting, RefreshRun, Task
from webapp.models._types import utcnow
from webapp.scheduler import schedules
from webapp.scheduler.periods import WEEKDAYS
from webapp.scheduler.registry import Job, load_jobs
from webapp.scheduler.runner import run_now
from webapp.scheduler.status import JobStatus, is_alive, latest_heartbeat, overview
from webapp.settings import normalise_hhmm
from webapp.shop import shop_timezone
from webapp.web import format_datetime

log = logging.getLogger(__name__)
bp = Blueprint("schedule", __name__)

RECENT_RUNS = 5
HISTORY_PAGE = 50
BANNER_RUNS = 5
FREQUENCY_LABELS = {
    "monthly": "Monthly (the 1st)",
    "quarterly": "Quarterly (1 Jan, Apr, Jul, Oct)",
    "weekly": "Weekly",
    "daily": "Daily",
}
TRIGGER_LABELS = {
    "schedule": "on schedule",
    "catch-up": "caught up at start",
    "manual": "run now",
    "cli": "command line",
}


# --- forms -------------------------------------------------------------------------------


def valid_time(form, field) -> None:
    try:
        field.data = normalise_hhmm(field.data or "")
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


class ScheduleForm(FlaskForm):
    frequency = SelectField("How often", validators=[InputRequired()])
    at_time = StringField("At (shop time)", validators=[InputRequired(), valid_time])
    weekday = SelectField(
        "On (weekly)",
        coerce=int,
        choices=[SelectChoice(number, day) for number, day in enumerate(WEEKDAYS)],
        validators=[InputRequired()],
    )

    def for_job(self, job: Job) -> ScheduleForm:
        self.frequency.choices = [SelectChoice(f, FREQUENCY_LABELS[f]) for f in job.frequencies]
        return self


class RetentionForm(FlaskForm):
    retention_days = IntegerField(
        "Keep run details for (days)",
        validators=[
            InputRequired("Enter a number of days."),
            NumberRange(1, schedules.MAX_RETENTION_DAYS),
        ],
    )


# --- what the page shows -----------------------------------------------------------------


@dataclass
class JobRow:
    status: JobStatus
    runs: list  # JobRun, or Task for the queue
    form: ScheduleForm | None = None
    retention_form: RetentionForm | None = None

    @property
    def job(self) -> Job:
        return self.status.job

    @property
    def setting(self) -> JobSetting:
        return self.status.setting


def job_rows(tz: ZoneInfo, now: datetime, forms: dict | None = None) -> list[JobRow]:
    forms = forms or {}
    rows = []
    for status in overview(tz, now):
        job, setting = status.job, status.setting
        row = JobRow(status, recent_runs(job))
        if job.periodic and len(job.frequencies) > 1:
            row.form = forms.get(job.name) or ScheduleForm(
                formdata=None,
                frequency=setting.frequency,
                at_time=setting.at_time,
                weekday=setting.weekday,
            ).for_job(job)
        if job.retention:
            row.retention_form = forms.get("retention") or RetentionForm(
                formdata=None, retention_days=setting.retention_days
            )
        rows.append(row)
    return rows


def recent_runs(job: Job, limit: int = RECENT_RUNS) -> list:
    if job.name == "tasks":
        return list(db.session.scalars(select(Task).order_by(Task.id.desc()).limit(limit)))
    return list(
        db.session.scalars(
            select(JobRun).where(JobRun.job == job.name).order_by(JobRun.id.desc()).limit(limit)
        )
    )


def run_duration_ms(run) -> int | None:
    """A JobRun's recorded duration, or a Task's from its start and finish."""
    if getattr(run, "duration_ms", None) is not None:
        return run.duration_ms
    if run.started_at and run.finished_at:
        return int((run.finished_at - run.started_at).total_seconds() * 1000)
    return None


def render_page(forms: dict | None = None):
    now = utcnow()
    tz = shop_timezone()
    beat = latest_heartbeat()
    return render_template(
        "schedule/index.html",
        rows=job_rows(tz, now, forms),
        tz=tz,
        beat=beat,
        alive=is_alive(beat, current_app.config["SCHEDULER_HEARTBEAT_SECONDS"], now),
        now=now,
    )


def job_or_404(name: str) -> Job:
    job = load_jobs().get(name)
    if job is None:
        abort(404, "There is no such job.")
    return job


def controlled_job_or_404(name: str) -> Job:
    job = job_or_404(name)
    if not job.owner_controls:
        abort(400, f"{job.title} runs by itself whenever the scheduler runs.")
    return job


def run_or_404(run_id: int) -> JobRun:
    run = db.session.get(JobRun, run_id)
    if run is None:
        abort(404, "There is no such run.")
    return run


# --- views -------------------------------------------------------------------------------


@bp.get("/schedule/")
def index():
    return render_page()


def _back_to(job: Job):
    """After a change, back to the job's place on the Schedule page."""
    return redirect(url_for("schedule.index", _anchor=f"job-{job.name}"), 303)


@bp.post("/schedule/<name>")
def edit(name: str):
    job = job_or_404(name)
    if not job.periodic or len(job.frequencies) < 2:
        abort(400, f"{job.title} has no schedule to choose.")
    form = ScheduleForm().for_job(job)
    if not form.validate_on_submit():
        return render_page({job.name: form})
    setting = schedules.update_schedule(
        job, form.frequency.data, form.at_time.data, form.weekday.data
    )
    tz = shop_timezone()
    nxt = schedules.next_run(job, setting, tz, utcnow())
    when = f" Next run: {nxt.astimezone(tz):%Y-%m-%d %H:%M %Z}." if nxt else ""
    flash(f"{job.title}: {schedules.schedule_of(setting).describe()}.{when}", "success")
    return _back_to(job)


@bp.post("/schedule/<name>/retention")
def retention(name: str):
    job = job_or_404(name)
    if not job.retention:
        abort(400, f"{job.title} keeps no run details to prune.")
    form = RetentionForm()
    if not form.validate_on_submit():
        return render_page({"retention": form})
    schedules.set_retention(job, form.retention_days.data)
    flash(f"Run details are kept for {form.retention_days.data} days.", "success")
    return _back_to(job)


@bp.post("/schedule/<name>/pause")
def pause(name: str):
    job = controlled_job_or_404(name)
    schedules.set_paused(job, True)
    flash(f"{job.title} is paused: it does not run until you resume it.", "success")
    return _back_to(job)


@bp.post("/schedule/<name>/resume")
def resume(name: str):
    job = controlled_job_or_404(name)
    schedules.set_paused(job, False)
    flash(f"{job.title} is resumed.", "success")
    return _back_to(job)


@bp.post("/schedule/<name>/run")
def run(name: str):
    job = controlled_job_or_404(name)
    queued = run_now(job, trigger="manual")
    return redirect(url_for("schedule.show_run", run_id=queued.id), 303)


@bp.get("/schedule/runs/")
def history():
    job = request.args.get("job") or None
    before = request.args.get("before", type=int)
    query = select(JobRun).order_by(JobRun.id.desc()).limit(HISTORY_PAGE + 1)
    if job:
        query = query.where(JobRun.job == job)
    if before is not None and 0 < before <= 2**31 - 1:
        query = query.where(JobRun.id < before)
    runs = list(db.session.scalars(query))
    shown = runs[:HISTORY_PAGE]
    return render_template(
        "schedule/history.html",
        runs=shown,
        older=shown[-1].id if len(runs) > HISTORY_PAGE else None,
        job=load_jobs().get(job) if job else None,
    )


@bp.get("/schedule/runs/<int:run_id>")
def show_run(run_id: int):
    run = run_or_404(run_id)
    refresh_run_id = (run.result or {}).get("run_id") if run.job == "refresh" else None
    if refresh_run_id is None and run.job == "refresh" and run.status == "running":
        refresh_run_id = db.session.scalar(
            select(RefreshRun.id)
            .where(RefreshRun.started_at >= run.started_at)
            .order_by(RefreshRun.id)
            .limit(1)
        )
    context = {
        "run": run,
        "refresh_run": db.session.get(RefreshRun, refresh_run_id) if refresh_run_id else None,
        "task": db.session.get(Task, run.task_id) if run.task_id else None,
        "poll_url": url_for("schedule.show_run", run_id=run.id),
    }
    if htmx and htmx.target == f"run-{run.id}-progress":
        return render_template("schedule/_run_body.html", **context)
    return render_template("schedule/run.html", **context)


@bp.post("/schedule/runs/<int:run_id>/acknowledge")
def acknowledge(run_id: int):
    run = run_or_404(run_id)
    if run.acknowledged_at is None:
        run.acknowledged_at = utcnow()
        db.session.commit()
    if htmx:
        return ""
    return redirect(safe_next(request.form.get("next")), 303)


# --- the banner and the template helpers --------------------------------------------------


@bp.app_template_global("failed_jobs_banner")
def failed_jobs_banner() -> tuple[list[JobRun], bool]:
    """Failed runs nobody has acknowledged yet, and whether there are more than the banner
    shows: called by base.html, so the htmx fragments polled every second never query."""
    if not current_user.is_authenticated:
        return [], False
    try:
        failed = list(
            db.session.scalars(
                select(JobRun)
                .where(JobRun.status == "failed", JobRun.acknowledged_at.is_(None))
                .order_by(JobRun.id.desc())
                .limit(BANNER_RUNS + 1)
            )
        )
    except SQLAlchemyError:  # an error page about the database must still render
        db.session.rollback()
        return [], False
    return failed[:BANNER_RUNS], len(failed) > BANNER_RUNS


@bp.app_template_filter("job_title")
def _job_title(name: str) -> str:
    job = load_jobs().get(name)
    return job.title if job else name


@bp.app_template_filter("job_trigger")
def _job_trigger(trigger: str) -> str:
    return TRIGGER_LABELS.get(trigger, trigger)


@bp.app_template_filter("zoned")
def _zoned(moment: datetime | None) -> str:
    """A UTC time in the shop's zone, with the zone's abbreviation: 2027-01-01 03:00 CET."""
    return format_datetime(moment, "%Y-%m-%d %H:%M %Z")


@bp.app_template_global("run_duration_ms")
def _run_duration_ms(run) -> int | None:
    return run_duration_ms(run)


# --- health ------------------------------------------------------------------------------


@bp.get("/healthz")
@public
def healthz():
    """200 with the database reachable (and when the scheduler last beat); 503 without it."""
    try:
        beat = latest_heartbeat()  # reading it is the proof that the database is there
        running = db.session.scalar(
            select(func.count()).select_from(JobRun).where(JobRun.status == "running")
        )
    except Exception as exc:  # any failure to reach the database is the answer
        db.session.rollback()
        log.warning("health check: database unreachable: %s", exc)
        body = {"status": "error", "database": "unreachable", "error": type(exc).__name__}
        return jsonify(body), 503
    now = utcnow()
    heartbeat_seconds = current_app.config["SCHEDULER_HEARTBEAT_SECONDS"]
    scheduler = {
        "alive": is_alive(beat, heartbeat_seconds, now),
        "last_heartbeat": beat.beat_at.isoformat() if beat else None,
        "seconds_since_heartbeat": round((now - beat.beat_at).total_seconds(), 1) if beat else None,
        "process": beat.id if beat else None,
        "running": (beat.running or []) if beat and beat.stopped_at is None else [],
        "stopped_at": beat.stopped_at.isoformat() if beat and beat.stopped_at else None,
    }
    return jsonify(
        {"status": "ok", "database": "ok", "scheduler": scheduler, "runs_in_progress": running}
    )
