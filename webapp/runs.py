"""Refresh runs in the browser: every run, one run's counts and movement, and "Refresh now".

"Refresh now" never computes inside the request: it queues a run of the scheduler's refresh
job (webapp.scheduler.runner.run_now: a `manual:` key, the job's lock and ledger) for the
task runner, and the task page polls its progress. A refresh already queued or running is
shown instead of queueing another.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from webapp.extensions import db, htmx
from webapp.models import RefreshRun, Segment, SegmentRunStat, Task
from webapp.segmentation import rfm
from webapp.segmentation.refresh import current_run_id

bp = Blueprint("runs", __name__, url_prefix="/refresh")

REFRESH_KIND = "refresh"
PAGE_SIZE = 50
TRIGGERS = {
    "browser": "Refresh now button",
    "cli": "command line",
    "schedule": "schedule",
    "manual": "Schedule page (run now)",
}
LIFECYCLE_ORDER = ("prospect", "new", "active", "lapsed", "churned")
BEHAVIOURS = {
    "vip": "VIP",
    "frequent": "Frequent",
    "seasonal": "Seasonal",
    "cart_abandoner": "Cart abandoner",
    "class_taker": "Class taker",
    "engaged": "Engaged with email",
}
# The handler's exceptions say what happened in the owner's words; their names do not.
OWNER_FACING_ERRORS = ("RefreshBusy: ", "RefreshFailed: ")
# A movement row's "from" is None for a customer without a profile in the previous run (new
# since) and also for one who had no RFM segment then: the run's movement does not tell
# them apart.
FROM_NEW = "(new customer)"
FROM_NONE = "(no segment)"
TO_NONE = "(no segment)"


# --- services ----------------------------------------------------------------------------


def active_refresh_task() -> Task | None:
    """The refresh task queued or running (a running one whose runner died included: the
    next runner takes it over), if any."""
    return db.session.scalar(
        select(Task)
        .where(Task.kind == REFRESH_KIND, Task.status.in_(("queued", "running")))
        .order_by(Task.id)
        .limit(1)
    )


def start_refresh(trigger: str = "browser") -> tuple[Task, bool]:
    """Queue a refresh unless one is queued or running: (the task, whether it was queued
    now rather than found). Two refreshes never overlap whatever happens: the job's lock
    and the refresh's own lock see to that."""
    from webapp.scheduler.jobs import REFRESH
    from webapp.scheduler.runner import run_now

    if (task := active_refresh_task()) is not None:
        return task, False
    run = run_now(REFRESH, trigger=trigger)
    return db.session.get(Task, run.task_id), True


def run_of_task(task: Task) -> RefreshRun | None:
    """The run a refresh task started: its result names it once done; before, runs never
    overlap, so it is the first run of its trigger started after the task was claimed."""
    run_id = (task.result or {}).get("run_id")
    if run_id is not None:
        return db.session.get(RefreshRun, run_id)
    if task.started_at is None:
        return None
    query = select(RefreshRun).where(
        RefreshRun.started_at >= task.started_at,
        RefreshRun.trigger == task.params.get("trigger", "browser"),
    )
    if task.finished_at is not None:
        query = query.where(RefreshRun.started_at <= task.finished_at)
    return db.session.scalar(query.order_by(RefreshRun.id).limit(1))


def owner_facing(error: str | None) -> str | None:
    for prefix in OWNER_FACING_ERRORS:
        if error and error.startswith(prefix):
            return error.removeprefix(prefix)
    return error


def current_run() -> RefreshRun | None:
    run_id = current_run_id()
    return db.session.get(RefreshRun, run_id) if run_id is not None else None


def latest_run() -> RefreshRun | None:
    return db.session.scalar(select(RefreshRun).order_by(RefreshRun.id.desc()).limit(1))


@dataclass
class RunsPage:
    runs: list[RefreshRun]
    older: int | None  # the `before` of the next page, None on the last


def runs_page(before: int | None = None, size: int = PAGE_SIZE) -> RunsPage:
    """Runs newest first, `size` at a time (keyset on the id)."""
    query = select(RefreshRun).order_by(RefreshRun.id.desc()).limit(size + 1)
    if before is not None:
        query = query.where(RefreshRun.id < before)
    runs = list(db.session.scalars(query))
    shown = runs[:size]
    return RunsPage(shown, shown[-1].id if len(runs) > size else None)


@dataclass(frozen=True)
class Move:
    source: str
    target: str
    customers: int
    stayed: bool  # the same segment, or still none


def movement(run: RefreshRun) -> list[Move]:
    """The run's from -> to RFM segment counts, biggest first."""
    moves = [
        Move(
            (FROM_NEW if row.get("new") else FROM_NONE) if row.get("from") is None else row["from"],
            TO_NONE if row.get("to") is None else row["to"],
            int(row.get("customers") or 0),
            stayed=row.get("from") == row.get("to") and not row.get("new"),
        )
        for row in run.movement or []
    ]
    return sorted(moves, key=lambda m: (-m.customers, m.source, m.target))


def segment_changes(run_id: int) -> list[tuple[Segment, SegmentRunStat]]:
    """Per segment, its size and who joined or left at this run (empty before segments)."""
    rows = db.session.execute(
        select(Segment, SegmentRunStat)
        .join(SegmentRunStat, SegmentRunStat.segment_id == Segment.id)
        .where(SegmentRunStat.run_id == run_id)
        .order_by(Segment.name)
    )
    return [(segment, stat) for segment, stat in rows]


def ordered_counts(counts: dict[str, int], order: tuple[str, ...]) -> list[tuple[str, int]]:
    """Known keys in their order (zeros included), then any others by size."""
    known = [(key, int(counts.get(key, 0))) for key in order]
    others = sorted(
        ((k, int(n)) for k, n in counts.items() if k not in order), key=lambda kv: -kv[1]
    )
    return known + others


def duration_words(ms: int | None) -> str:
    """1234 -> "1.2 s"; 125000 -> "2 min 5 s"."""
    if ms is None:
        return ""
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(round(ms / 1000), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@bp.app_template_filter("duration")
def _duration_filter(ms: int | None) -> str:
    return duration_words(ms)


@bp.app_template_filter("trigger")
def _trigger_filter(trigger: str) -> str:
    return TRIGGERS.get(trigger, trigger)


# --- views -------------------------------------------------------------------------------


def _run_or_404(run_id: int) -> RefreshRun:
    run = db.session.get(RefreshRun, run_id)
    if run is None:
        abort(404, "There is no such refresh run.")
    return run


def _task_or_404(task_id: int) -> Task:
    task = db.session.get(Task, task_id)
    if task is None or task.kind != REFRESH_KIND:
        abort(404, "There is no such refresh.")
    return task


@bp.get("/")
def index():
    before = request.args.get("before", type=int)
    if before is not None and not 0 < before <= 2**31 - 1:
        before = None
    return render_template(
        "runs/index.html",
        page=runs_page(before),
        paged=before is not None,
        current_id=current_run_id(),
        active_task=active_refresh_task(),
    )


@bp.post("/")
def start():
    task, queued = start_refresh("browser")
    if not queued:
        flash("A refresh is already under way: here is its progress.")
    return redirect(url_for("runs.task", task_id=task.id), 303)


@bp.get("/tasks/<int:task_id>")
def task(task_id: int):
    task = _task_or_404(task_id)
    context = {
        "task": task,
        "run": run_of_task(task),
        "error": owner_facing(task.error),
        "poll_url": url_for("runs.task", task_id=task.id),
    }
    # The progress component polls this URL and is replaced by the answer: the progress
    # while the task runs, then its outcome, which has no trigger and so ends the polling.
    if htmx and htmx.target == f"task-{task.id}-progress":
        return render_template("runs/_task_body.html", **context)
    return render_template("runs/task.html", **context)


@bp.get("/<int:run_id>")
def show(run_id: int):
    run = _run_or_404(run_id)
    counts = run.counts or {}
    previous = db.session.get(RefreshRun, run.previous_run_id) if run.previous_run_id else None
    return render_template(
        "runs/show.html",
        run=run,
        counts=counts,
        previous=previous,
        is_current=run.id == current_run_id(),
        rfm_segments=sorted(
            ((name or TO_NONE, n) for name, n in (counts.get("rfm_segments") or {}).items()),
            key=lambda kv: (-kv[1], kv[0]),
        ),
        grid_names=rfm.grid_names(rfm.segment_map(db.session)),
        lifecycle=ordered_counts(counts.get("lifecycle") or {}, LIFECYCLE_ORDER),
        behaviours=[
            (label, (counts.get("behaviours") or {}).get(k, 0)) for k, label in BEHAVIOURS.items()
        ],
        traits=sorted((counts.get("traits") or {}).items()),
        moves=movement(run),
        segment_rows=segment_changes(run.id),
        active_task=active_refresh_task(),
    )
