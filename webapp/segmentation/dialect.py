"""The SQL fragments that SQLite and PostgreSQL spell differently, for the refresh.

Days are whole numbers (days since 1970-01-01 in the shop's time zone), so that recency and
windows are integer arithmetic on both engines. PostgreSQL converts time zones itself; SQLite
knows only UTC, so there a timestamp is shifted by the offset of the period it falls in, read
from the shop's time zone (zoneinfo) for the span of the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

EPOCH = date(1970, 1, 1)
_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores a DateTime on SQLite


def day_number(day: date) -> int:
    return (day - EPOCH).days


def local_midnight_utc(day: date, tz: ZoneInfo) -> datetime:
    """The instant the shop's day begins, in UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def offset_periods(tz: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """(UTC instant from which it applies, offset in seconds) for every UTC offset the zone
    uses between start and end; the first entry applies from the beginning of time."""

    def offset(at: datetime) -> int:
        return int(at.astimezone(tz).utcoffset().total_seconds())

    periods: list[tuple[datetime, int]] = []
    at = start - timedelta(days=1)
    current = offset(at)
    periods.append((at, current))
    while at < end:
        step = min(at + timedelta(days=1), end + timedelta(days=1))
        if offset(step) != current:
            low, high = at, step  # bisect to the minute: zones change on whole minutes
            while high - low > timedelta(minutes=1):
                mid = low + (high - low) / 2
                low, high = (mid, high) if offset(mid) == current else (low, mid)
            high = high.replace(second=0, microsecond=0)
            if offset(high - timedelta(minutes=1)) != current:
                high -= timedelta(minutes=1)
            current = offset(step)
            periods.append((high, current))
        at = step
    return periods


def quarter_starts(tz: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """(UTC instant the shop's quarter begins, year x 4 + quarter - 1) from the quarter
    holding start to the one holding end."""
    local = start.astimezone(tz)
    year, quarter = local.year, (local.month - 1) // 3
    result = []
    while True:
        begins = local_midnight_utc(date(year, 3 * quarter + 1, 1), tz)
        if begins > end:
            return result
        result.append((begins, year * 4 + quarter))
        year, quarter = (year + 1, 0) if quarter == 3 else (year, quarter + 1)


@dataclass(frozen=True)
class Dialect:
    """Fragments for one engine and one shop time zone."""

    name: str  # sqlite | postgresql
    tz: ZoneInfo
    periods: tuple[tuple[datetime, int], ...] = ()
    quarters: tuple[tuple[datetime, int], ...] = ()  # SQLite: (first instant, quarter key)

    def ts(self, value: datetime):
        """A UTC instant as a bind parameter that compares with stored timestamps."""
        if self.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None).strftime(_SQLITE_TS)
        return value

    def local(self, column: str) -> str:
        """A timestamp column as local wall time in the shop's zone."""
        if self.name == "postgresql":
            return f"({column} AT TIME ZONE '{self.tz.key}')"
        if len(self.periods) <= 1:
            seconds = self.periods[0][1] if self.periods else 0
            return f"datetime({column}, '{seconds:+d} seconds')" if seconds else column
        cases = " ".join(
            f"WHEN {column} < '{start.replace(tzinfo=None):%Y-%m-%d %H:%M:%S}' "
            f"THEN '{before:+d} seconds'"
            for (start, _), (_, before) in zip(self.periods[1:], self.periods, strict=False)
        )
        return f"datetime({column}, CASE {cases} ELSE '{self.periods[-1][1]:+d} seconds' END)"

    def day(self, column: str) -> str:
        """The shop's day number of a timestamp column."""
        local = self.local(column)
        if self.name == "postgresql":
            return f"(CAST({local} AS DATE) - DATE '1970-01-01')"
        return f"CAST(julianday({local}) - 2440587.5 AS INTEGER)"

    def quarter_key(self, column: str) -> str:
        """year x 4 + quarter - 1 of a timestamp column, in the shop's zone. On SQLite, a
        CASE over the quarters' first instants: comparing stored text is much cheaper than
        converting every order's timestamp."""
        if self.name == "postgresql":
            local = self.local(column)
            return (
                f"CAST(EXTRACT(YEAR FROM {local}) * 4 + EXTRACT(QUARTER FROM {local}) - 1 "
                "AS INTEGER)"
            )
        cases = "".join(
            f"WHEN {column} < '{start.replace(tzinfo=None):%Y-%m-%d %H:%M:%S}' THEN {key - 1} "
            for start, key in self.quarters[1:]
        )
        last = self.quarters[-1][1] if self.quarters else 0
        # Never a bare constant: SQLite reads GROUP BY <integer> as a column position.
        return f"(CASE {cases}WHEN {column} IS NOT NULL THEN {last} END)"

    def date_of_day(self, expr: str) -> str:
        """A day number as a DATE value of the engine (text YYYY-MM-DD on SQLite)."""
        if self.name == "postgresql":
            return f"(DATE '1970-01-01' + CAST({expr} AS INTEGER))"
        return f"date(({expr}) * 86400, 'unixepoch')"

    def join_sorted(self, column: str) -> str:
        """Comma-joined values of a group; on SQLite the rows must arrive sorted."""
        if self.name == "postgresql":
            return f"string_agg({column}, ',' ORDER BY {column})"
        return f"group_concat({column}, ',')"

    def analyze(self, table: str) -> str | None:
        """Temporary tables get no statistics unless asked (PostgreSQL plans blind)."""
        return f"ANALYZE {table}" if self.name == "postgresql" else None
