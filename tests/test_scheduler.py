"""The scheduler in one process: keys and locks, what is due, run now, housekeeping, the
Schedule page, the failed-job banner, /healthz and `patchwork jobs`. (Real scheduler
processes: tests/test_scheduler_processes.py.)"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from tests.conftest import csrf_from
from tests.factories import add_customer, add_order
from webapp import create_app, tasks
from webapp.extensions import db
from webapp.models import (
    JobRun,
    JobSetting,
    RefreshRun,
    SchedulerHeartbeat,
    ShopSettings,
    Task,
)
from webapp.models._types import utcnow
from webapp.scheduler import ledger, schedules
from webapp.scheduler.jobs import DISPATCHER, HOUSEKEEPING, REFRESH
from webapp.scheduler.periods import Schedule, next_fire, period_key
from webapp.scheduler.registry import (
    DISPATCH_SOURCES,
    JOBS,
    Dispatch,
    Job,
    JobBusy,
)
from webapp.scheduler.runner import KeyClash, run_keyed, run_now, run_unrecorded
from webapp.scheduler.status import next_run_of
from webapp.segmentation.refresh import refresh_lock

BERLIN = ZoneInfo("Europe/Berlin")


def text_of(response) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)).split())


def runs_of(key: str) -> list[JobRun]:
    return list(db.session.scalars(select(JobRun).where(JobRun.key == key)))


def counting_job(name: str = "counter", fail: bool = False) -> tuple[Job, list]:
    """A job that records each time its body runs (and fails when told to)."""
    calls: list = []

    def body(context):
        calls.append(context.key)
        if fail:
            raise RuntimeError("the disk is full")
        return {"call": len(calls)}

    return Job(name=name, title="Counter", about="Counts.", run=body, lock=name), calls


@pytest.fixture
def counter(monkeypatch):
    job, calls = counting_job()
    monkeypatch.setitem(JOBS, job.name, job)
    return job, calls


def set_shop_zone(name: str) -> None:
    db.session.get(ShopSettings, 1).timezone = name
    db.session.commit()


def refresh_setting(**values) -> JobSetting:
    setting = schedules.ensure_settings()["refresh"]
    for name, value in values.items():
        setattr(setting, name, value)
    db.session.commit()
    return setting


# --- keys and locks ----------------------------------------------------------------------


def test_a_key_runs_once_however_often_it_is_asked_for(app, counter):
    job, calls = counter
    first = run_keyed(job, "counter:2026-Q4", "schedule")
    second = run_keyed(job, "counter:2026-Q4", "schedule")
    assert (first.status, second.status) == ("done", "skipped")
    assert second.reason == "already done" and second.result == {"call": 1}
    assert calls == ["counter:2026-Q4"]
    (run,) = runs_of("counter:2026-Q4")
    assert (run.status, run.attempts, run.result, run.lease_owner) == ("done", 1, {"call": 1}, None)
    assert run.duration_ms is not None and run.finished_at >= run.started_at


def test_a_key_belongs_to_one_job(app, counter):
    job, _ = counter
    run_keyed(job, "counter:1", "cli")
    with pytest.raises(KeyClash, match="belongs to a run of 'counter'"):
        run_keyed(HOUSEKEEPING, "counter:1", "cli")


def test_while_another_run_of_the_job_holds_its_lock_nothing_runs(app, counter):
    job, calls = counter
    with ledger.job_lock(db.engine, job.name) as got:
        assert got
        outcome = run_keyed(job, "counter:2026-Q4", "schedule")
        with ledger.job_lock(db.engine, job.name) as again:
            assert not again  # the lock is exclusive, also within one process
    assert outcome.status == "busy" and "under way" in outcome.reason
    assert calls == [] and runs_of("counter:2026-Q4") == []
    assert run_keyed(job, "counter:2026-Q4", "schedule").status == "done"


def test_a_run_whose_runner_died_is_taken_over_once_its_lease_expires(app, counter):
    job, calls = counter
    now = utcnow()
    held = ledger.claim(
        "counter", "counter:k", "schedule", "dead-host:1:1", now, 60, max_attempts=3
    )
    assert held.status == "running"
    # A live lease: another runner leaves it alone.
    assert run_keyed(job, "counter:k", "schedule", now=now + timedelta(seconds=30)).status == "busy"
    assert calls == []
    # The lease ran out: the next runner takes the same row over and finishes it.
    later = now + timedelta(seconds=61)
    outcome = run_keyed(job, "counter:k", "schedule", now=later, max_attempts=3)
    assert outcome.status == "done" and calls == ["counter:k"]
    (run,) = runs_of("counter:k")
    assert (run.status, run.attempts, run.trigger) == ("done", 2, "schedule")


def test_a_run_interrupted_too_often_is_given_up_and_shown_as_failed(app):
    now = utcnow()
    ledger.claim("counter", "counter:k", "schedule", "dead:1:1", now, 1, max_attempts=3)
    db.session.execute(
        JobRun.__table__.update().where(JobRun.key == "counter:k").values(attempts=3)
    )
    db.session.commit()
    assert ledger.give_up_interrupted(now + timedelta(seconds=2), 3) == 1
    (run,) = runs_of("counter:k")
    db.session.refresh(run)
    assert run.status == "failed" and "interrupted 3 times" in run.error


def test_a_failed_run_is_recorded_and_retried_later_not_at_once(app, monkeypatch):
    job, calls = counting_job("flaky", fail=True)
    monkeypatch.setitem(JOBS, job.name, job)
    now = utcnow()
    outcome = run_keyed(job, "flaky:1", "schedule", now=now)
    assert outcome.status == "failed" and outcome.error == "RuntimeError: the disk is full"
    (run,) = runs_of("flaky:1")
    assert (run.status, run.error, run.attempts) == ("failed", outcome.error, 1)
    assert not schedules.needs_run(run, now + timedelta(seconds=10), 600, 3)
    assert schedules.needs_run(run, now + timedelta(seconds=601), 600, 3)
    # The scheduler retries only past the retry delay...
    not_yet = run_keyed(
        job, "flaky:1", "schedule", retry_failed_before=now - timedelta(seconds=600)
    )
    assert not_yet.status == "busy" and len(calls) == 1
    # ...and up to the attempt limit.
    later = utcnow() + timedelta(seconds=1)
    again = run_keyed(job, "flaky:1", "schedule", retry_failed_before=later, max_attempts=2)
    assert again.status == "failed" and len(calls) == 2
    spent = run_keyed(job, "flaky:1", "schedule", retry_failed_before=later, max_attempts=2)
    assert spent.status == "busy" and len(calls) == 2
    db.session.refresh(run)
    assert run.attempts == 2 and not schedules.needs_run(run, later + timedelta(days=1), 600, 2)


def test_a_refresh_that_finds_another_refresh_running_waits_its_turn(app):
    with refresh_lock(db.engine):  # a refresh started another way (patchwork refresh)
        outcome = run_keyed(REFRESH, "refresh:2026-Q4", "schedule")
    assert outcome.status == "busy" and "Another refresh is running" in outcome.reason
    (run,) = runs_of("refresh:2026-Q4")
    assert (run.status, run.attempts) == ("busy", 0)
    assert schedules.needs_run(run, utcnow(), 600, 3)
    assert run_keyed(REFRESH, "refresh:2026-Q4", "schedule").status == "done"
    db.session.refresh(run)
    assert (run.status, run.attempts) == ("done", 1)
    refresh_run = db.session.get(RefreshRun, run.result["run_id"])
    assert (refresh_run.status, refresh_run.trigger) == ("done", "schedule")


def test_the_lease_is_renewed_while_a_long_run_works(app, monkeypatch):
    app.config["SCHEDULER_LEASE_SECONDS"] = 0.6
    seen = []

    def slow(context):
        (run,) = runs_of(context.key)
        first = run.lease_expires_at
        threading.Event().wait(1.0)
        db.session.refresh(run)
        seen.append(run.lease_expires_at > first)
        return {}

    job = Job(name="slow", title="Slow", about="", run=slow, lock="slow")
    monkeypatch.setitem(JOBS, "slow", job)
    assert run_keyed(job, "slow:1", "cli").status == "done"
    assert seen == [True]


# --- what is due -------------------------------------------------------------------------


def test_a_new_schedule_does_not_run_periods_from_before_it_existed(app):
    setting = schedules.ensure_settings()["refresh"]
    now = utcnow()
    assert schedules.due(REFRESH, setting, ZoneInfo("UTC"), now) is None
    assert schedules.next_run(REFRESH, setting, ZoneInfo("UTC"), now) > now


def test_after_missing_several_quarters_only_the_current_one_is_due(app):
    now = datetime(2027, 7, 15, 9, tzinfo=UTC)
    setting = refresh_setting(effective_since=datetime(2026, 1, 1, tzinfo=UTC))
    due = schedules.due(REFRESH, setting, BERLIN, now)
    assert due.key == "refresh:2027-Q3"
    assert due.fire == datetime(2027, 7, 1, 1, tzinfo=UTC)  # 03:00 CEST
    setting.paused = True
    assert schedules.due(REFRESH, setting, BERLIN, now) is None
    assert schedules.next_run(REFRESH, setting, BERLIN, now) is None


def test_changing_or_resuming_a_schedule_takes_effect_from_now(app):
    before = datetime(2026, 1, 1, tzinfo=UTC)
    refresh_setting(effective_since=before)
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    setting = schedules.update_schedule(REFRESH, "weekly", "06:15", 2, now=now)
    assert (setting.frequency, setting.at_time, setting.weekday) == ("weekly", "06:15", 2)
    assert setting.effective_since == now
    assert schedules.next_run(REFRESH, setting, BERLIN, now) == datetime(
        2026, 11, 25, 5, 15, tzinfo=UTC
    )
    # Saving the same schedule again changes nothing.
    later = now + timedelta(days=3)
    assert schedules.update_schedule(REFRESH, "weekly", "06:15", 2, now=later).effective_since == (
        now
    )
    schedules.set_paused(REFRESH, True, now=later)
    assert schedules.set_paused(REFRESH, False, now=later + timedelta(days=30)).effective_since == (
        later + timedelta(days=30)
    )
    with pytest.raises(schedules.ScheduleError, match="monthly, quarterly, weekly"):
        schedules.update_schedule(REFRESH, "daily", "03:00", 0)
    with pytest.raises(schedules.ScheduleError, match="interval"):
        schedules.update_schedule(DISPATCHER, "daily", "03:00", 0)


def test_other_pages_ask_when_the_refresh_runs_next_by_the_owners_schedule(app):
    set_shop_zone("Europe/Berlin")
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert next_run_of("refresh", now) == datetime(2027, 1, 1, 2, tzinfo=UTC)
    schedules.update_schedule(REFRESH, "monthly", "03:00", 0, now=now)
    assert next_run_of("refresh", now) == datetime(2026, 12, 1, 2, tzinfo=UTC)
    schedules.set_paused(REFRESH, True, now=now)
    assert next_run_of("refresh", now) is None


# --- the dispatcher ----------------------------------------------------------------------


def test_the_dispatcher_finds_nothing_to_do_until_something_registers_work(app):
    assert run_unrecorded(DISPATCHER) == {"dispatched": 0, "failed": []}
    assert db.session.scalar(select(func.count()).select_from(JobRun)) == 0


def test_dispatched_work_runs_once_under_its_own_key(app, monkeypatch):
    sent = []

    def send(context):
        sent.append(context.key)
        if context.key == "campaign:2":
            raise RuntimeError("SendGrid said 503")
        return {"recipients": 12}

    def due_campaigns(now):
        return [Dispatch("campaign:1", "Spring yarn", send), Dispatch("campaign:2", "Kits", send)]

    monkeypatch.setitem(DISPATCH_SOURCES, "campaigns", due_campaigns)
    assert run_unrecorded(DISPATCHER) == {"dispatched": 1, "failed": ["campaign:2"]}
    assert run_unrecorded(DISPATCHER) == {"dispatched": 0, "failed": []}  # 2 waits its retry
    assert sent == ["campaign:1", "campaign:2"]
    (one,) = runs_of("campaign:1")
    assert (one.job, one.status, one.result) == ("dispatch", "done", {"recipients": 12})
    # Two dispatchers at once: the second finds the lock held and does nothing.
    with ledger.job_lock(db.engine, "dispatch"):
        assert run_unrecorded(DISPATCHER) is None


# --- run now -----------------------------------------------------------------------------


def test_run_now_goes_through_the_queue_the_lock_and_a_key_of_its_own(app):
    add_order(add_customer("Ada", email="ada@example.com"), "#1", 2500)
    queued = run_now(REFRESH)
    assert queued.key.startswith("manual:") and queued.status == "queued"
    task = db.session.get(Task, queued.task_id)
    assert (task.kind, task.key, task.params["job_key"]) == ("refresh", queued.key, queued.key)
    assert tasks.run_pending() == 1
    db.session.refresh(queued)
    db.session.refresh(task)
    assert (queued.status, queued.attempts, task.status) == ("done", 1, "done")
    refresh_run = db.session.get(RefreshRun, queued.result["run_id"])
    assert (refresh_run.status, refresh_run.trigger) == ("done", "manual")
    assert task.result == queued.result and task.progress_total > 0
    assert queued.message == "done"


def test_run_now_while_the_job_runs_elsewhere_does_not_start_and_says_why(app):
    queued = run_now(HOUSEKEEPING)
    with ledger.job_lock(db.engine, "housekeeping"):
        assert tasks.run_pending() == 1
    db.session.refresh(queued)
    task = db.session.get(Task, queued.task_id)
    assert queued.status == "busy" and "Another run of housekeeping" in queued.error
    assert task.status == "failed" and task.error.startswith("JobBusy: ")
    assert JobBusy.__name__ == "JobBusy"


def test_a_run_now_task_taken_over_after_its_runner_died_runs_once(app):
    queued = run_now(HOUSEKEEPING)
    owner = "dead-host:1:1"
    task = tasks.claim_next(owner)
    # Claimed a while ago, with a lease that has run out by now.
    claimed_at = utcnow() - timedelta(seconds=5)
    ledger.claim("housekeeping", queued.key, "manual", owner, claimed_at, 0.01, max_attempts=3)
    # Its runner died: the task's lease and the run's lease both run out.
    db.session.execute(
        Task.__table__.update()
        .where(Task.id == task.id)
        .values(lease_expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    assert tasks.run_pending() == 1
    db.session.refresh(queued)
    assert (queued.status, queued.attempts) == ("done", 2)
    assert db.session.get(Task, task.id).status == "done"


# --- housekeeping ------------------------------------------------------------------------


def test_housekeeping_prunes_details_past_the_retention_but_keeps_what_ran(app, tmp_path):
    now = utcnow()
    old, recent = now - timedelta(days=40), now - timedelta(days=5)
    for key, finished, status in (
        ("refresh:2026-Q2", old, "done"),
        ("refresh:2026-Q3", old, "failed"),
        ("refresh:2026-Q4", recent, "done"),
    ):
        db.session.add(
            JobRun(
                job="refresh", key=key, trigger="schedule", status=status, attempts=1,
                started_at=finished, finished_at=finished, result={"n": 1}, error="boom",
            )
        )  # fmt: skip
    upload_dir = app.config["UPLOAD_DIR"]
    (tmp_path / "uploads").mkdir(exist_ok=True)
    old_file = tmp_path / "uploads" / "old.csv"
    old_file.write_text("order_id\n")
    db.session.add_all(
        [
            Task(kind="import_orders", key="import:old", params={"path": str(old_file)},
                 status="done", finished_at=old),
            Task(kind="import_orders", key="import:new", params={}, status="done",
                 finished_at=recent),
            Task(kind="import_orders", key="import:waiting", params={}, status="queued"),
            SchedulerHeartbeat(id="gone:1:a", host="gone", pid=1, beat_at=old),
        ]
    )  # fmt: skip
    db.session.commit()
    assert upload_dir == str(tmp_path / "uploads")
    schedules.set_retention(HOUSEKEEPING, 30)

    outcome = run_keyed(HOUSEKEEPING, "housekeeping:today", "cli")

    assert outcome.result == {
        "retention_days": 30,
        "job_runs_pruned": 2,
        "tasks_deleted": 1,
        "heartbeats_deleted": 1,
    }
    db.session.expire_all()
    q2, q3, q4 = (runs_of(k)[0] for k in ("refresh:2026-Q2", "refresh:2026-Q3", "refresh:2026-Q4"))
    assert (q2.status, q2.result, q2.error, q2.pruned_at is not None) == ("done", None, None, True)
    assert q3.status == "failed" and q3.acknowledged_at is not None  # no banner for it
    assert (q4.result, q4.error, q4.pruned_at) == ({"n": 1}, "boom", None)
    assert sorted(db.session.scalars(select(Task.key))) == ["import:new", "import:waiting"]
    assert not old_file.exists()
    # A pruned key is still done: it never runs again.
    assert run_keyed(REFRESH, "refresh:2026-Q2", "cli").status == "skipped"
    with pytest.raises(schedules.ScheduleError, match="between 1 and 3650"):
        schedules.set_retention(HOUSEKEEPING, 0)


# --- the Schedule page -------------------------------------------------------------------


def test_the_schedule_page_needs_a_login(client):
    assert client.get("/schedule/").status_code == 302


def test_the_schedule_page_shows_the_next_quarterly_refresh_in_the_shops_zone(owner_client):
    set_shop_zone("Europe/Berlin")
    _, expected = next_fire(Schedule("quarterly", time(3, 0)), BERLIN, utcnow())
    html = owner_client.get("/schedule/").get_data(as_text=True)
    text = text_of(owner_client.get("/schedule/"))
    assert "Segment refresh" in text and "quarterly, 03:00 on 1 Jan, Apr, Jul and Oct" in text
    local = expected.astimezone(BERLIN)
    assert (local.day, local.month in (1, 4, 7, 10)) == (1, True)
    assert f"{local:%Y-%m-%d} 03:00 {local:%Z}" in text  # CET or CEST
    assert "Europe/Berlin" in text
    assert "No scheduler has run yet" in text
    for job in ("refresh", "dispatch", "tasks", "housekeeping"):
        assert f'id="job-{job}"' in html


def test_the_owner_changes_the_refresh_schedule_and_sees_the_next_run(owner_client):
    set_shop_zone("Europe/Berlin")
    page = owner_client.get("/schedule/")
    response = owner_client.post(
        "/schedule/refresh",
        data={
            "csrf_token": csrf_from(page),
            "frequency": "monthly",
            "at_time": "5:30",
            "weekday": "0",
        },
    )
    assert response.status_code == 303
    setting = db.session.get(JobSetting, "refresh", populate_existing=True)
    assert (setting.frequency, setting.at_time) == ("monthly", "05:30")
    text = text_of(owner_client.get(response.headers["Location"]))
    assert "monthly, 05:30 on the 1st" in text and "Next run:" in text
    assert re.search(r"\d{4}-\d\d-01 05:30 CE", text)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("at_time", "25:00", "is not a time like 09:00"),
        ("frequency", "daily", "Not a valid choice"),
        ("weekday", "9", "Not a valid choice"),
    ],
)
def test_a_bad_schedule_is_refused_next_to_its_field(owner_client, field, value, message):
    page = owner_client.get("/schedule/")
    data = {"csrf_token": csrf_from(page), "frequency": "weekly", "at_time": "03:00"}
    data["weekday"] = "0"
    data[field] = value
    response = owner_client.post("/schedule/refresh", data=data)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert re.search(rf'id="{field}-error">[^<]*{message}', html)
    assert db.session.get(JobSetting, "refresh", populate_existing=True).frequency == "quarterly"


def test_pause_and_resume_from_the_page(owner_client):
    token = csrf_from(owner_client.get("/schedule/"))
    assert owner_client.post("/schedule/refresh/pause", data={"csrf_token": token}).status_code == (
        303
    )
    text = text_of(owner_client.get("/schedule/"))
    assert "paused: it does not run until you resume it" in text
    assert owner_client.post(
        "/schedule/refresh/resume", data={"csrf_token": token}
    ).status_code == (303)
    assert not db.session.get(JobSetting, "refresh", populate_existing=True).paused
    assert owner_client.post("/schedule/nope/pause", data={"csrf_token": token}).status_code == 404
    assert owner_client.post("/schedule/refresh/pause").status_code == 400  # no CSRF token


def test_the_queue_runs_by_itself_and_offers_no_run_now_or_pause(owner_client):
    token = csrf_from(owner_client.get("/schedule/"))
    for action in ("run", "pause", "resume"):
        response = owner_client.post(f"/schedule/tasks/{action}", data={"csrf_token": token})
        assert response.status_code == 400
    html = owner_client.get("/schedule/").get_data(as_text=True)
    queue = html[html.index('id="job-tasks"') : html.index('id="job-housekeeping"')]
    assert "Run now" not in queue and "Pause" not in queue
    assert "every 0.2 s while the scheduler runs" in queue


def test_the_owner_sets_the_retention_of_run_details(owner_client):
    token = csrf_from(owner_client.get("/schedule/"))
    bad = owner_client.post(
        "/schedule/housekeeping/retention", data={"csrf_token": token, "retention_days": "0"}
    )
    assert 'id="retention_days-error"' in bad.get_data(as_text=True)
    good = owner_client.post(
        "/schedule/housekeeping/retention", data={"csrf_token": token, "retention_days": "14"}
    )
    assert good.status_code == 303
    assert db.session.get(JobSetting, "housekeeping", populate_existing=True).retention_days == 14
    refused = owner_client.post(
        "/schedule/refresh/retention", data={"csrf_token": token, "retention_days": "14"}
    )
    assert refused.status_code == 400


def test_run_now_from_the_page_shows_progress_then_the_refresh(owner_client):
    add_order(add_customer("Ada", email="ada@example.com"), "#1", 2500)
    token = csrf_from(owner_client.get("/schedule/"))
    response = owner_client.post("/schedule/refresh/run", data={"csrf_token": token})
    assert response.status_code == 303
    page = owner_client.get(response.headers["Location"])
    html = page.get_data(as_text=True)
    run_id = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    assert f'id="run-{run_id}-progress"' in html and 'hx-trigger="every 1s"' in html
    assert "Waiting to start" in text_of(page)
    tasks.run_pending()
    polled = owner_client.get(
        f"/schedule/runs/{run_id}",
        headers={"HX-Request": "true", "HX-Target": f"run-{run_id}-progress"},
    )
    body = polled.get_data(as_text=True)
    assert "<html" not in body and "hx-trigger" not in body  # the outcome ends the polling
    assert "Done" in text_of(polled) and "See refresh run #" in text_of(polled)
    run = db.session.get(JobRun, run_id, populate_existing=True)
    assert f'href="/refresh/{run.result["run_id"]}"' in body
    history = text_of(owner_client.get("/schedule/"))
    assert run.key in history and "run now" in history


def test_the_history_lists_each_run_once_and_pages(owner_client, counter):
    job, _ = counter
    for i in range(3):
        run_keyed(job, f"counter:{i}", "cli")
    text = text_of(owner_client.get("/schedule/runs/?job=counter"))
    assert [text.count(f"counter:{i}") for i in range(3)] == [1, 1, 1]
    assert owner_client.get("/schedule/runs/?before=x").status_code == 200
    assert owner_client.get("/schedule/runs/999").status_code == 404


# --- the failed-job banner ---------------------------------------------------------------


def test_a_failed_job_shows_a_banner_on_every_page_until_acknowledged(owner_client, monkeypatch):
    job, _ = counting_job("flaky", fail=True)
    monkeypatch.setitem(JOBS, job.name, job)
    run_keyed(job, "flaky:2026-Q4", "schedule")
    (run,) = runs_of("flaky:2026-Q4")
    for page in ("/", "/customers/", "/schedule/"):
        text = text_of(owner_client.get(page))
        assert "Counter failed" in text and "RuntimeError: the disk is full" in text
    html = owner_client.get("/customers/").get_data(as_text=True)
    assert f'id="failed-job-{run.id}"' in html
    # Acknowledging needs the CSRF token.
    assert owner_client.post(f"/schedule/runs/{run.id}/acknowledge").status_code == 400
    response = owner_client.post(
        f"/schedule/runs/{run.id}/acknowledge",
        data={"csrf_token": csrf_from(owner_client.get("/customers/")), "next": "/customers/"},
    )
    assert (response.status_code, response.headers["Location"]) == (303, "/customers/")
    assert "Counter failed" not in text_of(owner_client.get("/"))
    assert db.session.get(JobRun, run.id, populate_existing=True).acknowledged_at is not None


def test_acknowledging_from_htmx_removes_the_banner_in_place(owner_client, monkeypatch):
    job, _ = counting_job("flaky", fail=True)
    monkeypatch.setitem(JOBS, job.name, job)
    run_keyed(job, "flaky:1", "cli")
    (run,) = runs_of("flaky:1")
    token = csrf_from(owner_client.get("/"))
    response = owner_client.post(
        f"/schedule/runs/{run.id}/acknowledge",
        data={"csrf_token": token},
        headers={"HX-Request": "true"},
    )
    assert (response.status_code, response.get_data(as_text=True)) == (200, "")


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "javascript:x"])
def test_acknowledging_never_redirects_off_site(owner_client, monkeypatch, target):
    job, _ = counting_job("flaky", fail=True)
    monkeypatch.setitem(JOBS, job.name, job)
    run_keyed(job, "flaky:1", "cli")
    (run,) = runs_of("flaky:1")
    response = owner_client.post(
        f"/schedule/runs/{run.id}/acknowledge",
        data={"csrf_token": csrf_from(owner_client.get("/")), "next": target},
    )
    assert response.headers["Location"] == "/"


# --- /healthz ----------------------------------------------------------------------------


def test_healthz_answers_without_a_login_with_the_schedulers_heartbeat(client, auth):
    auth.create_owner()
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["scheduler"]["alive"] is False and body["scheduler"]["last_heartbeat"] is None
    beat = utcnow()
    db.session.add(SchedulerHeartbeat(id="host:42:ab", host="host", pid=42, beat_at=beat))
    db.session.commit()
    response = client.get("/healthz")
    assert response.status_code == 200
    scheduler = response.get_json()["scheduler"]
    assert scheduler["alive"] is True and scheduler["process"] == "host:42:ab"
    assert datetime.fromisoformat(scheduler["last_heartbeat"]) == beat


@pytest.mark.parametrize(
    "url",
    ["sqlite:////nonexistent-folder/patchwork.db", "postgresql://postgres@127.0.0.1:1/nowhere"],
)
def test_healthz_is_503_when_the_database_is_unreachable(url):
    app = create_app("test", {"DATABASE_URL": url})
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "error",
        "database": "unreachable",
        "error": "OperationalError",
    }


# --- patchwork jobs ----------------------------------------------------------------------


def invoke_json(runner, *args) -> tuple[int, dict]:
    result = runner.invoke(args=["jobs", *args, "--json"])
    return result.exit_code, json.loads(result.output)


def test_jobs_list_gives_each_jobs_schedule_and_next_run_with_its_offset(app, runner):
    set_shop_zone("Europe/Berlin")
    code, body = invoke_json(runner, "list")
    assert code == 0 and list(body) == ["jobs"]
    jobs = {job["name"]: job for job in body["jobs"]}
    assert set(jobs) == {"refresh", "dispatch", "tasks", "housekeeping"}
    assert all(set(job) == {"name", "schedule", "next_run", "paused"} for job in jobs.values())
    refresh = jobs["refresh"]
    assert refresh["schedule"] == "quarterly, 03:00 on 1 Jan, Apr, Jul and Oct"
    when = datetime.fromisoformat(refresh["next_run"])
    assert when.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    assert (when.day, when.hour, when.minute, when.month in (1, 4, 7, 10)) == (1, 3, 0, True)
    assert jobs["tasks"]["next_run"] is None  # no scheduler is running
    schedules.set_paused(REFRESH, True)
    assert invoke_json(runner, "list")[1]["jobs"][0] == {
        **refresh,
        "next_run": None,
        "paused": True,
    }


def test_jobs_run_runs_a_key_once_and_skips_it_after(app, runner):
    code, first = invoke_json(runner, "run", "refresh", "--key", "refresh:2026-Q4")
    assert code == 0 and first["status"] == "done" and first["key"] == "refresh:2026-Q4"
    assert set(first) == {
        "status", "job", "key", "started_at", "finished_at", "result", "error", "reason"
    }  # fmt: skip
    code, second = invoke_json(runner, "run", "refresh", "--key", "refresh:2026-Q4")
    assert code == 0 and second["status"] == "skipped" and second["reason"] == "already done"
    assert db.session.scalar(select(func.count()).select_from(RefreshRun)) == 1
    code, manual = invoke_json(runner, "run", "housekeeping")
    assert code == 0 and manual["key"].startswith("manual:")


def test_jobs_run_fails_with_one_json_object(app, runner, monkeypatch):
    job, _ = counting_job("flaky", fail=True)
    monkeypatch.setitem(JOBS, job.name, job)
    code, body = invoke_json(runner, "run", "flaky", "--key", "flaky:1")
    assert code == 1 and body["status"] == "failed" and "the disk is full" in body["error"]
    code, body = invoke_json(runner, "run", "nope")
    jobs = "refresh, dispatch, tasks, housekeeping, flaky"
    assert code == 1 and body == {"error": f"There is no job named 'nope'; jobs: {jobs}."}
    code, body = invoke_json(runner, "run", "housekeeping", "--key", "flaky:1")
    assert code == 1 and "belongs to a run of 'flaky'" in body["error"]
    with ledger.job_lock(db.engine, "housekeeping"):
        code, body = invoke_json(runner, "run", "housekeeping")
    assert code == 1 and body["status"] == "busy"
    # A failed key is run again when asked for explicitly.
    monkeypatch.setitem(JOBS, "flaky", counting_job("flaky")[0])
    code, body = invoke_json(runner, "run", "flaky", "--key", "flaky:1")
    assert code == 0 and body["status"] == "done"
    assert runs_of("flaky:1")[0].attempts == 2


def test_jobs_history_shows_each_run_once_newest_first(app, runner, counter):
    job, _ = counter
    set_shop_zone("Europe/Berlin")
    run_keyed(job, "counter:a", "cli")
    run_keyed(job, "counter:b", "cli")
    run_keyed(job, "counter:a", "cli")
    code, body = invoke_json(runner, "history")
    assert code == 0 and list(body) == ["runs"]
    assert [r["key"] for r in body["runs"]] == ["counter:b", "counter:a"]
    first = body["runs"][0]
    assert set(first) == {"job", "key", "status", "started_at", "finished_at", "error"}
    assert datetime.fromisoformat(first["started_at"]).utcoffset() == timedelta(hours=1)
    code, body = invoke_json(runner, "history", "--job", "refresh")
    assert body == {"runs": []}
    plain = runner.invoke(args=["jobs", "history"])
    assert "counter:a" in plain.output and "done" in plain.output


def test_period_keys_of_the_refresh_match_the_issue(app):
    assert period_key("refresh", Schedule("quarterly"), datetime(2026, 10, 1).date()) == (
        "refresh:2026-Q4"
    )
