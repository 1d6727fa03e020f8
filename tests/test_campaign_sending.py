"""Sending a campaign to a local SendGrid stand-in: who gets what, and never twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.campaign_helpers import (
    add_catalogue,
    consented,
    everyone_segment,
    mailer,
    make_campaign,
    ready_shop,
    refresh,
)
from tests.factories import add_order
from webapp.campaigns import sending
from webapp.campaigns.sending import CampaignError, next_send_window, send_campaign
from webapp.extensions import db
from webapp.models import Campaign, CampaignRecipient, Customer, OutboxMessage, ShopSettings


def ledger(campaign_id: int) -> dict[str, str]:
    rows = db.session.execute(
        select(CampaignRecipient.email, CampaignRecipient.status).where(
            CampaignRecipient.campaign_id == campaign_id
        )
    )
    return dict(rows.all())


def test_the_right_people_get_their_own_content(app, sg):
    ready_shop()
    add_catalogue()
    ada = consented("Ada")
    add_order(ada, "#1", 2000, lines=[("Yarn 1", "Y1", 3, 600, "yarn")])
    consented("Bea")
    consented("Cy", accepts_marketing=False)
    consented("Di", unsubscribed_at=datetime.now(UTC))
    consented("Ed", bounced_at=datetime.now(UTC))
    consented("Flo", spam_reported_at=datetime.now(UTC))
    refresh()
    campaign = make_campaign(
        everyone_segment(),
        body="Hi {{ first_name }}! {% for p in recommendations %}[{{ p.title }}]{% endfor %} "
        "restock {{ restock }}, last {{ last_product }}, craft {{ craft }} "
        "[Shop](https://shop.example/new)",
    )

    result = send_campaign(campaign.id, mailer=mailer(sg))

    assert result.status == "sent"
    assert sorted(sg.recipients()) == ["ada@example.com", "bea@example.com"]
    by_email = {p["personalizations"][0]["to"][0]["email"]: p for p in sg.requests}
    ada_html = by_email["ada@example.com"]["content"][1]["value"]
    assert "Hi Ada!" in ada_html
    assert "[Yarn 2][Yarn 3][Yarn 4]" in ada_html  # not Yarn 1: she has it
    assert "restock Yarn 1, last Yarn 1, craft knitting" in ada_html
    assert "utm_source=patchwork&amp;utm_medium=email&amp;utm_campaign=Spring+yarn" in ada_html
    assert "1 High Street" in ada_html and "Unsubscribe" in ada_html
    assert "Hi Bea!" in by_email["bea@example.com"]["content"][1]["value"]
    request = by_email["bea@example.com"]
    person = request["personalizations"][0]
    assert request["subject"] == "Hi Bea"
    assert request["custom_args"] == {"campaign_id": str(campaign.id)}
    assert set(person["custom_args"]) == {"recipient_id"}  # ids only, no personal data
    assert person["headers"]["List-Unsubscribe"].startswith("<http")
    assert person["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "patchwork" in request["categories"]

    rows = db.session.scalars(
        select(CampaignRecipient).where(CampaignRecipient.campaign_id == campaign.id)
    ).all()
    reasons = {r.email: (r.status, r.reason) for r in rows}
    assert reasons["cy@example.com"] == ("suppressed", "no_consent")
    assert reasons["di@example.com"] == ("suppressed", "unsubscribed")
    assert reasons["ed@example.com"] == ("suppressed", "bounced")
    assert reasons["flo@example.com"] == ("suppressed", "spam_report")
    sent = [r for r in rows if r.status == "sent"]
    assert {r.message_id for r in sent} <= set(sg.message_ids) and len(sent) == 2


def test_the_holdout_is_recorded_and_never_mailed(app, sg):
    ready_shop()
    for n in range(60):
        consented("Kim", n)
    refresh()
    campaign = make_campaign(everyone_segment(), holdout_percent=10)

    send_campaign(campaign.id, mailer=mailer(sg))

    statuses = ledger(campaign.id)
    held = {email for email, status in statuses.items() if status == "held_out"}
    assert len(held) == 6
    assert not held & set(sg.recipients())
    assert len(sg.recipients()) == 54 == len(set(sg.recipients()))
    assert db.session.get(Campaign, campaign.id).send_info["holdout_seed"] is not None


def test_a_dynamic_template_sends_up_to_1000_personalizations_per_request(app, sg):
    ready_shop()
    for n in range(2100):
        db.session.add(
            Customer(
                first_name=f"P{n}",
                email=f"p{n}@example.com",
                email_norm=f"p{n}@example.com",
                accepts_marketing=True,
            )
        )
    db.session.commit()
    refresh()
    campaign = make_campaign(everyone_segment(), template_id="d-" + "a" * 32, subject="", body="")

    send_campaign(campaign.id, mailer=mailer(sg))

    assert [len(r["personalizations"]) for r in sg.requests] == [1000, 1000, 100]
    assert all(r["template_id"] == "d-" + "a" * 32 for r in sg.requests)
    first = sg.requests[0]["personalizations"][0]
    assert first["dynamic_template_data"]["first_name"].startswith("P")
    assert first["dynamic_template_data"]["unsubscribe_url"].startswith("http")
    assert len(set(sg.recipients())) == 2100


def test_429_and_5xx_are_retried_and_a_4xx_fails_with_sendgrids_words(app, sg):
    ready_shop()
    for n in range(3):
        consented("Lee", n)
    refresh()
    campaign = make_campaign(everyone_segment())
    sg.fail_next(2, status=429, reset_in=0)
    sg.fail_next(1, status=503)
    sg.reject_next(1, status=400, message="The from address does not match a verified Sender")

    result = send_campaign(campaign.id, mailer=mailer(sg, concurrency=1))

    assert result.counts == {"sent": 2, "failed": 1}
    failed = db.session.scalar(
        select(CampaignRecipient).where(CampaignRecipient.status == "failed")
    )
    assert "verified Sender" in failed.error and failed.error.startswith("SendGrid 400")
    assert len(sg.recipients()) == 2


def test_a_dropped_connection_is_unknown_and_never_retried(app, sg):
    ready_shop()
    for n in range(3):
        consented("Mo", n)
    refresh()
    campaign = make_campaign(everyone_segment())
    sg.drop_next(1)

    result = send_campaign(campaign.id, mailer=mailer(sg, concurrency=1))

    assert result.counts == {"sent": 2, "unknown": 1}
    assert sg.dropped == 1 and sg.received == 3


def test_repeated_failures_pause_the_campaign_and_resume_sends_each_once(app, sg):
    app.config["CAMPAIGN_REQUESTS_PER_WORKER"] = 1
    ready_shop()
    for n in range(8):
        consented("Ny", n)
    refresh()
    campaign = make_campaign(everyone_segment())
    sg.fail_next(1000, status=500)

    result = send_campaign(campaign.id, mailer=mailer(sg, concurrency=1, max_retries=1))

    assert result.status == "paused"
    assert "500" in result.paused_reason
    assert result.counts == {"queued": 8}
    sg.reset()
    assert sending.resume(campaign.id)
    result = send_campaign(campaign.id, mailer=mailer(sg))
    assert result.status == "sent" and result.counts == {"sent": 8}
    assert sorted(sg.recipients()) == sorted(set(sg.recipients())) and len(sg.recipients()) == 8


def test_rows_in_flight_when_a_sender_died_become_unknown(app, sg):
    ready_shop()
    for n in range(5):
        consented("Oz", n)
    refresh()
    campaign = make_campaign(everyone_segment())
    send_campaign(campaign.id, mailer=mailer(sg))  # everything sent
    # As if a sender had died with two rows in flight and three queued:
    rows = db.session.scalars(select(CampaignRecipient).order_by(CampaignRecipient.id)).all()
    for row in rows[:2]:
        row.status = "sending"
    for row in rows[2:]:
        row.status = "queued"
    stored = db.session.get(Campaign, campaign.id)
    stored.status, stored.lease_owner = "sending", "elsewhere:1:1"
    stored.lease_expires_at = datetime.now(UTC) - timedelta(seconds=1)
    db.session.commit()
    sg.reset()

    result = send_campaign(campaign.id, mailer=mailer(sg))

    assert result.counts == {"unknown": 2, "sent": 3}
    assert len(sg.recipients()) == 3


def test_a_live_lease_keeps_a_second_sender_out(app, sg):
    ready_shop()
    consented("Pat")
    refresh()
    campaign = make_campaign(everyone_segment())
    campaign.lease_owner = "another-host:1:1"
    campaign.lease_expires_at = datetime.now(UTC) + timedelta(minutes=1)
    db.session.commit()

    with pytest.raises(sending.CampaignBusy):
        send_campaign(campaign.id, mailer=mailer(sg))
    assert sg.received == 0


def test_the_frequency_cap_skips_customers_mailed_lately(app, sg):
    ready_shop()
    consented("Quin")
    consented("Rae")
    refresh()
    segment = everyone_segment()
    first = make_campaign(segment, name="First")
    send_campaign(first.id, mailer=mailer(sg))
    second = make_campaign(segment, name="Second", frequency_cap_days=3)
    third = make_campaign(segment, name="Third", frequency_cap_days=0)

    send_campaign(second.id, mailer=mailer(sg))
    send_campaign(third.id, mailer=mailer(sg))

    assert set(ledger(second.id).values()) == {"capped"}
    assert set(ledger(third.id).values()) == {"sent"}
    assert len(sg.recipients()) == 4


def test_without_an_api_key_the_outbox_keeps_each_message_once(app):
    ready_shop()
    consented("Sam")
    consented("Tess")
    refresh()
    campaign = make_campaign(everyone_segment())

    result = send_campaign(campaign.id)
    again = send_campaign(campaign.id)

    assert result.counts == {"sent": 2} and again.counts == {"sent": 2}
    messages = db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.to_email)).all()
    assert [m.to_email for m in messages] == ["sam@example.com", "tess@example.com"]
    assert messages[0].subject == "Hi Sam" and "Hello Sam" in messages[0].html
    assert "Hello Sam" in messages[0].text
    assert messages[0].payload["personalization"]["custom_args"]["recipient_id"]


def test_a_campaign_that_cannot_render_or_lacks_an_address_does_not_start(app, sg):
    ready_shop(postal_address="")
    consented("Uma")
    refresh()
    campaign = make_campaign(everyone_segment(), body="Hi\n{{ frist_name }}")

    with pytest.raises(CampaignError) as caught:
        send_campaign(campaign.id, mailer=mailer(sg))

    assert "postal address" in str(caught.value)
    assert "Body (line 2): 'frist_name' is undefined" in str(caught.value)
    assert ledger(campaign.id) == {} and sg.received == 0


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2026-06-01 10:00", "2026-06-01 10:00"),  # inside: at once
        ("2026-06-01 07:30", "2026-06-01 09:00"),  # before the window: when it opens
        ("2026-06-01 20:00", "2026-06-02 09:00"),  # after it: the next morning
        ("2026-06-01 23:59", "2026-06-02 09:00"),
    ],
)
def test_sends_start_only_inside_the_sending_hours(local, expected):
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/Berlin")
    shop = ShopSettings(
        timezone="Europe/Berlin", quiet_hours_start="09:00", quiet_hours_end="20:00"
    )
    moment = datetime.strptime(local, "%Y-%m-%d %H:%M").replace(tzinfo=tz)
    got = next_send_window(moment.astimezone(UTC), shop).astimezone(tz)
    assert got.strftime("%Y-%m-%d %H:%M") == expected


def test_the_dispatcher_takes_over_a_send_whose_sender_stopped(app):
    ready_shop()
    consented("Yan")
    refresh()
    now = datetime.now(UTC)
    due = make_campaign(everyone_segment(), scheduled_at=now - timedelta(minutes=1))
    later = make_campaign(everyone_segment("Later"), scheduled_at=now + timedelta(hours=1))
    expired, running = now - timedelta(seconds=1), now + timedelta(minutes=1)
    orphan = make_campaign(
        everyone_segment("Orphan"), status="sending", lease_owner="x:1:1", lease_expires_at=expired
    )
    alive = make_campaign(
        everyone_segment("Alive"), status="sending", lease_owner="y:1:1", lease_expires_at=running
    )

    keys = [item.key for item in sending.due_campaigns(now)]

    stamp = f"{due.scheduled_at:%Y%m%dT%H%M%S}"
    assert f"campaign:{due.id}:{stamp}" in keys
    assert any(key.startswith(f"campaign:{orphan.id}:") for key in keys)
    assert not any(
        key.startswith((f"campaign:{later.id}:", f"campaign:{alive.id}:")) for key in keys
    )
