"""Email engagement in segmentation: the "engaged" behaviour a refresh computes from
SendGrid's opens and clicks, and the segment condition on campaign engagement (checked,
read in words, compiled, explained and built in the builder), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from werkzeug.datastructures import MultiDict

from tests.factories import add_customer
from tests.test_customer_why import page_text, profile
from tests.test_profiles import profile_rows, set_shop
from tests.test_segment_views import form_of, node_id, open_builder, post_builder, saved, text
from tests.test_segments import cond, everyone, members_of
from webapp.extensions import db
from webapp.models import Campaign, EmailEvent
from webapp.segment_forms import draft_from_rules, read_tree
from webapp.segmentation import segments, why
from webapp.segmentation.refresh import run_refresh
from webapp.segmentation.rules import Names, RulesError, describe, validate

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


# --- the condition: checked and read in words -------------------------------------------------


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (cond("engagement", "read"), "the operator must be one of opened, clicked, not_opened"),
        (cond("engagement", "opened", campaign_id="spring"), "choose a campaign"),
        (cond("engagement", "opened", campaign_id=True), "choose a campaign"),
        (cond("engagement", "opened", campaign_id="0"), "choose a campaign"),
        (cond("engagement", "opened", campaign_id=2**31), "choose a campaign"),
        (cond("engagement", "opened", campaign_id="٣"), "choose a campaign"),
        (cond("engagement", "opened", within_days="0"), "within_days is between 1"),
        (cond("engagement", "clicked", within_days="soon"), "'soon' is not a whole number"),
    ],
)
def test_bad_engagement_conditions_are_refused(node, message):
    with pytest.raises(RulesError) as caught:
        validate(everyone(node))
    assert message in str(caught.value) and "Rule 1: Campaign email" in str(caught.value)


def test_engagement_conditions_are_cleaned_and_read_in_words():
    tree = validate(
        everyone(
            cond("engagement", "opened", campaign_id=" 7 ", within_days="30", value="x"),
            cond("engagement", "clicked", campaign_id=""),
            cond("engagement", "not_opened", campaign_id=None, within_days=60),
            cond("engagement", "opened", campaign_id=9),
        )
    )
    assert tree["rules"] == [
        {"field": "engagement", "op": "opened", "campaign_id": 7, "within_days": 30},
        {"field": "engagement", "op": "clicked"},
        {"field": "engagement", "op": "not_opened", "within_days": 60},
        {"field": "engagement", "op": "opened", "campaign_id": 9},
    ]
    assert validate(tree) == tree  # a stored tree validates to itself
    names = Names({}, {7: "Spring yarn"})
    assert [describe(node, names) for node in tree["rules"]] == [
        "opened campaign “Spring yarn” within 30 days",
        "clicked any campaign",
        "did not open any campaign within 60 days",
        "opened campaign 9",  # a campaign no longer there
    ]


# --- the condition: compiled --------------------------------------------------------------


@pytest.fixture
def engagement_shop(app):
    """Campaigns Spring and Autumn. Ann opened Spring 10 days ago; Ben clicked Spring 20 days
    ago without a tracked open; Cat's only open of Spring was a machine's; Dan opened Spring
    45 days ago and Autumn 5 days ago; Eve opened Spring after the as-of day; Fay never had
    an event; Gus clicked Autumn 60 days ago."""
    set_shop(timezone=TZ.key)
    spring, autumn = campaign("Spring"), campaign("Autumn")
    names = ("Ann", "Ben", "Cat", "Dan", "Eve", "Fay", "Gus")
    people = {n: add_customer(n, email=f"{n.lower()}@example.com") for n in names}
    event(people["Ann"], "delivered", days_before(10, hour=9), spring)
    event(people["Ann"], "open", days_before(10), spring)
    event(people["Ben"], "click", days_before(20), spring)
    event(people["Cat"], "open", days_before(3), spring, machine=True)
    event(people["Dan"], "open", days_before(45), spring)
    event(people["Dan"], "open", days_before(5), autumn)
    event(people["Eve"], "open", local(AS_OF + timedelta(days=1), hour=1), spring)
    event(people["Gus"], "click", days_before(60), autumn)
    run_refresh(as_of=AS_OF)
    return spring, autumn, people


def test_opened_a_campaign_within_n_days_picks_exactly_its_readers(engagement_shop):
    spring, autumn, _ = engagement_shop
    opened_spring = cond("engagement", "opened", campaign_id=spring.id, within_days=30)
    assert members_of(everyone(opened_spring)) == {"Ann", "Ben"}
    assert members_of(everyone({**opened_spring, "within_days": 90})) == {"Ann", "Ben", "Dan"}
    assert members_of(everyone(cond("engagement", "opened"))) == {"Ann", "Ben", "Dan", "Gus"}
    clicked = cond("engagement", "clicked")
    assert members_of(everyone(clicked)) == {"Ben", "Gus"}
    assert members_of(everyone({**clicked, "campaign_id": autumn.id, "within_days": 59})) == set()


def test_not_opened_is_the_complement_of_opened(engagement_shop):
    spring, _, people = engagement_shop
    everybody = set(people)
    for extra in ({}, {"campaign_id": spring.id}, {"within_days": 30}):
        opened = members_of(everyone(cond("engagement", "opened", **extra)))
        not_opened = members_of(everyone(cond("engagement", "not_opened", **extra)))
        assert opened | not_opened == everybody and not opened & not_opened, extra
    assert members_of(
        everyone(cond("engagement", "not_opened", campaign_id=spring.id, within_days=30))
    ) == {"Cat", "Dan", "Eve", "Fay", "Gus"}


def test_explain_says_whether_each_engagement_condition_holds(engagement_shop):
    spring, autumn, people = engagement_shop
    segment = segments.create_segment(
        db.session,
        "Spring readers",
        everyone(
            cond("engagement", "opened", campaign_id=spring.id, within_days=30),
            cond("engagement", "not_opened", campaign_id=autumn.id),
            match="any",
        ),
    )
    db.session.commit()
    scope = segments.live_scope(db.session)
    names = Names({}, {spring.id: "Spring", autumn.id: "Autumn"})
    reasons = segments.explain(db.session, segment, people["Dan"].id, scope, names)
    assert [(r.text, r.met) for r in reasons] == [
        ("Any of these", False),
        ("opened campaign “Spring” within 30 days", False),
        ("did not open campaign “Autumn”", False),
    ]
    ann = segments.explain(db.session, segment, people["Ann"].id, scope, names)
    assert [r.met for r in ann] == [True, True, True]


# --- the builder ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("posted", "expected"),
    [
        (  # just picked: the old field's inputs mean nothing
            {"field": "engagement", "shown": "frequency", "op": "ge", "num": "3"},
            {"field": "engagement", "op": "opened", "campaign_id": "", "within_days": ""},
        ),
        (
            {"field": "engagement", "shown": "engagement", "op": "not_opened",
             "campaign_id": "4", "within_days": "30"},
            {"field": "engagement", "op": "not_opened", "campaign_id": "4", "within_days": "30"},
        ),
    ],
)  # fmt: skip
def test_an_engagement_condition_reads_its_inputs(posted, expected):
    form = MultiDict([("rules[].match", "all")])
    for key, value in posted.items():
        form.add(f"rules[1].{key}", value)
    assert read_tree(form)["rules"] == [expected]


def test_a_saved_engagement_condition_is_shown_as_text():
    tree = validate(everyone(cond("engagement", "clicked", campaign_id=4, within_days=30)))
    assert draft_from_rules(tree)["rules"] == [
        {"field": "engagement", "op": "clicked", "campaign_id": "4", "within_days": "30"}
    ]


def test_the_builder_offers_campaigns_and_saves_an_engagement_condition(
    owner_client, engagement_shop
):
    spring, autumn, _ = engagement_shop
    form = open_builder(owner_client)
    form = form_of(
        post_builder(owner_client, "/segments/new", form, "add-condition:").get_data(True)
    )
    form["rules[1].field"] = "engagement"
    html = post_builder(owner_client, "/segments/new", form, "refresh").get_data(as_text=True)
    node = html.split(f'id="{node_id("1")}"', 1)[1].split('class="node-error"', 1)[0]
    assert '<optgroup label="Email engagement">' in html
    assert re.search(r'<option value="engagement" selected>Campaign email</option>', html)
    assert re.search(r'<option value="opened" selected>opened</option>', node)
    assert '<option value="not_opened" >did not open</option>' in node
    assert re.search(r'<option value="" selected>Any campaign</option>', node)
    assert node.index(">Autumn<") < node.index(">Spring<")  # by name
    assert 'name="rules[1].within_days"' in node
    form = form_of(html)
    form["rules[1].campaign_id"] = str(spring.id)
    form["rules[1].within_days"] = "30"
    form["name"] = "Read Spring"
    page = post_builder(owner_client, "/segments/new", form, "refresh").get_data(as_text=True)
    assert re.search(r'id="live-members">2<', page)  # Ann and Ben
    response = post_builder(owner_client, "/segments/new", form_of(page), "save")
    assert response.status_code == 303
    segment = saved("Read Spring")
    assert segment.rules == everyone(
        {"field": "engagement", "op": "opened", "campaign_id": spring.id, "within_days": 30}
    )
    shown = text(owner_client.get(response.location).get_data(as_text=True))
    assert "Customers who match: opened campaign “Spring” within 30 days." in shown
    # The edit page posts back the same tree.
    edit = owner_client.get(f"/segments/{segment.id}/edit").get_data(as_text=True)
    assert re.search(rf'<option value="{spring.id}" selected>Spring</option>', edit)
    response = post_builder(owner_client, f"/segments/{segment.id}/edit", form_of(edit), "save")
    assert response.status_code == 303
    assert saved("Read Spring").rules == segment.rules


def test_any_campaign_round_trips_and_a_campaign_no_longer_there_is_kept(
    owner_client, engagement_shop
):
    spring, _, _ = engagement_shop
    segment = segments.create_segment(
        db.session,
        "Engaged",
        everyone(
            cond("engagement", "not_opened"),
            cond("engagement", "clicked", campaign_id=999, within_days=7),
        ),
    )
    db.session.commit()
    rules = segment.rules
    html = owner_client.get(f"/segments/{segment.id}/edit").get_data(as_text=True)
    assert re.search(r'<option value="not_opened" selected>', html)
    assert '<option value="999" selected>Campaign 999 (no longer there)</option>' in html
    response = post_builder(owner_client, f"/segments/{segment.id}/edit", form_of(html), "save")
    assert response.status_code == 303
    assert saved("Engaged").rules == rules


def test_a_bad_campaign_is_shown_beside_the_rule(owner_client, engagement_shop):
    form = MultiDict(
        [
            ("name", "Broken"),
            ("rules[].match", "all"),
            ("rules[1].field", "engagement"),
            ("rules[1].shown", "engagement"),
            ("rules[1].op", "opened"),
            ("rules[1].campaign_id", "spring"),
            ("rules[1].within_days", ""),
        ]
    )
    form["csrf_token"] = open_builder(owner_client)["csrf_token"]
    response = post_builder(owner_client, "/segments/new", form, "save")
    assert response.status_code == 422
    assert "Campaign email: choose a campaign, or any campaign." in text(response.get_data(True))
