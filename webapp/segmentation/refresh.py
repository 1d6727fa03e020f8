"""A refresh run: take the lock, record the run, compute every staging table, copy the
results in under the run's id, then swap them in by marking the run done.

Readers use the latest run whose status is `done` (`current_run_id`), so the swap is one
short UPDATE and a failed or killed run leaves the previous results in place. Copying goes
in chunks of customers, each its own short transaction, so that on SQLite survey answers
are written between chunks. Rows of runs other than the current and the previous one are
deleted after each swap (and a killed run's rows with them).
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, func, select, text, update

from webapp.extensions import db
from webapp.models import RefreshRun, ShopSettings, Survey, Task
from webapp.segmentation import profiles, rfm, segments, traits
from webapp.segmentation.dialect import (
    Dialect,
    day_number,
    local_midnight_utc,
    offset_periods,
    quarter_starts,
)
from webapp.segmentation.staging import RunContext
from webapp.tasks import Progress as TaskProgress
from webapp.tasks import handler

log = logging.getLogger(__name__)

_PG_REFRESH_LOCK = 0x5041_5452  # "PATR": the advisory lock id of refresh runs
_MEMORY_LOCK = threading.Lock()  # an in-memory SQLite database lives in one process
CHUNK_CUSTOMERS = 100_000
Progress = Callable[[int, int, str], None]


class RefreshBusy(RuntimeError):
    """Another refresh is running; two never overlap."""

    def __init__(self) -> None:
        super().__init__("Another refresh is running; try again when it has finished.")


class RefreshFailed(RuntimeError):
    """A run failed; it is recorded as failed and the previous results stay live."""

    def __init__(self, run_id: int, cause: str) -> None:
        super().__init__(f"Refresh run {run_id} failed (previous results kept): {cause}")
        self.run_id = run_id


@contextmanager
def refresh_lock(engine: Engine) -> Iterator[None]:
    """Held for a whole run, released by the database or the OS if the process dies:
    a session advisory lock on PostgreSQL, an flock beside the database file on SQLite."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _PG_REFRESH_LOCK})
            conn.commit()
            if not got.scalar():
                raise RefreshBusy()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_REFRESH_LOCK})
                conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        if not _MEMORY_LOCK.acquire(blocking=False):
            raise RefreshBusy()
        try:
            yield
        finally:
            _MEMORY_LOCK.release()
        return
    with open(Path(f"{database}.refresh.lock"), "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RefreshBusy() from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def current_run_id(session=None) -> int | None:
    """The run whose results are live: the latest that finished."""
    session = session or db.session
    return session.scalar(select(func.max(RefreshRun.id)).where(RefreshRun.status == "done"))


def shop_today(shop: ShopSettings) -> date:
    return datetime.now(ZoneInfo(shop.timezone)).date()


def run_refresh(
    as_of: date | None = None, trigger: str = "cli", progress: Progress | None = None
) -> RefreshRun:
    """Refresh every profile as of `as_of` (default: today in the shop's time zone).

    Raises RefreshBusy when another run holds the lock, RefreshFailed when the run failed
    (it is recorded as failed; the previous results stay live).
    """
    engine = db.engine
    with refresh_lock(engine):
        shop = db.session.get(ShopSettings, 1)
        as_of = as_of or shop_today(shop)
        _fail_interrupted_runs()
        run = RefreshRun(trigger=trigger, as_of=as_of, status="running", step="starting")
        db.session.add(run)
        db.session.commit()
        run_id = run.id
        started = time.perf_counter()
        try:
            counts = _compute_and_swap(engine, run, shop, progress)
        except Exception as exc:
            log.exception("refresh run %s failed", run_id)
            cause = f"{type(exc).__name__}: {exc}"[:2000]
            db.session.rollback()
            db.session.execute(
                update(RefreshRun)
                .where(RefreshRun.id == run_id)
                .values(
                    status="failed",
                    error=cause,
                    finished_at=datetime.now(UTC),
                    duration_ms=int(1000 * (time.perf_counter() - started)),
                )
            )
            db.session.commit()
            _purge_safely(engine)
            raise RefreshFailed(run_id, cause) from exc
        db.session.refresh(run)
        if progress:
            progress(len(STEPS), len(STEPS), "done")
        _purge_safely(engine)
        log.info("refresh %s done in %s ms: %s", run.id, run.duration_ms, counts["customers"])
        return run


def _compute_and_swap(engine: Engine, run: RefreshRun, shop: ShopSettings, progress) -> dict:
    exit_surveys = [
        s.id
        for s in db.session.scalars(select(Survey).where(Survey.published.is_not(None)))
        if ((s.published or {}).get("triggers") or {}).get("kind") == "exit_intent"
    ]
    grid = rfm.grid_names(rfm.segment_map(db.session))
    previous = current_run_id()
    started = time.perf_counter()
    with engine.connect() as conn:
        try:
            ctx = _context(conn, run, shop, grid, exit_surveys, previous)
            counts, movement = _compute(conn, ctx, progress)
            # The swap: one short UPDATE. Until it commits, readers see the previous run.
            swapped = conn.execute(
                update(RefreshRun)
                .where(RefreshRun.id == run.id, RefreshRun.status == "running")
                .values(
                    status="done",
                    step="done",
                    finished_at=datetime.now(UTC),
                    duration_ms=int(1000 * (time.perf_counter() - started)),
                    counts=counts,
                    movement=movement,
                    previous_run_id=previous,
                )
            ).rowcount
            if swapped != 1:
                raise RuntimeError("the run was marked failed while it ran")
            conn.commit()
        finally:
            # Staging tables and the run's settings die with the connection, not in the pool.
            conn.invalidate()
    return counts


# Each step stages one temporary table (or copies the results); in order.
STEPS: tuple[tuple[str, Callable[[Connection, RunContext], None]], ...] = (
    ("orders", profiles.stage_orders),
    ("order lines by category", profiles.stage_categories),
    ("seasonal orders", profiles.stage_seasonal),
    ("exit-intent answers", profiles.stage_abandoners),
    ("email engagement", profiles.stage_engaged),
    ("RFM scores", profiles.stage_scores),
    ("profiles", profiles.stage_profiles),
    ("observed traits", traits.stage_observed),
    ("declared traits", traits.stage_declared),
    ("traits", traits.stage_traits),
    ("saving", lambda conn, ctx: _copy_results(conn, ctx)),
    ("segments", lambda conn, ctx: _stage_segments(conn, ctx)),
)


def _compute(conn: Connection, ctx: RunContext, progress) -> tuple:
    _tune(conn, ctx)
    for index, (name, step) in enumerate(STEPS):
        _report(ctx.run_id, index, len(STEPS), name, progress)
        step(conn, ctx)
    return {**_counts(conn), **ctx.notes}, _movement(conn, ctx.previous_run_id)


def _context(
    conn: Connection,
    run: RefreshRun,
    shop: ShopSettings,
    grid: dict,
    exit_surveys: list[int],
    previous: int | None,
) -> RunContext:
    tz = ZoneInfo(shop.timezone)
    cutoff = local_midnight_utc(run.as_of + timedelta(days=1), tz)
    periods: tuple = ()
    quarters: tuple = ()
    if conn.dialect.name == "sqlite":
        first = conn.execute(text("SELECT MIN(placed_at) FROM orders")).scalar()
        start = min(datetime.fromisoformat(first).replace(tzinfo=UTC) if first else cutoff, cutoff)
        periods = tuple(offset_periods(tz, start, cutoff))
        quarters = tuple(quarter_starts(tz, start, cutoff))
    return RunContext(
        run_id=run.id,
        as_of=run.as_of,
        as_of_day=day_number(run.as_of),
        cutoff=cutoff,
        dialect=Dialect(conn.dialect.name, tz, periods, quarters),
        churn_window_days=shop.churn_window_days,
        declared_weight_pct=shop.trait_declared_weight_pct,
        observed_weight_pct=shop.trait_observed_weight_pct,
        threshold_pct=shop.trait_threshold_pct,
        rfm_grid=grid,
        exit_survey_ids=tuple(exit_surveys),
        previous_run_id=previous,
    )


def _tune(conn: Connection, ctx: RunContext) -> None:
    """Sorting and grouping millions of rows wants memory, for this connection only."""
    if ctx.dialect.name == "postgresql":
        conn.execute(text("SET work_mem = '256MB'"))
    else:
        conn.execute(text("PRAGMA temp_store = MEMORY"))
        conn.execute(text("PRAGMA cache_size = -262144"))  # 256 MiB
    conn.commit()


def _report(run_id: int, index: int, total: int, name: str, progress) -> None:
    db.session.execute(update(RefreshRun).where(RefreshRun.id == run_id).values(step=name))
    db.session.commit()
    if progress:
        progress(index, total, name)


PROFILE_COLUMNS = (
    "frequency, monetary_cents, aov_cents, recency_days, r, f, m, rfm_segment, lifecycle, "
    "is_frequent, is_seasonal, seasonal_quarter, is_vip, is_cart_abandoner, objection, "
    "abandoned_at, is_class_taker, is_engaged"
)
TRAIT_COLUMNS = (
    "dimension, value, score, declared_values, declared_at, declared_response_id, "
    "observed_value, observed_share, observed_window"
)


def _copy_results(conn: Connection, ctx: RunContext) -> None:
    """Staging -> the live tables under this run's id, a chunk of customers at a time."""
    d = ctx.dialect
    run = ctx.run_id
    statements = (
        f"""INSERT INTO customer_profiles (run_id, customer_id, first_order_on, last_order_on,
                                           {PROFILE_COLUMNS})
            SELECT {run}, customer_id, {d.date_of_day("first_day")}, {d.date_of_day("last_day")},
                   {PROFILE_COLUMNS}
            FROM st_profiles WHERE customer_id >= :lo AND customer_id < :hi""",
        f"""INSERT INTO customer_category_stats (run_id, customer_id, category, orders,
                                                 spend_cents, spend_365_cents, last_purchase_on)
            SELECT {run}, customer_id, category, orders, spend, spend_365,
                   {d.date_of_day(d.day("last_at"))}
            FROM st_cat WHERE customer_id >= :lo AND customer_id < :hi""",
        f"""INSERT INTO customer_traits (run_id, customer_id, {TRAIT_COLUMNS})
            SELECT {run}, customer_id, {TRAIT_COLUMNS}
            FROM st_traits WHERE customer_id >= :lo AND customer_id < :hi""",
    )
    low, high = conn.execute(
        text("SELECT MIN(customer_id), MAX(customer_id) FROM st_profiles")
    ).one()
    if low is None:
        return
    for lo in range(low, high + 1, CHUNK_CUSTOMERS):
        for statement in statements:
            conn.execute(text(statement), {"lo": lo, "hi": lo + CHUNK_CUSTOMERS})
        conn.commit()


def _stage_segments(conn: Connection, ctx: RunContext) -> None:
    """Every segment's members as of the run, from the results just copied in under its id."""
    skipped = segments.stage_members(
        conn, ctx.run_id, ctx.as_of, ctx.dialect.tz, ctx.previous_run_id, CHUNK_CUSTOMERS
    )
    ctx.notes["segments"] = {
        str(segment_id): members
        for segment_id, members in conn.execute(
            text("SELECT segment_id, members FROM segment_run_stats WHERE run_id = :r"),
            {"r": ctx.run_id},
        )
    }
    if skipped:
        ctx.notes["segments_skipped"] = skipped


def _counts(conn: Connection) -> dict:
    def grouped(sql: str) -> dict:
        return {str(k) if k is not None else "": n for k, n in conn.execute(text(sql))}

    behaviours = conn.execute(
        text(
            """SELECT COUNT(*), SUM(CASE WHEN frequency > 0 THEN 1 ELSE 0 END),
                      SUM(CASE WHEN is_frequent THEN 1 ELSE 0 END),
                      SUM(CASE WHEN is_seasonal THEN 1 ELSE 0 END),
                      SUM(CASE WHEN is_vip THEN 1 ELSE 0 END),
                      SUM(CASE WHEN is_cart_abandoner THEN 1 ELSE 0 END),
                      SUM(CASE WHEN is_class_taker THEN 1 ELSE 0 END),
                      SUM(CASE WHEN is_engaged THEN 1 ELSE 0 END),
                      COALESCE(SUM(monetary_cents), 0)
               FROM st_profiles"""
        )
    ).one()
    grid = [[0] * 5 for _ in range(5)]
    for r, f, n in conn.execute(
        text("SELECT r, f, COUNT(*) FROM st_profiles WHERE r IS NOT NULL GROUP BY r, f")
    ):
        grid[r - 1][f - 1] = n
    trait_counts: dict[str, dict[str, int]] = {}
    for dimension, value, n in conn.execute(
        text("SELECT dimension, value, COUNT(*) FROM st_traits GROUP BY dimension, value")
    ):
        trait_counts.setdefault(dimension, {})[value] = n
    names = ("frequent", "seasonal", "vip", "cart_abandoner", "class_taker", "engaged")
    return {
        "customers": behaviours[0],
        "with_orders": behaviours[1] or 0,
        "revenue_cents": int(behaviours[8]),
        "behaviours": {name: int(n or 0) for name, n in zip(names, behaviours[2:8], strict=True)},
        "rfm_segments": grouped(
            "SELECT rfm_segment, COUNT(*) FROM st_profiles WHERE r IS NOT NULL GROUP BY rfm_segment"
        ),
        "lifecycle": grouped("SELECT lifecycle, COUNT(*) FROM st_profiles GROUP BY lifecycle"),
        "rfm_grid": grid,  # rfm_grid[r - 1][f - 1]
        "traits": trait_counts,
    }


def _movement(conn: Connection, previous: int | None) -> list[dict] | None:
    """From -> to RFM segment counts since the run that is current until the swap. A
    customer the previous run did not know comes "from" None with "new" true; one it knew
    without a segment (no counted orders) comes from None with "new" false."""
    if previous is None:
        return None
    rows = conn.execute(
        text(
            """SELECT p.rfm_segment, s.rfm_segment,
                      CASE WHEN p.customer_id IS NULL THEN 1 ELSE 0 END, COUNT(*)
               FROM st_profiles s LEFT JOIN customer_profiles p
                 ON p.run_id = :previous AND p.customer_id = s.customer_id
               GROUP BY p.rfm_segment, s.rfm_segment,
                        CASE WHEN p.customer_id IS NULL THEN 1 ELSE 0 END"""
        ),
        {"previous": previous},
    )
    return [
        {"from": before, "to": after, "customers": n, "new": bool(new)}
        for before, after, new, n in sorted(rows, key=lambda r: (str(r[0]), str(r[1]), r[2]))
    ]


def _fail_interrupted_runs() -> None:
    """Under the lock nothing else runs: a run still marked running was killed."""
    db.session.execute(
        update(RefreshRun)
        .where(RefreshRun.status == "running")
        .values(status="failed", error="interrupted: the process running it stopped")
    )
    db.session.commit()


RESULT_TABLES = (
    "customer_profiles",
    "customer_category_stats",
    "customer_traits",
    "segment_members",
)


def purge_old_results(engine: Engine) -> int:
    """Delete the rows of every run but the current and the previous one; returns how
    many runs were purged. Chunked like the copy, so writers are never held up for long."""
    with engine.connect() as conn:
        live = conn.execute(
            select(RefreshRun.id, RefreshRun.previous_run_id)
            .where(RefreshRun.status == "done")
            .order_by(RefreshRun.id.desc())
            .limit(1)
        ).first()
        keep = {live[0], live[1]} - {None} if live else set()
        # A failed run's figures never show; a done run's stay for the size chart.
        conn.execute(
            text(
                "DELETE FROM segment_run_stats WHERE run_id IN "
                "(SELECT id FROM refresh_runs WHERE status = 'failed')"
            )
        )
        conn.commit()
        candidates = conn.execute(select(RefreshRun.id).where(RefreshRun.id.not_in(keep))).scalars()
        purged = 0
        for run_id in list(candidates):
            found = False
            for table in RESULT_TABLES:
                bounds = conn.execute(
                    text(
                        f"SELECT MIN(customer_id), MAX(customer_id) FROM {table} WHERE run_id = :r"
                    ),
                    {"r": run_id},
                ).one()
                if bounds[0] is None:
                    continue
                found = True
                for lo in range(bounds[0], bounds[1] + 1, CHUNK_CUSTOMERS):
                    conn.execute(
                        text(
                            f"DELETE FROM {table} WHERE run_id = :r "
                            "AND customer_id >= :lo AND customer_id < :hi"
                        ),
                        {"r": run_id, "lo": lo, "hi": lo + CHUNK_CUSTOMERS},
                    )
                    conn.commit()
            purged += found
        return purged


def _purge_safely(engine: Engine) -> None:
    try:
        purge_old_results(engine)
    except Exception:  # the results are in; old rows wait for the next run
        log.exception("purging old refresh results failed")


@handler("refresh")
def refresh_task(task: Task, progress: TaskProgress) -> dict:
    """A refresh queued from the browser: params {"as_of": "YYYY-MM-DD" or absent}."""
    as_of = task.params.get("as_of")
    run = run_refresh(
        as_of=date.fromisoformat(as_of) if as_of else None,
        trigger=task.params.get("trigger", "browser"),
        progress=progress,
    )
    return {"run_id": run.id, "as_of": run.as_of.isoformat(), "counts": run.counts}
