"""The segment builder in headless Chromium: rules built with htmx, the live count following
as the owner types, the saved segment's page after a refresh, and a customer's "why"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.factories import add_survey
from tests.test_segments import AS_OF, cond, everyone, shop
from webapp.extensions import db
from webapp.models import Segment
from webapp.segmentation import segments
from webapp.segmentation.refresh import run_refresh

pytestmark = pytest.mark.browser
AXE = Path(__file__).parent / "vendor" / "axe.min.js"


def test_build_a_segment_watch_the_count_save_and_read_why(owner_page, live_server, expect):
    ada, bob, _, _ = shop()
    run_refresh(as_of=AS_OF)
    page = owner_page
    page.goto(live_server.url + "/segments/")
    page.get_by_role("button", name="New segment").click()
    expect(page).to_have_url(re.compile(r"/segments/new$"))
    members = page.locator("#live-members")
    expect(members).to_have_text("3")  # no conditions: everyone (the erased are in none)

    # A condition: customers with at least 1 order (the default), then at least 3.
    page.get_by_role("button", name="Add a condition to the outer group").click()
    field = page.get_by_label("Field of condition 1")
    expect(field).to_be_focused()
    expect(members).to_have_text("2")
    expect(page.locator("#live-sample")).to_contain_text("Bob")
    page.get_by_label("Value of condition 1").fill("3")
    expect(members).to_have_text("1")
    expect(page.locator("#live-sample")).not_to_contain_text("Bob")
    expect(page.locator("#live-sendable")).to_have_text("1")

    # A typo is shown beside its condition at once, and cleared when mended.
    page.get_by_label("Value of condition 1").fill("")
    expect(page.locator("#node-1-error")).to_contain_text("is not a whole number")
    expect(page.locator("#live-count")).to_contain_text("Fix rule 1 to count members")
    page.get_by_label("Value of condition 1").fill("3")
    expect(page.locator("#node-1-error")).to_be_empty()
    expect(members).to_have_text("1")

    # A nested group: ANY of (3+ orders, lives in France) inside the outer ALL.
    page.get_by_role("button", name="Add a group to the outer group").click()
    expect(page.locator("#node-2")).to_be_visible()
    page.get_by_label("Match of group 2").select_option("any")
    page.get_by_label("Field of condition 2.1").select_option("country")
    places = page.get_by_label("Country, comma-separated")
    expect(places).to_be_visible()  # the editor re-rendered the condition for its field
    expect(page.locator("#node-2-1-error")).to_contain_text("choose at least one value")
    places.fill("France")
    page.get_by_role("button", name="Add a condition to group 2").click()
    page.get_by_label("Value of condition 2.2").fill("3")
    expect(members).to_have_text("1")  # still Ada: the outer ALL needs 3+ orders too
    page.get_by_label("Value of condition 1").fill("1")
    expect(members).to_have_text("2")  # Ada (3 orders) and Bob (France)
    expect(page.locator("#live-sample")).to_contain_text("Bob")

    page.get_by_label("Name", exact=True).fill("Loyal or French")
    page.get_by_role("button", name="Save segment").first.click()
    expect(page).to_have_url(re.compile(r"/segments/\d+$"))
    expect(page.locator("#rules-words")).to_contain_text(
        "(Country is france or Number of orders at least 3 orders)"
    )
    expect(page.locator("#live-members")).to_have_text("2")  # lazy-loaded count
    expect(page.locator("#figures")).to_contain_text("added after the last refresh")

    # The next refresh computes its members and figures.
    run_refresh(as_of=AS_OF)
    page.reload()
    expect(page.locator("#figure-members")).to_have_text("2")
    expect(page.locator("#members")).to_contain_text("Bob")
    expect(page.locator("#size-history svg rect")).to_have_count(1)
    segment = db.session.scalars(select(Segment).where(Segment.name == "Loyal or French")).one()

    # Bob's "why": his segment first, each rule marked met or not.
    page.goto(f"{live_server.url}/segments/for-customer/{bob.id}")
    details = page.locator(f"#customer-segment-{segment.id}")
    details.locator("summary").click()
    why = details.locator("ul.why-tree li")
    expect(why).to_have_count(5)
    expect(why.nth(2)).to_contain_text("Any of these (met)")
    expect(why.nth(3)).to_contain_text("Country is france (met)")
    expect(why.nth(4)).to_contain_text("Number of orders at least 3 orders (not met)")


def serious_problems(page) -> list[str]:
    page.evaluate(AXE.read_text())
    # Our part of the page: <main>, or the whole of a fragment opened on its own.
    result = page.evaluate("() => axe.run(document.querySelector('main') || document.body)")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_segment_pages_have_no_serious_accessibility_problems(owner_page, live_server, expect):
    ada, *_ = shop()
    survey = add_survey()
    segment = segments.create_segment(
        db.session,
        "Every widget",
        everyone(
            cond("monetary", "between", ["10", "90"]),
            cond("lifecycle", "in", ["active"]),
            cond("trait", "in", ["knitting"], dimension="craft"),
            cond("answer", "answered", ["knitting"], survey_id=survey.id, question_id="craft"),
            cond("category", "has", None, category="yarn", within_days=90),
            cond("country", "in", ["france"]),
            everyone(cond("behaviour", "is", "vip"), cond("consent", "is"), match="any"),
        ),
    )
    db.session.commit()
    run_refresh(as_of=AS_OF)
    pages = {
        "/segments/": "#templates",
        f"/segments/{segment.id}/edit": "#live-members",
        f"/segments/{segment.id}": "#figure-members",
        f"/segments/for-customer/{ada.id}": "#customer-segments",
    }
    for url, ready in pages.items():
        owner_page.goto(live_server.url + url)
        expect(owner_page.locator(ready)).to_be_visible()
        assert serious_problems(owner_page) == [], url
