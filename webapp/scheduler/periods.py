"""When a periodic job fires, and the key of the period each firing belongs to. Free of Flask
and of the clock: every function takes the moment it reasons about.

A schedule fires once per period (quarter, month, ISO week, day) at a wall-clock time in the
shop's time zone. Each period has exactly one local date on which it fires, so a daylight-
saving change can neither skip nor double a period: a wall time that does not exist that day
(the clocks jumped over it) fires the gap's length later, as PEP 495 reads it, and a wall
time that happens twice fires at its first occurrence only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

FREQUENCIES = ("quarterly", "monthly", "weekly", "daily")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Schedule:
    frequency: str  # one of FREQUENCIES
    at: time = time(3, 0)  # wall-clock time in the shop's time zone
    weekday: int = 0  # weekly only: Monday 0 ... Sunday 6

    def __post_init__(self) -> None:
        if self.frequency not in FREQUENCIES:
            raise ValueError(f"{self.frequency!r} is not one of {', '.join(FREQUENCIES)}")
        if not 0 <= self.weekday <= 6:
            raise ValueError(f"weekday {self.weekday} is not 0 (Monday) to 6 (Sunday)")

    def describe(self) -> str:
        """In the owner's words: "quarterly, 03:00 on 1 Jan, Apr, Jul and Oct"."""
        at = self.at.strftime("%H:%M")
        if self.frequency == "quarterly":
            return f"quarterly, {at} on 1 Jan, Apr, Jul and Oct"
        if self.frequency == "monthly":
            return f"monthly, {at} on the 1st"
        if self.frequency == "weekly":
            return f"weekly, {at} on {WEEKDAYS[self.weekday]}s"
        return f"daily, {at}"


def parse_time(text: str) -> time:
    """'03:00' -> time(3, 0)."""
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def period_date(schedule: Schedule, day: date) -> date:
    """The local date on which the period that contains ``day`` fires."""
    if schedule.frequency == "quarterly":
        return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    if schedule.frequency == "monthly":
        return date(day.year, day.month, 1)
    if schedule.frequency == "weekly":
        monday = day - timedelta(days=day.weekday())
        return monday + timedelta(days=schedule.weekday)
    return day


def shift(schedule: Schedule, fire_date: date, periods: int) -> date:
    """The fire date ``periods`` periods after (or before) ``fire_date``."""
    if schedule.frequency in ("quarterly", "monthly"):
        step = 3 if schedule.frequency == "quarterly" else 1
        months = fire_date.year * 12 + fire_date.month - 1 + step * periods
        return date(months // 12, months % 12 + 1, 1)
    days = 7 if schedule.frequency == "weekly" else 1
    return fire_date + timedelta(days=days * periods)


def fire_time(schedule: Schedule, fire_date: date, tz: ZoneInfo) -> datetime:
    """The instant (UTC) at which the period of ``fire_date`` fires.

    fold=0: a wall time the clocks skipped maps with the offset before the change (so it
    fires the gap's length later); one that happens twice maps to its first occurrence.
    """
    local = datetime.combine(fire_date, schedule.at, tzinfo=tz).replace(fold=0)
    return local.astimezone(UTC)


def previous_fire(schedule: Schedule, tz: ZoneInfo, now: datetime) -> tuple[date, datetime]:
    """The latest firing at or before ``now``: (its period's fire date, its instant in UTC)."""
    fire_date = shift(schedule, period_date(schedule, now.astimezone(tz).date()), 1)
    while (instant := fire_time(schedule, fire_date, tz)) > now:
        fire_date = shift(schedule, fire_date, -1)
    return fire_date, instant


def next_fire(schedule: Schedule, tz: ZoneInfo, after: datetime) -> tuple[date, datetime]:
    """The first firing strictly after ``after``: (its fire date, its instant in UTC)."""
    fire_date, _ = previous_fire(schedule, tz, after)
    fire_date = shift(schedule, fire_date, 1)
    return fire_date, fire_time(schedule, fire_date, tz)


def period_name(schedule: Schedule, fire_date: date) -> str:
    """2026-Q4 (quarterly), 2026-11 (monthly), 2026-W47 (ISO week), 2026-11-23 (daily)."""
    if schedule.frequency == "quarterly":
        return f"{fire_date.year}-Q{(fire_date.month - 1) // 3 + 1}"
    if schedule.frequency == "monthly":
        return f"{fire_date.year}-{fire_date.month:02d}"
    if schedule.frequency == "weekly":
        iso = fire_date.isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    return fire_date.isoformat()


def period_key(job: str, schedule: Schedule, fire_date: date) -> str:
    """The idempotency key of one period's run: ``refresh:2026-Q4``."""
    return f"{job}:{period_name(schedule, fire_date)}"
