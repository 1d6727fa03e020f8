"""The dashboard: the RFM grid, lifecycle and behaviours of the current refresh, survey
response rates, the last and the next refresh, and Refresh now."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.factories import add_customer, add_order, add_survey
from tests.test_profiles import set_shop
from tests.test_refresh import AS_OF, small_shop
from webapp.extensions import db
from webapp.models import RefreshRun, RfmSegmentMap, SurveyResponse
from webapp.scheduler.status import next_run_of
from webapp.segmentation.refresh import run_refresh
from webapp.web import survey_rates


def text_of(html: str) -> str:
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    for loose, tight in ((" :", ":"), (" ,", ","), ("( ", "("), (" )", ")")):
        text = text.replace(loose, tight)
    return text


def grid_cells(html: str) -> list[tuple[int, int, str, int, float]]:
    """(R, F, segment name, count, shade) of every grid cell, in page order."""
    return [
        (int(r), int(f), name, int(count.replace(",", "")), float(share))
        for r, f, share, name, count in re.findall(
            r'<td data-r="(\d)" data-f="(\d)" style="--share: ([\d.]+)">\s*'
            r'<span class="segment-name">([^<]*)</span>\s*<span class="count">([\d,]+)',
            html,
        )
    ]


def shop_with_spread():
    """Twelve customers whose orders spread them over the grid, and one prospect."""
    customers = []
    for i in range(12):
        customer = add_customer(email=f"c{i}@example.com")
        for n in range(i % 4 + 1):
            placed = datetime(2025, 6, 28, tzinfo=UTC) - timedelta(days=30 * i + n)
            add_order(customer, f"#{i}-{n}", 1000 * (i + 1), placed_at=placed)
        customers.append(customer)
    add_customer(email="prospect@example.com")
    return customers


def test_before_any_refresh_the_dashboard_says_so_and_offers_the_button(owner_client):
    html = owner_client.get("/").get_data(as_text=True)
    text = text_of(html)
    assert "No refresh has run yet" in text
    assert 'action="/refresh/"' in html and "Refresh now" in text
    assert 'class="rfm-grid"' not in html
    assert "customers" in text  # what was there stays: the shop's totals


def test_the_grid_shows_each_cells_segment_and_count_from_the_current_run(owner_client):
    shop_with_spread()
    run = run_refresh(as_of=AS_OF)
    html = owner_client.get("/").get_data(as_text=True)
    cells = grid_cells(html)
    assert [(r, f) for r, f, *_ in cells] == [(r, f) for r in (5, 4, 3, 2, 1) for f in range(1, 6)]
    grid = run.counts["rfm_grid"]
    peak = max(map(max, grid))
    names = {(5, 5): "Champions", (1, 1): "Hibernating", (3, 3): "Need Attention"}
    for r, f, name, count, share in cells:
        assert count == grid[r - 1][f - 1]
        assert share == round(count / peak, 3)
        if (r, f) in names:
            assert name == names[(r, f)]
    assert sum(count for *_, count, _ in cells) == 12
    assert "Rows are the R score" in html  # the caption says how to read it


def test_the_grid_uses_the_owners_map_names(owner_client):
    small_shop()
    run_refresh(as_of=AS_OF)
    for row in db.session.query(RfmSegmentMap):
        if row.name == "Champions":
            row.name = "Our best"
    db.session.commit()
    cells = grid_cells(owner_client.get("/").get_data(as_text=True))
    assert {name for r, f, name, *_ in cells if (r, f) == (5, 5)} == {"Our best"}


def test_lifecycle_and_behaviours_are_counted(owner_client):
    small_shop()
    run_refresh(as_of=AS_OF)
    text = text_of(owner_client.get("/").get_data(as_text=True))
    assert "prospect 1 new 0 active 1 lapsed 0 churned 1" in text
    assert "VIP 1 Frequent 0 Seasonal 0 Cart abandoner 0 Class taker 0" in text


def test_the_last_refresh_links_to_its_run_and_the_next_is_the_quarter_start(owner_client):
    set_shop(timezone="Pacific/Kiritimati")
    small_shop()
    run = run_refresh(as_of=AS_OF, trigger="cli")
    html = owner_client.get("/").get_data(as_text=True)
    text = text_of(html)
    assert f'href="/refresh/{run.id}"' in html
    assert f"Run #{run.id}, as of 2025-06-30 · finished" in text
    assert "trigger: command line" in text
    following = next_run_of("refresh").astimezone(ZoneInfo("Pacific/Kiritimati"))
    assert following.month in (1, 4, 7, 10) and (following.day, following.hour) == (1, 3)
    assert f"Next scheduled {following:%Y-%m-%d %H:%M}" in text


def test_a_failed_latest_run_is_flagged_and_the_figures_stay_from_the_last_good_one(owner_client):
    small_shop()
    good = run_refresh(as_of=AS_OF)
    db.session.add(RefreshRun(trigger="cli", as_of=AS_OF, status="failed", error="boom"))
    db.session.commit()
    text = text_of(owner_client.get("/").get_data(as_text=True))
    assert f"failed; the figures below are still from run #{good.id}" in text


def test_a_refresh_under_way_is_linked_instead_of_a_second_button(owner_client):
    owner_client.post("/refresh/", data={"csrf_token": _token(owner_client)})
    html = owner_client.get("/").get_data(as_text=True)
    assert "A refresh is queued" in text_of(html)
    assert '<button type="submit">Refresh now</button>' not in html


def _token(client) -> str:
    from tests.conftest import csrf_from

    return csrf_from(client.get("/"))


def respond(survey, shown: datetime, completed: bool):
    db.session.add(
        SurveyResponse(
            public_id=uuid.uuid4().hex,
            survey_id=survey.id,
            shown_at=shown,
            started_at=shown if completed else None,
            completed_at=shown if completed else None,
        )
    )
    db.session.commit()


def test_survey_response_rates_for_each_active_survey(owner_client):
    active = add_survey("post_purchase_profile")
    draft = add_survey("exit_intent_objection", publish=False)
    for i in range(8):
        respond(active, datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=i), completed=i < 3)
    respond(draft, datetime(2026, 1, 1, tzinfo=UTC), completed=True)
    rates = survey_rates()
    assert [(r.survey.id, r.shown, r.completed) for r in rates] == [(active.id, 8, 3)]
    text = text_of(owner_client.get("/").get_data(as_text=True))
    assert f"{active.title} 8 3 37.5%" in text
    assert draft.title not in text


def test_no_active_survey_says_so(owner_client):
    assert "No survey is active" in text_of(owner_client.get("/").get_data(as_text=True))


def test_the_segments_fragment_is_loaded_into_the_dashboard(owner_client):
    html = owner_client.get("/").get_data(as_text=True)
    assert 'hx-get="/segments/summary" hx-trigger="load"' in html
    assert owner_client.get("/segments/summary").status_code == 200
