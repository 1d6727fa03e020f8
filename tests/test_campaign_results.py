"""A campaign's report from its ledger, SendGrid's events and the orders that followed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.factories import add_customer, add_order
from webapp.campaigns import results
from webapp.extensions import db
from webapp.models import Campaign, CampaignRecipient, EmailEvent

START = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def test_orders_in_the_window_are_attributed_to_each_group(app):
    campaign = Campaign(
        name="May", from_email="s@example.com", status="sent", started_at=START,
        attribution_days=7,
    )  # fmt: skip
    db.session.add(campaign)
    db.session.commit()
    people = {}
    for name, status in [("ann", "sent"), ("bo", "sent"), ("cy", "sent"), ("di", "held_out"),
                         ("ed", "held_out"), ("fay", "suppressed")]:  # fmt: skip
        customer = add_customer(name, email=f"{name}@example.com")
        people[name] = customer
        db.session.add(
            CampaignRecipient(
                campaign_id=campaign.id, customer_id=customer.id, email=customer.email,
                status=status,
            )
        )  # fmt: skip
    db.session.commit()
    add_order(people["ann"], "#1", 4000, placed_at=START + timedelta(days=1))
    add_order(people["ann"], "#2", 1000, placed_at=START + timedelta(days=3))
    add_order(people["bo"], "#3", 2500, placed_at=START + timedelta(days=8))  # after the window
    add_order(people["cy"], "#4", 2500, placed_at=START - timedelta(hours=1))  # before the send
    add_order(people["cy"], "#5", 900, placed_at=START + timedelta(days=2),
              cancelled_at=START + timedelta(days=2))  # fmt: skip
    add_order(people["di"], "#6", 3000, placed_at=START + timedelta(days=6, hours=23))
    add_order(people["fay"], "#7", 5000, placed_at=START + timedelta(days=1))  # not a group
    recipients = {r.customer_id: r.id for r in db.session.query(CampaignRecipient).all()}
    events = [
        ("open", "ann", False), ("open", "ann", False), ("open", "bo", True),
        ("click", "ann", False), ("delivered", "ann", False), ("delivered", "bo", False),
        ("bounce", "cy", False),
    ]  # fmt: skip
    for n, (event, name, machine) in enumerate(events):  # fmt: skip
        db.session.add(
            EmailEvent(
                sg_event_id=f"e{n}", event=event, campaign_id=campaign.id,
                recipient_id=recipients[people[name].id], customer_id=people[name].id,
                machine_open=machine, occurred_at=START + timedelta(hours=n),
            )
        )  # fmt: skip
    db.session.commit()

    report = results.compute(campaign)

    assert report.counts == {"sent": 3, "held_out": 2, "suppressed": 1, "recipients": 6}
    assert report.events["opened"] == 1  # ann, twice: one person; bo's open was a machine's
    assert report.machine_opens == 1
    assert report.events["clicked"] == 1 and report.events["delivered"] == 2
    assert report.events["bounced"] == 1
    mailed, holdout = report.mailed, report.holdout
    assert (mailed.size, mailed.converters, mailed.orders, mailed.revenue_cents) == (3, 1, 2, 5000)
    assert (holdout.size, holdout.converters, holdout.orders) == (2, 1, 1)
    assert mailed.daily[0] == 0 and mailed.daily[1] == 1 and mailed.daily[-1] == 1
    assert holdout.daily[5] == 0 and holdout.daily[6] == 1
    assert report.lift.verdict.startswith("Too small to tell")
    assert report.window_closed
    chart = results.chart(report)
    assert len(chart["mailed"].split()) == 7 == len(chart["holdout"].split())


def test_a_mailed_recipients_window_starts_when_their_mail_went(app):
    campaign = Campaign(
        name="Paused for days", from_email="s@example.com", status="sent", started_at=START,
        attribution_days=7,
    )  # fmt: skip
    db.session.add(campaign)
    db.session.commit()
    early, late = add_customer("early", email="early@example.com"), add_customer("late")
    db.session.add_all(
        [
            CampaignRecipient(campaign_id=campaign.id, customer_id=early.id, status="sent",
                              sent_at=START),
            CampaignRecipient(campaign_id=campaign.id, customer_id=late.id, status="sent",
                              sent_at=START + timedelta(days=5)),
        ]
    )  # fmt: skip
    db.session.commit()
    add_order(early, "#1", 2000, placed_at=START + timedelta(days=9))  # after early's window
    add_order(late, "#2", 3000, placed_at=START + timedelta(days=9))  # inside late's
    add_order(late, "#3", 9900, placed_at=START + timedelta(days=10), currency="EUR")

    mailed = results.compute(campaign).mailed

    assert (mailed.converters, mailed.orders) == (1, 2)
    assert mailed.revenue_cents == 3000  # the EUR order converts but its amount is apart
    assert mailed.daily[3] == 0 and mailed.daily[4] == 1  # day 4 of late's own window
