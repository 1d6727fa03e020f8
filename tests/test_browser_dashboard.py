"""Headless Chromium: the dashboard's RFM grid, Refresh now with live progress, the RFM map
editor and the customer page's why."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.factories import add_customer, add_order
from tests.test_dashboard import shop_with_spread
from tests.test_profiles import declare
from tests.test_refresh import AS_OF
from webapp import tasks
from webapp.extensions import db
from webapp.models import RfmSegmentMap
from webapp.segmentation import refresh
from webapp.segmentation.refresh import run_refresh

pytestmark = pytest.mark.browser
AXE = Path(__file__).parent / "vendor" / "axe.min.js"


def serious_problems(page, selector: str) -> list[str]:
    page.evaluate(AXE.read_text())
    result = page.evaluate("selector => axe.run(selector)", selector)
    return [
        f"{v['id']} ({v['impact']}): {v['help']}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_the_dashboard_shows_the_grid_with_the_runs_counts(owner_page, live_server, expect):
    shop_with_spread()
    run = run_refresh(as_of=AS_OF)
    owner_page.goto(live_server.url + "/")
    grid = owner_page.get_by_role("table", name=re.compile("Customers with orders as of"))
    expect(grid).to_be_visible()
    counts = run.counts["rfm_grid"]
    for r in range(1, 6):
        for f in range(1, 6):
            cell = grid.locator(f'td[data-r="{r}"][data-f="{f}"]')
            expect(cell.locator(".count")).to_have_text(f"{counts[r - 1][f - 1]} customers")
    expect(grid.locator('td[data-r="5"][data-f="5"] .segment-name')).to_have_text("Champions")
    expect(grid.get_by_role("rowheader").first).to_have_text("R 5")  # R 5 on top
    prospects = owner_page.locator("table.lifecycle tr", has_text="prospect").locator("td")
    expect(prospects).to_have_text("1")
    assert serious_problems(owner_page, "#rfm") == []  # contrast of every shade included
    expect(owner_page.locator("#segment-summary")).to_contain_text("No segments yet")


def test_refresh_now_shows_progress_and_ends_with_the_finished_run(
    owner_page, live_server, expect, monkeypatch
):
    shop_with_spread()
    owner_page.goto(live_server.url + "/")
    expect(owner_page.get_by_text("No refresh has run yet")).to_be_visible()
    owner_page.get_by_role("button", name="Refresh now").click()
    expect(owner_page).to_have_url(re.compile(r"/refresh/tasks/\d+$"))
    expect(owner_page.get_by_text("Waiting to start")).to_be_visible()

    seen = []

    def while_the_page_polls(conn, ctx):
        # The run stops at this step until the polling page has shown it.
        expect(owner_page.locator(".task-progress .step")).to_have_text("checking in")
        seen.append(owner_page.locator(".task-progress").inner_text())

    steps = list(refresh.STEPS)
    steps.insert(3, ("checking in", while_the_page_polls))
    monkeypatch.setattr(refresh, "STEPS", tuple(steps))
    assert tasks.run_pending() == 1  # the task runner's work, here in the test's thread

    assert "step 4 of" in seen[0]
    expect(owner_page.get_by_text("The refresh has finished: 13 customers")).to_be_visible()
    owner_page.get_by_role("button", name=re.compile(r"See run #\d+")).click()
    expect(owner_page.get_by_role("heading", level=1)).to_have_text(re.compile(r"Refresh run #1"))
    expect(owner_page.get_by_text("live: the app uses this run")).to_be_visible()
    owner_page.goto(live_server.url + "/")
    expect(owner_page.locator("#refresh-summary")).to_contain_text("trigger: Refresh now button")


def test_the_customer_page_says_why_each_trait(owner_page, live_server, expect):
    ada = add_customer("Ada", email="ada@example.com")
    lines = [("Merino", "Y1", 1, 6400, "yarn"), ("Zine", "Z1", 1, 3600, "zines")]
    add_order(ada, "#1", 10000, lines=lines, placed_at=datetime(2026, 11, 1, 15, tzinfo=UTC))
    declare(ada, datetime(2026, 10, 2, 15, tzinfo=UTC), "craft:knitting")
    run_refresh(as_of=datetime(2026, 11, 20).date())
    owner_page.goto(f"{live_server.url}/customers/{ada.id}")
    traits = owner_page.locator("ul.traits-why li")
    expect(traits.first).to_have_text(
        "Craft: knitting (0.86) — said Knitting on 2 Oct 2026; "
        "64% of spend on knitting in the last 365 days"
    )
    expect(traits.filter(has_text="Skill")).to_have_text(
        "Skill: unknown — no answer and no purchases to go by"
    )
    expect(owner_page.locator("ul.behaviours-why")).to_contain_text(
        "VIP: among the customers who make the top 20% of revenue"
    )
    # The segments' fragment is loaded in below the profile.
    expect(owner_page.locator("#customer-segments")).to_contain_text("No segments yet")


def test_the_rfm_map_editor_moves_a_row_then_saves(owner_page, live_server, expect):
    owner_page.goto(live_server.url + "/settings/")
    editor = owner_page.locator("#rfm-map")
    editor.get_by_role("button", name="Move Hibernating down").click()
    expect(editor.get_by_text("Not saved yet")).to_be_visible()
    expect(editor.get_by_label("Segment name, row 1", exact=True)).to_have_value("At Risk")
    editor.get_by_label("R max, row 1", exact=True).fill("1")
    editor.get_by_role("button", name="Save map").click()
    expect(owner_page.get_by_text("RFM map saved.")).to_be_visible()
    expect(owner_page.get_by_role("alert")).to_contain_text("R2 F3, R2 F4")  # no longer covered
    db.session.expire_all()
    first = db.session.query(RfmSegmentMap).order_by(RfmSegmentMap.position).first()
    assert (first.name, first.r_min, first.r_max) == ("At Risk", 1, 1)
