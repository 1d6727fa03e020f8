"""Campaigns in headless Chromium: the editor's live preview and its merge-field errors, a
test send to the outbox, sending now (the queued task run by hand: tests start no runner),
the progress and results, scheduling for later in the shop's time zone, and pause, resume
and cancel."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from tests.campaign_helpers import consented, everyone_segment, make_campaign, ready_shop, refresh
from tests.factories import add_order
from webapp import tasks
from webapp.campaigns.sending import SEND_TASK
from webapp.extensions import db
from webapp.models import Campaign, CampaignRecipient, EmailEvent, Task
from webapp.segmentation import segments

pytestmark = pytest.mark.browser
NEW_YORK = "America/New_York"
R = CampaignRecipient


def shop_with_audience():
    """Three consented customers and one without consent, all in a refreshed "Everyone";
    "Consented" comes first in the editor's list of segments."""
    ready_shop(timezone=NEW_YORK)
    people = [consented(name) for name in ("Ada", "Bea", "Cy")]
    consented("Dot", accepts_marketing=False)
    segment = everyone_segment()
    segments.create_segment(
        db.session, "Consented", {"match": "all", "rules": [{"field": "consent", "op": "is"}]}
    )
    db.session.commit()
    refresh()
    return segment, people


def ledger(campaign_id: int) -> dict[str, int]:
    db.session.rollback()  # read what the browser's requests committed
    rows = db.session.execute(
        select(R.status, func.count()).where(R.campaign_id == campaign_id).group_by(R.status)
    )
    return dict(rows.all())


def queued_sends(campaign_id: int) -> int:
    db.session.rollback()
    found = db.session.scalars(select(Task).where(Task.kind == SEND_TASK, Task.status == "queued"))
    return sum(task.params["campaign_id"] == campaign_id for task in found)


def test_write_preview_test_send_and_results(owner_page, live_server, expect):
    _, (ada, *_) = shop_with_audience()
    page = owner_page
    page.locator("nav").get_by_role("link", name="Campaigns").click()
    page.get_by_role("button", name="New campaign").click()
    expect(page).to_have_url(re.compile(r"/campaigns/new$"))

    audience = page.locator("#audience-count")
    expect(audience).to_have_text(
        "3 members, 3 sendable (consented, not unsubscribed or bounced)."
    )  # "Consented", the first segment, as the select shows it
    page.get_by_label("Name", exact=True).fill("Spring yarn")
    page.get_by_label("Send to segment").select_option(label="Everyone")
    expect(audience).to_have_text("4 members, 3 sendable (consented, not unsubscribed or bounced).")
    page.get_by_label("Subject").fill("New yarn for {{ first_name }}")
    page.get_by_label("Holdout (% of sendable").fill("0")
    body = page.locator("#body")
    body.fill(
        "Hello **{{ first_name }}**,\n\nthe spring yarn is in.\n\n[Shop](https://shop.example)"
    )
    page.get_by_label("Preview as").select_option(label="Bea Maker (bea@example.com)")
    expect(page.locator("#preview-subject")).to_have_text("New yarn for Bea")
    frame = page.frame_locator("#preview-frame")
    expect(frame.locator("strong").first).to_have_text("Bea")
    expect(frame.locator("body")).to_contain_text("the spring yarn is in.")

    # A misspelt merge field: shown with its line in the preview, and beside Body on save.
    body.fill("Hello,\n{{ frist_name }}, the spring yarn is in.")
    expect(page.locator("#content-errors")).to_have_text("Body, line 2: 'frist_name' is undefined")
    page.get_by_role("button", name="Save campaign").click()
    expect(page.locator("#body-error")).to_have_text("Line 2: 'frist_name' is undefined")
    assert db.session.scalar(select(func.count(Campaign.id))) == 0

    page.locator("#body").fill("Hello {{ first_name }}, the spring yarn is in.")
    page.get_by_role("button", name="Save campaign").click()
    expect(page.get_by_role("status").filter(has_text="Saved")).to_contain_text("Spring yarn")
    expect(page.locator("#campaign-status")).to_have_text("draft")
    campaign_url = page.url

    # A test send: no SENDGRID_API_KEY in tests, so it is kept in the outbox.
    page.get_by_role("button", name="Send me a test").click()
    expect(page.get_by_role("status").filter(has_text="Test sent")).to_contain_text(
        "Test sent to your outbox"
    )
    page.get_by_role("link", name="Messages in the outbox").click()
    test_row = page.locator("tbody tr").filter(has_text="[Test] New yarn for")
    expect(test_row).to_contain_text("owner@example.com")
    expect(test_row.locator(".badge")).to_have_text("test")

    # Send now: queued for the task runner, which the test plays.
    page.goto(campaign_url)
    expect(page.get_by_label("Now")).to_be_checked()
    page.get_by_role("button", name="Send or schedule").click()
    expect(page.get_by_role("status").filter(has_text="Sending now")).to_be_visible()
    expect(page.locator("#campaign-status")).to_have_text("scheduled")
    assert tasks.run_pending() == 1
    expect(page.locator("#campaign-status")).to_have_text("sent")  # polled every 2 s
    counts = page.locator("#ledger-counts")
    expect(counts.locator('[data-status="sent"]')).to_have_text("3")
    expect(counts.locator('[data-status="suppressed"]')).to_have_text("1")

    # Results: an open and an order of a mailed customer, after the send started.
    campaign = db.session.scalars(select(Campaign)).one()
    started = campaign.started_at
    row = db.session.scalars(select(R).where(R.campaign_id == campaign.id, R.email == ada.email))
    db.session.add(
        EmailEvent(
            sg_event_id="open-1",
            event="open",
            campaign_id=campaign.id,
            recipient_id=row.one().id,
            customer_id=ada.id,
            occurred_at=started + timedelta(minutes=5),
        )
    )
    db.session.commit()
    add_order(ada, "#9001", 4500, placed_at=started + timedelta(hours=2))
    page.reload()
    results = page.locator("#results")
    expect(results.get_by_role("row", name=re.compile("^Opened"))).to_contain_text("1 (plus 0")
    mailed = page.locator("#conversion tbody tr").filter(has_text="Mailed")
    expect(mailed.locator("td")).to_have_text(["3", "1", "33.3%", "1", "45.00 USD", "15.00 USD"])


def test_schedule_for_later_then_unschedule(owner_page, live_server, expect):
    segment, _ = shop_with_audience()
    campaign = make_campaign(segment, name="Autumn wool", status="draft", scheduled_at=None)
    day = (datetime.now(ZoneInfo(NEW_YORK)) + timedelta(days=2)).date()
    page = owner_page
    page.goto(f"{live_server.url}/campaigns/{campaign.id}")

    page.get_by_label("Later").check()
    page.get_by_label("Date").fill(day.isoformat())
    page.get_by_label("Time (America/New_York)").fill("14:30")
    page.get_by_role("button", name="Send or schedule").click()
    shown = f"{day.isoformat()} 14:30 ({NEW_YORK})"
    expect(page.get_by_role("status").filter(has_text="Scheduled for")).to_contain_text(shown)
    expect(page.locator("#campaign-status")).to_have_text("scheduled")
    expect(page.locator("#progress")).to_contain_text(f"starts at {shown}")
    db.session.rollback()
    at = db.session.get(Campaign, campaign.id).scheduled_at
    assert at == datetime.combine(day, time(14, 30), tzinfo=ZoneInfo(NEW_YORK)).astimezone(UTC)
    assert queued_sends(campaign.id) == 0  # the scheduler's dispatcher starts it then

    page.get_by_role("button", name="Unschedule").click()
    expect(page.get_by_role("status").filter(has_text="Back to draft")).to_be_visible()
    expect(page.locator("#campaign-status")).to_have_text("draft")
    expect(page.get_by_role("button", name="Send or schedule")).to_be_visible()


def test_pause_resume_and_cancel_a_send(owner_page, live_server, expect):
    segment, people = shop_with_audience()
    campaign = make_campaign(
        segment, name="Big sale", status="sending", started_at=datetime.now(UTC)
    )
    sent, *waiting = people
    db.session.add(R(campaign_id=campaign.id, customer_id=sent.id, email=sent.email, status="sent"))
    db.session.add_all(
        R(campaign_id=campaign.id, customer_id=c.id, email=c.email, status="queued")
        for c in waiting
    )
    db.session.commit()
    page = owner_page
    page.goto(f"{live_server.url}/campaigns/{campaign.id}")
    expect(page.locator("#campaign-status")).to_have_text("sending")

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#campaign-status")).to_have_text("paused")
    expect(page.locator("#progress")).to_contain_text("Paused by the owner.")
    assert queued_sends(campaign.id) == 0

    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status").filter(has_text="Resumed")).to_be_visible()
    expect(page.locator("#campaign-status")).to_have_text("sending")
    assert queued_sends(campaign.id) == 1

    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Cancel campaign").click()
    expect(page.locator("#campaign-status")).to_have_text("cancelled")
    expect(page.locator('#ledger-counts [data-status="cancelled"]')).to_have_text("2")
    assert asked == ["Cancel this campaign? Recipients not yet mailed will never get it."]
    assert ledger(campaign.id) == {"sent": 1, "cancelled": 2}
