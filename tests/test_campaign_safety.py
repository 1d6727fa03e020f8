"""What keeps a send from mailing the wrong people: changes after the start, the sending
hours, a refused account, no connection, one recipient's broken fields."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.campaign_helpers import (
    API_KEY,
    consented,
    everyone_segment,
    mailer,
    make_campaign,
    ready_shop,
    refresh,
)
from tests.sendgrid_server import FakeSendGrid
from webapp.campaigns import sending
from webapp.campaigns.mailer import SendGridMailer
from webapp.campaigns.sending import send_campaign
from webapp.extensions import db
from webapp.models import Campaign, CampaignRecipient, Customer


def ledger(campaign_id: int) -> dict[str, tuple[str, str | None]]:
    rows = db.session.execute(
        select(CampaignRecipient.email, CampaignRecipient.status, CampaignRecipient.reason)
        .where(CampaignRecipient.campaign_id == campaign_id)
    )  # fmt: skip
    return {email: (status, reason) for email, status, reason in rows}


def shop_of(n: int, **shop) -> None:
    ready_shop(**shop)
    for i in range(n):
        consented("Zed", i)
    refresh()


def test_who_unsubscribes_or_bounces_after_the_start_is_not_mailed(app, sg):
    shop_of(4)
    campaign = make_campaign(everyone_segment())
    sg.fail_next(100, status=500)
    send_campaign(campaign.id, mailer=mailer(sg, concurrency=1, max_retries=0))  # paused
    customers = {c.email: c for c in db.session.scalars(select(Customer))}
    customers["zed0@example.com"].unsubscribed_at = datetime.now(UTC)
    customers["zed1@example.com"].bounced_at = datetime.now(UTC)
    db.session.commit()
    sg.reset()

    assert sending.resume(campaign.id)
    send_campaign(campaign.id, mailer=mailer(sg))

    rows = ledger(campaign.id)
    assert rows["zed0@example.com"] == ("suppressed", "unsubscribed")
    assert rows["zed1@example.com"] == ("suppressed", "bounced")
    assert sorted(sg.recipients()) == ["zed2@example.com", "zed3@example.com"]


def test_a_send_waits_for_its_time_and_for_the_sending_hours(app, sg):
    shop_of(2, quiet_hours_start="00:00", quiet_hours_end="00:01", timezone="UTC")
    later = make_campaign(everyone_segment(), scheduled_at=datetime.now(UTC) + timedelta(hours=1))
    now = make_campaign(everyone_segment("Now"))

    send_campaign(later.id, mailer=mailer(sg))
    send_campaign(now.id, mailer=mailer(sg))

    db.session.expire_all()
    assert db.session.get(Campaign, later.id).status == "scheduled"  # not its time
    waiting = db.session.get(Campaign, now.id)
    assert waiting.status == "scheduled" and waiting.started_at is None  # outside the hours
    assert waiting.scheduled_at.strftime("%H:%M") == "00:00"
    assert sg.received == 0
    # The operator's `patchwork campaigns send` chose the moment: the hours do not apply.
    waiting.scheduled_at = datetime.now(UTC)
    db.session.commit()
    send_campaign(now.id, mailer=mailer(sg), sending_hours=False)
    assert len(sg.recipients()) == 2


def test_a_refused_key_pauses_at_once_and_loses_no_one(app, sg):
    shop_of(3)
    campaign = make_campaign(everyone_segment())
    bad = mailer(sg, concurrency=1)
    bad.api_key = "SG.wrong"

    result = send_campaign(campaign.id, mailer=bad)

    assert result.status == "paused" and "SendGrid 401" in result.paused_reason
    assert result.counts == {"queued": 3}
    assert sg.received == 3  # the one batch; nothing after it


def test_no_connection_at_all_is_retried_never_unknown(app):
    shop_of(2)
    campaign = make_campaign(everyone_segment())
    with FakeSendGrid() as gone:
        url = gone.url  # a port nobody listens on once it stops
    nowhere = SendGridMailer(API_KEY, url, concurrency=1, max_retries=1, backoff=0.01)

    result = send_campaign(campaign.id, mailer=nowhere)

    assert result.status == "paused" and "unreachable" in result.paused_reason
    assert result.counts == {"queued": 2}


def test_a_recipient_whose_fields_break_the_template_fails_alone(app, sg):
    shop_of(3)
    campaign = make_campaign(
        everyone_segment(), body="Hi {{ first_name }} {{ 10 // (first_name | length - 6) }}"
    )
    db.session.execute(
        Customer.__table__.update().where(Customer.email == "zed1@example.com")
        .values(first_name="Robert")
    )  # fmt: skip
    db.session.commit()

    result = send_campaign(campaign.id, mailer=mailer(sg))

    assert result.counts == {"sent": 2, "failed": 1}
    failed = ledger(campaign.id)["zed1@example.com"]
    assert failed[0] == "failed"
    assert sorted(sg.recipients()) == ["zed0@example.com", "zed2@example.com"]


def test_a_template_send_carries_the_address_and_utm_tracking(app, sg):
    shop_of(1, postal_address="1 {Brace} Street\nTown")
    campaign = make_campaign(everyone_segment(), template_id="d-" + "c" * 32, body="")

    send_campaign(campaign.id, mailer=mailer(sg))

    request = sg.requests[0]
    assert request["tracking_settings"]["ganalytics"]["utm_campaign"] == "Spring yarn"
    data = request["personalizations"][0]["dynamic_template_data"]
    assert data["postal_address"] == "1 {Brace} Street, Town"


def test_a_customer_in_a_campaign_under_way_is_capped_for_the_next(app, sg):
    shop_of(2)
    segment = everyone_segment()
    first = make_campaign(segment, name="First")
    sg.fail_next(100, status=500)
    send_campaign(first.id, mailer=mailer(sg, concurrency=1, max_retries=0))  # paused, queued
    sg.reset()
    second = make_campaign(segment, name="Second")

    send_campaign(second.id, mailer=mailer(sg))

    assert {status for status, _ in ledger(second.id).values()} == {"capped"}
    assert sg.received == 0


def test_a_paused_or_taken_over_send_marks_nothing_more(app):
    shop_of(2)
    campaign = make_campaign(everyone_segment(), status="sending", started_at=datetime.now(UTC))
    for customer_id in db.session.scalars(select(Customer.id)):
        db.session.add(CampaignRecipient(campaign_id=campaign.id, customer_id=customer_id))
    campaign.lease_owner = "me:1:1"
    db.session.commit()
    batch = sending._queued(campaign.id, 0, 10)

    assert sending.pause(campaign.id)
    assert sending._mark(campaign.id, "me:1:1", batch, renew=False) == []  # paused: nothing marked

    assert sending.resume(campaign.id)
    with pytest.raises(sending.CampaignBusy):
        sending._mark(campaign.id, "someone-else:2:2", batch, renew=False)
    assert {s for s, _ in ledger(campaign.id).values()} == {"queued"}


def test_a_send_stopped_midway_is_taken_over_once_under_a_new_key(app):
    shop_of(1)
    now = datetime.now(UTC)
    stopped = make_campaign(everyone_segment(), status="sending", lease_owner=None)
    dead = make_campaign(
        everyone_segment("Dead"), status="sending", lease_owner="gone:1:1",
        lease_expires_at=now - timedelta(seconds=1),
    )  # fmt: skip

    keys = {item.key for item in sending.due_campaigns(now)}

    assert any(k.startswith(f"campaign:{stopped.id}:takeover:") for k in keys)
    assert any(k.startswith(f"campaign:{dead.id}:takeover:") for k in keys)
    assert keys == {item.key for item in sending.due_campaigns(now)}  # the same until it moves


def test_a_send_stopped_with_the_scheduler_is_left_for_the_dispatcher(app, sg):
    from webapp import tasks

    shop_of(2)
    campaign = make_campaign(everyone_segment())
    sending.queue_send(campaign.id)
    task = tasks.claim_next("runner:1:1")
    stopping = threading.Event()
    stopping.set()  # SIGTERM came while the send was starting

    app.config.update(SENDGRID_API_KEY=API_KEY, SENDGRID_API_HOST=sg.url)
    tasks.run_task(task, "runner:1:1", stopping)

    db.session.expire_all()
    stopped = db.session.get(Campaign, campaign.id)
    assert stopped.status == "sending" and stopped.lease_owner is None
    assert sg.received == 0
    assert any(
        item.key.startswith(f"campaign:{campaign.id}:takeover:")
        for item in sending.due_campaigns(datetime.now(UTC))
    )
