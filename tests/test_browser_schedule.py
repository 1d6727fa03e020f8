"""The Schedule page in headless Chromium, with the demo's in-process scheduler running: the
next quarterly refresh in the shop's time zone, changing and pausing the schedule, "run now"
with its progress, and the failed-job banner until it is acknowledged."""

from __future__ import annotations

import re
from datetime import time

import pytest

from tests.factories import add_customer, add_order
from webapp.extensions import db
from webapp.models import JobRun, ShopSettings
from webapp.models._types import utcnow
from webapp.scheduler.periods import Schedule, next_fire
from webapp.scheduler.process import start_in_process

pytestmark = pytest.mark.browser
NEW_YORK = "America/New_York"


@pytest.fixture
def scheduler(app):
    """The scheduler the demo runs in its own process, polling the test database."""
    process = start_in_process(app)
    yield process
    process.shutdown()


def local(moment, zone: str) -> str:
    from zoneinfo import ZoneInfo

    return f"{moment.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M %Z}"


def in_new_york() -> None:
    db.session.get(ShopSettings, 1).timezone = NEW_YORK
    db.session.commit()


def test_the_owner_sees_changes_and_pauses_the_schedule(owner_page, live_server, expect):
    from zoneinfo import ZoneInfo

    in_new_york()
    page = owner_page
    page.get_by_role("link", name="Schedule").click()
    expect(page.get_by_role("heading", name="Schedule", level=1)).to_be_visible()

    refresh = page.locator("#job-refresh")
    _, quarterly = next_fire(Schedule("quarterly", time(3, 0)), ZoneInfo(NEW_YORK), utcnow())
    expect(refresh.locator(".job-schedule")).to_have_text(
        "quarterly, 03:00 on 1 Jan, Apr, Jul and Oct"
    )
    expect(refresh.locator(".next-run")).to_have_text(local(quarterly, NEW_YORK))
    expect(page.get_by_text("No scheduler has run yet")).to_be_visible()

    refresh.get_by_text("Change the schedule").click()
    refresh.get_by_label("How often").select_option("weekly")
    refresh.get_by_label("At (shop time)").fill("6:15")
    refresh.get_by_label("On (weekly)").select_option("Wednesday")
    refresh.get_by_role("button", name="Save schedule").click()

    _, weekly = next_fire(Schedule("weekly", time(6, 15), 2), ZoneInfo(NEW_YORK), utcnow())
    expect(page.get_by_role("status").filter(has_text="Segment refresh: weekly")).to_contain_text(
        f"Next run: {local(weekly, NEW_YORK)}"
    )
    expect(refresh.locator(".next-run")).to_have_text(local(weekly, NEW_YORK))

    refresh.get_by_text("Change the schedule").click()
    expect(refresh.get_by_label("How often")).to_have_value("weekly")
    refresh.get_by_label("At (shop time)").fill("24:00")
    refresh.get_by_role("button", name="Save schedule").click()
    expect(page.locator("#at_time-error")).to_contain_text("is not a time like 09:00")

    page.goto(live_server.url + "/schedule/")
    refresh.get_by_role("button", name="Pause").click()
    expect(refresh.locator(".badge")).to_have_text("paused")
    expect(refresh.locator(".next-run")).to_contain_text("does not run until you resume it")
    refresh.get_by_role("button", name="Resume").click()
    expect(refresh.locator(".badge")).to_have_text("active")
    expect(refresh.locator(".next-run")).to_have_text(local(weekly, NEW_YORK))


def test_run_now_refreshes_the_segments_with_progress(owner_page, scheduler, expect):
    add_order(add_customer("Ada", email="ada@example.com"), "#A1", 2500)
    add_order(add_customer("Bob", email="bob@example.com"), "#B1", 9000)
    page = owner_page
    page.get_by_role("link", name="Schedule").click()
    expect(page.get_by_text("The scheduler last checked in")).to_be_visible()

    page.locator("#job-refresh").get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/schedule/runs/\d+$"))
    expect(page.get_by_role("status").filter(has_text="Done at")).to_be_visible(timeout=30_000)
    page.get_by_role("button", name=re.compile(r"See refresh run #\d+")).click()
    expect(page).to_have_url(re.compile(r"/refresh/\d+$"))
    expect(page.locator(".run-details")).to_contain_text("2 (2 with orders)")

    page.get_by_role("link", name="Schedule").click()
    recent = page.locator("#job-refresh .job-run").first
    expect(recent).to_contain_text("manual:")
    expect(recent).to_contain_text("run now")
    expect(recent.locator(".run-status")).to_have_text("done")


def test_a_failed_job_shows_a_banner_until_the_owner_acknowledges_it(
    owner_page, live_server, expect
):
    db.session.add(
        JobRun(
            job="refresh", key="refresh:2026-Q4", trigger="schedule", status="failed",
            attempts=3, started_at=utcnow(), finished_at=utcnow(),
            error="RefreshFailed: Refresh run 7 failed (previous results kept): disk full",
        )
    )  # fmt: skip
    db.session.commit()
    page = owner_page
    page.goto(live_server.url + "/customers/")
    banner = page.get_by_role("alert").filter(has_text="Segment refresh failed")
    expect(banner).to_contain_text("disk full")
    expect(banner).to_contain_text("refresh:2026-Q4")

    banner.get_by_role("button", name="Acknowledge").click()
    expect(banner).to_have_count(0)
    page.reload()
    expect(page.get_by_text("Segment refresh failed")).to_have_count(0)
    page.get_by_role("link", name="Schedule").click()
    expect(page.locator("#job-refresh .job-run").first).to_contain_text("disk full")
