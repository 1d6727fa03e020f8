"""Real scheduler processes (`python -m webapp.cli scheduler`) against one database, on SQLite
and PostgreSQL: two at once run each job once; one killed in the middle of a refresh is
finished by another, once, with the previous segments live meanwhile; a quarter missed while
stopped runs once at the next start; SIGTERM waits for the job under way.

The test config makes the scheduler poll and beat every half second and hold a lease for
three seconds, so these take seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from tests.factories import add_customer, add_order
from webapp.extensions import db
from webapp.models import JobRun, JobSetting, RefreshRun, SchedulerHeartbeat, SegmentMember
from webapp.models._types import utcnow
from webapp.scheduler import schedules
from webapp.scheduler.jobs import REFRESH
from webapp.scheduler.periods import period_key, previous_fire, shift
from webapp.scheduler.runner import run_now
from webapp.segmentation import segments
from webapp.segmentation.refresh import current_run_id, run_refresh

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
WAIT = 60  # seconds before a wait gives up

# A scheduler whose refresh stops, as if stuck, once the new run's memberships are written
# and just before the swap (argv: marker file, seconds to stay there).
STALLING_SCHEDULER = """
import sys, time
from pathlib import Path
from zoneinfo import ZoneInfo
from webapp.segmentation import segments

real = segments.stage_members

def stage_then_stall(conn, run_id, *args):
    skipped = real(conn, run_id, *args)
    Path(sys.argv[1]).write_text(str(run_id))
    time.sleep(float(sys.argv[2]))
    return skipped

segments.stage_members = stage_then_stall
from webapp.cli import main
main(["scheduler"])
"""


class Scheduler:
    """One scheduler process; its log is kept in a file for the assertions and for failures."""

    def __init__(self, env: dict, log: Path, stall: tuple[Path, float] | None = None):
        self.log = log
        if stall is None:
            args = [sys.executable, "-m", "webapp.cli", "scheduler"]
        else:
            marker, seconds = stall
            args = [sys.executable, "-c", STALLING_SCHEDULER, str(marker), str(seconds)]
        self.handle = open(log, "w")  # noqa: SIM115  (closed in stop())
        self.process = subprocess.Popen(
            args, env=env, stdout=self.handle, stderr=subprocess.STDOUT, cwd=os.getcwd()
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text()

    def terminate(self, timeout: float = WAIT) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=WAIT)

    def stop(self) -> None:
        self.kill()
        self.handle.close()


@pytest.fixture
def start_scheduler(app, tmp_path) -> Iterator[Callable[..., Scheduler]]:
    """Start scheduler processes on the test's database; all are killed at the end."""
    started: list[Scheduler] = []
    env = {
        **os.environ,
        "PATCHWORK_CONFIG": "test",
        "DATABASE_URL": app.config["DATABASE_URL"],
        "PATCHWORK_INSTANCE": str(tmp_path),
        "UPLOAD_DIR": str(tmp_path / "uploads"),
    }

    def start(stall: tuple[Path, float] | None = None, **settings: str) -> Scheduler:
        log = tmp_path / f"scheduler-{len(started)}.log"
        scheduler = Scheduler({**env, **settings}, log, stall)
        started.append(scheduler)
        return scheduler

    yield start
    for scheduler in started:
        scheduler.stop()
    db.session.rollback()


def fresh(statement):
    """Read the database as it is now (a new transaction: SQLite reads a snapshot)."""
    db.session.rollback()
    return db.session.scalars(statement)


def wait_for(what: str, condition: Callable[[], object], *schedulers: Scheduler, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        for scheduler in schedulers:
            assert scheduler.alive(), f"a scheduler exited early:\n{scheduler.output()}"
        if time.monotonic() > deadline:
            logs = "\n".join(s.output() for s in schedulers)
            pytest.fail(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.1)


def run_of(key: str) -> JobRun | None:
    return fresh(select(JobRun).where(JobRun.key == key)).one_or_none()


def done(key: str) -> Callable[[], JobRun | None]:
    def check():
        run = run_of(key)
        return run if run is not None and run.status == "done" else None

    return check


def heartbeats() -> list[SchedulerHeartbeat]:
    return list(fresh(select(SchedulerHeartbeat)))


def refresh_runs() -> list[RefreshRun]:
    return list(fresh(select(RefreshRun).order_by(RefreshRun.id)))


def due_quarter(since: datetime = LONG_AGO) -> str:
    """Make the quarterly refresh due now (its schedule in force for years, the current
    quarter not done); returns the current quarter's key."""
    schedules.ensure_settings()
    setting = db.session.get(JobSetting, "refresh")
    setting.effective_since = since
    db.session.commit()
    tz = schedules.shop_timezone()
    fire_date, _ = previous_fire(schedules.schedule_of(setting), tz, utcnow())
    return period_key("refresh", schedules.schedule_of(setting), fire_date)


def a_shop_with_segments():
    """Ada and Bob have ordered; Cy orders after the first refresh, so the next run adds him."""
    ada = add_customer("Ada", email="ada@example.com")
    bob = add_customer("Bob", email="bob@example.com")
    cy = add_customer("Cy", email="cy@example.com")
    add_order(ada, "#A1", 2500, placed_at=utcnow() - timedelta(days=20))
    add_order(bob, "#B1", 9000, placed_at=utcnow() - timedelta(days=400))
    rules = {"match": "all", "rules": [{"field": "frequency", "op": "ge", "value": 1}]}
    buyers = segments.create_segment(db.session, "Buyers", rules)
    db.session.commit()
    first = run_refresh(trigger="cli")
    add_order(cy, "#C1", 500, placed_at=utcnow() - timedelta(days=1))
    return first, buyers, cy


def members(segment_id: int, run_id: int) -> set[int]:
    return set(
        fresh(
            select(SegmentMember.customer_id).where(
                SegmentMember.segment_id == segment_id, SegmentMember.run_id == run_id
            )
        )
    )


def jobs_history(app) -> dict:
    env = {**os.environ, "PATCHWORK_CONFIG": "test", "DATABASE_URL": app.config["DATABASE_URL"]}
    result = subprocess.run(
        [sys.executable, "-m", "webapp.cli", "jobs", "history", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- the tests ---------------------------------------------------------------------------


def test_two_schedulers_run_a_job_due_now_once(app, start_scheduler):
    add_order(add_customer("Ada", email="ada@example.com"), "#1", 2500)
    key = due_quarter()
    housekeeping = schedules.ensure_settings()["housekeeping"]
    housekeeping.effective_since = LONG_AGO
    db.session.commit()
    tz = schedules.shop_timezone()
    schedule = schedules.schedule_of(housekeeping)
    housekeeping_key = period_key(
        "housekeeping", schedule, previous_fire(schedule, tz, utcnow())[0]
    )

    one, two = start_scheduler(), start_scheduler()
    run = wait_for(f"{key} to be done", done(key), one, two)
    wait_for(f"{housekeeping_key} to be done", done(housekeeping_key), one, two)
    wait_for("both schedulers' heartbeats", lambda: len(heartbeats()) == 2, one, two)
    time.sleep(2)  # several more polls of both: nothing runs again

    assert run.attempts == 1 and run.trigger == "catch-up"
    assert run_of(housekeeping_key).attempts == 1
    assert [(r.trigger, r.status) for r in refresh_runs()] == [("schedule", "done")]
    # "Run now" goes through the scheduler's queue poll, once, under a key of its own.
    queued = run_now(REFRESH)
    manual = wait_for("the run-now to be done", done(queued.key), one, two)
    assert manual.attempts == 1
    assert [(r.trigger, r.status) for r in refresh_runs()] == [
        ("schedule", "done"),
        ("manual", "done"),
    ]
    assert one.terminate() == 0 and two.terminate() == 0
    assert all(beat.stopped_at is not None for beat in heartbeats())
    logs = one.output() + two.output()
    assert f"job refresh: {key} started (catch-up, attempt 1)" in logs
    assert logs.count(f"job refresh: {key} started") == 1
    assert logs.count(f"job refresh: {queued.key} started") == 1


@pytest.mark.parametrize("finisher", ["the other scheduler", "a restarted scheduler"])
def test_a_scheduler_killed_mid_refresh_is_finished_once_by_the_next(
    app, start_scheduler, tmp_path, finisher
):
    first, buyers, cy = a_shop_with_segments()
    key = due_quarter()
    marker = tmp_path / "stalled"
    stalled = start_scheduler(stall=(marker, 600))
    wait_for("the refresh to reach its swap", marker.exists, stalled)
    killed_run_id = int(marker.read_text())
    other = start_scheduler() if finisher == "the other scheduler" else None
    if other is not None:
        wait_for("the other scheduler's heartbeat", lambda: len(heartbeats()) == 2, other)

    # Mid-run: the new run's memberships are written, yet readers still see the previous
    # run; and the other scheduler leaves the run to the live one holding it.
    assert cy.id in members(buyers.id, killed_run_id)
    db.session.rollback()
    assert current_run_id() == first.id
    assert cy.id not in members(buyers.id, first.id)
    time.sleep(2)
    run = run_of(key)
    assert (run.status, run.attempts) == ("running", 1)

    stalled.kill()
    finishing = other or start_scheduler()
    run = wait_for(f"{key} to be finished", done(key), finishing)
    time.sleep(1.5)

    assert run.attempts == 2
    runs = refresh_runs()
    killed = next(r for r in runs if r.id == killed_run_id)
    assert killed.status == "failed" and "interrupted" in killed.error
    scheduled_done = [r for r in runs if r.trigger == "schedule" and r.status == "done"]
    assert len(scheduled_done) == 1 and run.result["run_id"] == scheduled_done[0].id
    db.session.rollback()
    assert current_run_id() == scheduled_done[0].id
    assert cy.id in members(buyers.id, scheduled_done[0].id)
    history = [r for r in jobs_history(app)["runs"] if r["key"] == key]
    assert [(r["job"], r["status"]) for r in history] == [("refresh", "done")]


def test_a_quarter_missed_while_stopped_runs_once_at_the_next_start(app, start_scheduler):
    add_order(add_customer("Ada", email="ada@example.com"), "#1", 2500)
    key = due_quarter()
    setting = db.session.get(JobSetting, "refresh")
    schedule = schedules.schedule_of(setting)
    tz = schedules.shop_timezone()
    # The last scheduled refresh was a year ago: three quarters went by while stopped.
    current = previous_fire(schedule, tz, utcnow())[0]
    year_ago = shift(schedule, current, -4)
    old_key = period_key("refresh", schedule, year_ago)
    db.session.add(
        JobRun(
            job="refresh", key=old_key, trigger="schedule", status="done", attempts=1,
            started_at=utcnow() - timedelta(days=365), finished_at=utcnow() - timedelta(days=365),
        )
    )  # fmt: skip
    db.session.commit()

    first = start_scheduler()
    wait_for(f"{key} to be done", done(key), first)
    assert first.terminate() == 0
    second = start_scheduler()  # and once more: nothing is due any longer
    wait_for("the restart's heartbeat", lambda: len(heartbeats()) == 2, second)
    time.sleep(2)
    assert second.terminate() == 0

    keys = sorted(fresh(select(JobRun.key).where(JobRun.job == "refresh")))
    assert keys == sorted([old_key, key])
    assert run_of(key).attempts == 1 and run_of(key).trigger == "catch-up"
    assert [r.trigger for r in refresh_runs()] == ["schedule"]


def test_sigterm_waits_for_the_job_under_way(app, start_scheduler, tmp_path):
    a_shop_with_segments()
    key = due_quarter()
    marker = tmp_path / "stalled"
    scheduler = start_scheduler(stall=(marker, 5))
    wait_for("the refresh to be under way", marker.exists, scheduler)

    scheduler.process.send_signal(signal.SIGTERM)
    time.sleep(1)
    assert scheduler.alive(), "it exited without waiting for the refresh"
    assert run_of(key).status == "running"
    assert scheduler.process.wait(timeout=WAIT) == 0

    run = run_of(key)
    assert (run.status, run.attempts) == ("done", 1)
    assert [r.status for r in refresh_runs()] == ["done", "done"]
    log = scheduler.output()
    assert f"stopping: waiting for {key}" in log and log.rstrip().endswith("stopped")
    (beat,) = heartbeats()
    assert beat.stopped_at is not None and beat.running == []


def test_a_campaign_scheduled_in_the_browser_is_sent_once_by_two_schedulers(
    app, owner_client, start_scheduler
):
    from tests.campaign_helpers import (
        API_KEY,
        consented,
        everyone_segment,
        make_campaign,
        ready_shop,
        refresh,
    )
    from tests.conftest import csrf_from
    from tests.sendgrid_server import FakeSendGrid
    from webapp.models import Campaign

    ready_shop(timezone="Europe/Berlin")
    for n in range(5):
        consented("Vic", n)
    refresh()
    campaign = make_campaign(everyone_segment(), status="draft", scheduled_at=None)
    page = owner_client.get(f"/campaigns/{campaign.id}")
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    response = owner_client.post(
        f"/campaigns/{campaign.id}/schedule",
        data={
            "csrf_token": csrf_from(page),
            "when": "later",
            "date": tomorrow.strftime("%Y-%m-%d"),
            "time": "10:30",
        },
        follow_redirects=True,
    )
    assert "Scheduled for" in response.get_data(as_text=True)
    stored = db.session.get(Campaign, campaign.id)
    assert stored.status == "scheduled"
    assert stored.scheduled_at.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M") == "10:30"

    with FakeSendGrid(API_KEY) as sg:
        mail = {"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": sg.url}
        first, second = start_scheduler(**mail), start_scheduler(**mail)
        wait_for("both schedulers", lambda: len(heartbeats()) == 2, first, second)
        # Time passes: the scheduled moment comes.
        stored.scheduled_at = datetime.now(UTC) + timedelta(seconds=1)
        db.session.commit()
        key = f"campaign:{campaign.id}:{stored.scheduled_at:%Y%m%dT%H%M%S}"
        wait_for("the dispatched send", done(key), first, second)
        sent = fresh(select(Campaign).where(Campaign.id == campaign.id)).one()
        assert sent.status == "sent"
        assert sorted(sg.recipients()) == [f"vic{n}@example.com" for n in range(5)]
