"""Email engagement in segmentation: the "engaged" behaviour a refresh computes from
SendGrid's opens and clicks, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.factories import add_customer
from tests.test_customer_why import page_text, profile
from tests.test_profiles import profile_rows, set_shop
from tests.test_segments import cond, everyone, members_of
from webapp.extensions import db
from webapp.models import Campaign, EmailEvent
from webapp.segmentation import why
from webapp.segmentation.refresh import run_refresh
from webapp.segmentation.rules import describe, validate

TZ = ZoneInfo("America/New_York")
AS_OF = date(2026, 11, 20)


def local(day: date, hour: int = 12, minute: int = 0) -> datetime:
    """That wall-clock time in the shop's zone, as a UTC instant."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ).astimezone(UTC)


def days_before(days: int, hour: int = 12, minute: int = 0) -> datetime:
    return local(AS_OF - timedelta(days=days), hour, minute)


def campaign(name: str) -> Campaign:
    row = Campaign(name=name, from_email="shop@example.com", status="sent")
    db.session.add(row)
    db.session.commit()
    return row


def event(customer, kind: str, at: datetime, campaign_=None, machine: bool = False) -> None:
    db.session.add(
        EmailEvent(
            sg_event_id=uuid.uuid4().hex,
            event=kind,
            campaign_id=campaign_.id if campaign_ else None,
            customer_id=customer.id,
            machine_open=machine,
            occurred_at=at,
        )
    )
    db.session.commit()


# --- the behaviour -------------------------------------------------------------------------


def test_engaged_means_a_persons_open_or_a_click_within_90_days_up_to_the_as_of_day(app):
    set_shop(timezone=TZ.key)
    spring = campaign("Spring yarn")
    people = {
        name: add_customer(name, email=f"{name.lower()}@example.com")
        for name in (
            "Opened", "Machine", "Old", "Clicked", "Edge", "Beyond", "Later", "Delivered", "None",
        )
    }  # fmt: skip
    event(people["Opened"], "open", days_before(10), spring)
    event(people["Machine"], "open", days_before(5), spring, machine=True)  # Apple MPP
    event(people["Old"], "open", days_before(100), spring)
    event(people["Clicked"], "click", days_before(40), spring)
    # Day arithmetic in the shop's zone: 90 days before counts from its first minute ...
    event(people["Edge"], "open", days_before(90, hour=0, minute=1), spring)
    # ... and the day before it does not, up to its last minute.
    event(people["Beyond"], "click", days_before(91, hour=23, minute=59), spring)
    event(people["Later"], "open", local(AS_OF + timedelta(days=1), hour=0, minute=1), spring)
    event(people["Delivered"], "delivered", days_before(1), spring)
    run = run_refresh(as_of=AS_OF)
    got = profile_rows(run.id)
    engaged = {name for name, c in people.items() if got[c.id].is_engaged}
    assert engaged == {"Opened", "Clicked", "Edge"}
    assert run.counts["behaviours"]["engaged"] == 3
    # The same open is old news for a later run.
    later = run_refresh(as_of=AS_OF + timedelta(days=81))
    assert {n for n, c in people.items() if profile_rows(later.id)[c.id].is_engaged} == {"Later"}


def test_the_behaviour_is_a_segment_condition_an_export_column_and_a_dashboard_count(
    owner_client, runner
):
    ada = add_customer("Ada", email="ada@example.com")
    add_customer("Bob", email="b@x.org")
    event(ada, "click", datetime.now(UTC) - timedelta(days=3), campaign("Autumn"))
    run_refresh()
    assert members_of(everyone(cond("behaviour", "is", "engaged"))) == {"Ada"}
    assert members_of(everyone(cond("behaviour", "is_not", "engaged"))) == {"Bob"}
    assert describe(validate(everyone(cond("behaviour", "is", "engaged")))) == (
        "is engaged with email (opened or clicked in 90 days)"
    )
    exported = runner.invoke(args=["export-profiles"])
    rows = {r["email"]: r["engaged"] for r in csv.DictReader(io.StringIO(exported.output))}
    assert rows == {"ada@example.com": "true", "b@x.org": "false"}
    home = " ".join(re.sub(r"<[^>]+>", " ", owner_client.get("/").get_data(True)).split())
    assert "Class taker 0 Engaged with email 1" in home


def test_the_why_names_the_latest_open_or_click_and_its_campaign():
    engaged = profile(is_engaged=True)
    utc = ZoneInfo("UTC")
    opened = why.Engagement("open", datetime(2026, 10, 2, 15, tzinfo=UTC), "Spring yarn")
    assert [str(r) for r in why.behaviour_reasons(engaged, utc, engagement=opened)] == [
        "Engaged: opened “Spring yarn” on 2 Oct 2026, within 90 days"
    ]
    clicked = why.Engagement("click", datetime(2026, 10, 2, 15, tzinfo=UTC), None)
    assert str(why.behaviour_reasons(engaged, utc, engagement=clicked)[0]) == (
        "Engaged: clicked a link in a campaign on 2 Oct 2026, within 90 days"
    )
    assert str(why.behaviour_reasons(engaged, utc)[0]) == (
        "Engaged: opened or clicked a campaign within 90 days"
    )


def test_the_customer_page_shows_why_they_are_engaged(owner_client):
    set_shop(timezone=TZ.key)
    ada = add_customer("Ada", email="ada@example.com")
    spring, autumn = campaign("Spring yarn"), campaign("Autumn wool")
    event(ada, "open", days_before(30), spring)
    event(ada, "click", days_before(20, hour=23), autumn)  # 1 Nov 03:00 UTC: the 31st in New York
    event(ada, "open", days_before(2), autumn, machine=True)  # not hers
    event(ada, "open", local(AS_OF + timedelta(days=2)), spring)  # after the run's day
    run_refresh(as_of=AS_OF)
    assert "Engaged: clicked a link in “Autumn wool” on 31 Oct 2026, within 90 days" in page_text(
        owner_client, ada
    )
