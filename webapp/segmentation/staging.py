"""What every step of a refresh run shares: the run's parameters and its staging tables.

Staging tables are temporary tables on the run's own connection: a run that dies takes them
with it, and on SQLite writing them never takes the main database's write lock, so survey
answers keep being written while a run computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, bindparam, text

from webapp.segmentation.dialect import Dialect, local_midnight_utc


@dataclass(frozen=True)
class RunContext:
    run_id: int
    as_of: date
    as_of_day: int  # the as-of day as a day number (webapp.segmentation.dialect)
    cutoff: datetime  # UTC start of the day after as_of: later orders do not exist yet
    dialect: Dialect
    churn_window_days: int
    declared_weight_pct: int
    observed_weight_pct: int
    threshold_pct: int
    rfm_grid: dict  # (r, f) -> the owner's segment name (webapp.segmentation.rfm)
    exit_survey_ids: tuple[int, ...]  # surveys shown on exit intent
    previous_run_id: int | None = None  # the run that is current until this one is swapped in
    notes: dict = field(default_factory=dict)  # what steps report for the run's counts

    def since(self, days: int) -> object:
        """Bind value of the UTC instant where "within `days` days of the as-of day" begins:
        a day counts when as_of_day - day <= days."""
        start = local_midnight_utc(self.as_of - timedelta(days=days), self.dialect.tz)
        return self.dialect.ts(start)

    @property
    def cutoff_param(self) -> object:
        return self.dialect.ts(self.cutoff)


def stage(
    conn: Connection,
    ctx: RunContext,
    name: str,
    select_sql: str,
    key: str,
    params: dict | None = None,
    lists: tuple[str, ...] = (),
) -> None:
    """(Re)create temporary table `name` from a SELECT, keyed by `key` (unique). `lists`
    names the parameters that are lists (`x IN :name`)."""
    conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
    statement = text(f"CREATE TEMPORARY TABLE {name} AS {select_sql}")
    if lists:
        statement = statement.bindparams(*(bindparam(p, expanding=True) for p in lists))
    conn.execute(statement, params or {})
    conn.execute(text(f"CREATE UNIQUE INDEX ix_{name} ON {name} ({key})"))
    analyze = ctx.dialect.analyze(name)
    if analyze:
        conn.execute(text(analyze))
    # Each step is its own transaction: on SQLite a long-open read would make the run's
    # later writes to the main database fail against answers written in between.
    conn.commit()
