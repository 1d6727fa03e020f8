"""When periodic jobs fire and which period each firing is, with a frozen "now": daylight-
saving changes neither skip nor double a run, and downtime is caught up once."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from webapp.scheduler.periods import (
    Schedule,
    next_fire,
    period_key,
    previous_fire,
)
from webapp.scheduler.process import PeriodTrigger

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
QUARTERLY = Schedule("quarterly", time(3, 0))


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fires(schedule: Schedule, tz: ZoneInfo, start: datetime, count: int):
    """The next ``count`` firings after ``start``: [(fire date, instant)]."""
    found = []
    after = start
    for _ in range(count):
        fire_date, instant = next_fire(schedule, tz, after)
        found.append((fire_date, instant))
        after = instant
    return found


def test_the_default_refresh_fires_at_three_on_the_first_day_of_each_quarter_in_shop_time():
    now = utc(2026, 11, 23, 12)
    fire_date, instant = next_fire(QUARTERLY, BERLIN, now)
    assert fire_date == date(2027, 1, 1)
    assert instant == utc(2027, 1, 1, 2)  # 03:00 CET
    assert period_key("refresh", QUARTERLY, fire_date) == "refresh:2027-Q1"
    fire_date, instant = previous_fire(QUARTERLY, BERLIN, now)
    assert (fire_date, instant) == (date(2026, 10, 1), utc(2026, 10, 1, 1))  # 03:00 CEST
    assert period_key("refresh", QUARTERLY, fire_date) == "refresh:2026-Q4"
    whole_year = fires(QUARTERLY, BERLIN, utc(2026, 12, 31), 4)
    assert [d for d, _ in whole_year] == [date(2027, m, 1) for m in (1, 4, 7, 10)]
    assert {i.astimezone(BERLIN).time() for _, i in whole_year} == {time(3, 0)}


def test_a_firing_is_in_its_period_from_its_instant_on_and_not_a_moment_before():
    fire = utc(2026, 10, 1, 1)  # 03:00 CEST, 1 October
    assert previous_fire(QUARTERLY, BERLIN, fire)[0] == date(2026, 10, 1)
    assert previous_fire(QUARTERLY, BERLIN, fire - timedelta(microseconds=1))[0] == date(2026, 7, 1)
    assert next_fire(QUARTERLY, BERLIN, fire)[1] == utc(2027, 1, 1, 2)


@pytest.mark.parametrize(
    ("schedule", "fire_date", "key"),
    [
        (Schedule("quarterly"), date(2026, 10, 1), "refresh:2026-Q4"),
        (Schedule("monthly"), date(2026, 11, 1), "refresh:2026-11"),
        (Schedule("weekly"), date(2026, 11, 16), "refresh:2026-W47"),
        (Schedule("weekly", weekday=6), date(2027, 1, 3), "refresh:2026-W53"),
        (Schedule("daily"), date(2026, 11, 23), "refresh:2026-11-23"),
    ],
)
def test_each_period_has_its_own_key(schedule, fire_date, key):
    assert period_key("refresh", schedule, fire_date) == key


@pytest.mark.parametrize("tz", [BERLIN, NEW_YORK, ZoneInfo("Australia/Sydney")])
@pytest.mark.parametrize("weekday", [0, 6])
def test_weekly_runs_across_both_dst_changes_of_a_year_are_never_skipped_or_doubled(tz, weekday):
    schedule = Schedule("weekly", time(2, 30), weekday)
    firings = fires(schedule, tz, utc(2026, 1, 1), 53)
    dates = [d for d, _ in firings]
    # One firing per week, every week, on the chosen day.
    assert all(
        later - earlier == timedelta(days=7)
        for earlier, later in zip(dates, dates[1:], strict=False)
    )
    assert {d.weekday() for d in dates} == {weekday}
    keys = [period_key("refresh", schedule, d) for d in dates]
    assert len(set(keys)) == len(keys)
    # Instants strictly increase, 7 days apart give or take the hour the clocks moved.
    gaps = {later[1] - earlier[1] for earlier, later in zip(firings, firings[1:], strict=False)}
    assert gaps <= {timedelta(hours=h) for h in (167, 168, 169)}
    # 02:30 exists on every day but the one the clocks jump over it: then an hour later.
    for fire_date, instant in firings:
        local = instant.astimezone(tz)
        assert local.date() == fire_date
        assert local.time() in (time(2, 30), time(3, 30))


def test_a_time_the_clocks_skip_runs_the_gap_later_that_same_day():
    # New York springs forward at 02:00 on 8 March 2026: 02:30 does not exist that day.
    daily = Schedule("daily", time(2, 30))
    firings = fires(daily, NEW_YORK, utc(2026, 3, 6, 12), 3)
    assert firings == [
        (date(2026, 3, 7), utc(2026, 3, 7, 7, 30)),  # 02:30 EST
        (date(2026, 3, 8), utc(2026, 3, 8, 7, 30)),  # 03:30 EDT: the gap later, not skipped
        (date(2026, 3, 9), utc(2026, 3, 9, 6, 30)),  # 02:30 EDT
    ]


def test_a_time_that_happens_twice_runs_once_at_its_first_occurrence():
    # New York falls back at 02:00 on 1 November 2026: 01:30 happens twice that day.
    daily = Schedule("daily", time(1, 30))
    firings = fires(daily, NEW_YORK, utc(2026, 10, 31, 12), 2)
    assert firings == [
        (date(2026, 11, 1), utc(2026, 11, 1, 5, 30)),  # 01:30 EDT
        (date(2026, 11, 2), utc(2026, 11, 2, 6, 30)),  # 01:30 EST, the next day
    ]
    # During the second 01:30-02:00 the latest firing is still the first one: same key.
    second_pass = utc(2026, 11, 1, 6, 45)  # 01:45 EST
    fire_date, instant = previous_fire(daily, NEW_YORK, second_pass)
    assert (fire_date, instant) == (date(2026, 11, 1), utc(2026, 11, 1, 5, 30))
    assert next_fire(daily, NEW_YORK, second_pass)[0] == date(2026, 11, 2)


def test_monthly_and_quarterly_keep_their_wall_time_through_summer_time():
    monthly = Schedule("monthly", time(3, 0))
    firings = fires(monthly, BERLIN, utc(2026, 1, 15), 12)
    offsets = [instant.astimezone(BERLIN).utcoffset() for _, instant in firings]
    assert [d.month for d, _ in firings] == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 1]
    assert {instant.astimezone(BERLIN).time() for _, instant in firings} == {time(3, 0)}
    assert set(offsets) == {timedelta(hours=1), timedelta(hours=2)}


def test_after_downtime_only_the_latest_period_is_due():
    # Stopped from mid-2026 to mid-2027: three quarters went by; one key is due, the latest.
    now = utc(2027, 7, 15, 9)
    fire_date, _ = previous_fire(QUARTERLY, BERLIN, now)
    assert period_key("refresh", QUARTERLY, fire_date) == "refresh:2027-Q3"


@pytest.mark.parametrize("tz", [BERLIN, NEW_YORK])
def test_apscheduler_fires_at_the_times_the_schedule_page_shows(tz):
    schedule = Schedule("weekly", time(2, 30), 6)
    trigger = PeriodTrigger(schedule, tz)
    now = utc(2026, 3, 1)
    expected = [instant for _, instant in fires(schedule, tz, now, 40)]
    got, previous = [], None
    for _ in range(40):
        previous = trigger.get_next_fire_time(previous, now)
        got.append(previous)
    assert got == expected


def test_a_schedule_refuses_what_cannot_be():
    with pytest.raises(ValueError, match="hourly"):
        Schedule("hourly")
    with pytest.raises(ValueError, match="weekday"):
        Schedule("weekly", weekday=7)
