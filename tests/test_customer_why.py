"""The customer page's "why": the wording (pure functions) and the Profile section."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from tests.factories import add_customer, add_order, add_survey
from tests.test_profiles import declare, set_shop
from webapp.segmentation import why
from webapp.segmentation.refresh import run_refresh

UTC_ZONE = ZoneInfo("UTC")
AS_OF = date(2026, 11, 20)


def trait(dimension="craft", value="knitting", score=0.856, **evidence):
    fields = {
        "declared_values": None,
        "declared_at": None,
        "observed_value": None,
        "observed_share": None,
        "observed_window": None,
    }
    fields.update(evidence)
    return SimpleNamespace(dimension=dimension, value=value, score=score, **fields)


def profile(**fields):
    values = {
        "frequency": 3,
        "recency_days": 10,
        "first_order_on": date(2024, 1, 5),
        "last_order_on": date(2026, 11, 10),
        "r": 5,
        "f": 4,
        "m": 5,
        "rfm_segment": "Champions",
        "lifecycle": "active",
        "is_frequent": False,
        "is_seasonal": False,
        "seasonal_quarter": None,
        "is_vip": False,
        "is_cart_abandoner": False,
        "objection": None,
        "abandoned_at": None,
        "is_class_taker": False,
        "is_engaged": False,
    }
    values.update(fields)
    return SimpleNamespace(**values)


OCT_2 = datetime(2026, 10, 2, 15, tzinfo=UTC)


# --- the wording -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "evidence, expected",
    [
        (  # the example: said knitting, 64% of spend on knitting
            trait(
                declared_values="knitting",
                declared_at=OCT_2,
                observed_value="knitting",
                observed_share=0.64,
                observed_window="365d",
            ),
            "Craft: knitting (0.86) — said Knitting on 2 Oct 2026; "
            "64% of spend on knitting in the last 365 days",
        ),
        (  # declared and observed disagree: the declaration wins, and the why shows both
            trait(
                value="painting",
                score=0.6,
                declared_values="painting",
                declared_at=OCT_2,
                observed_value="knitting",
                observed_share=0.9,
                observed_window="365d",
            ),
            "Craft: painting (0.60) — said Painting on 2 Oct 2026; "
            "but 90% of spend on knitting in the last 365 days",
        ),
        (  # no answer: the share alone
            trait(
                score=0.64, observed_value="knitting", observed_share=0.64, observed_window="365d"
            ),
            "Craft: knitting (0.64) — 64% of spend on knitting in the last 365 days",
        ),
        (  # mixed from spend
            trait(
                value="mixed",
                score=0.35,
                observed_value="knitting",
                observed_share=0.35,
                observed_window="365d",
            ),
            "Craft: mixed (0.35) — 35% of spend on knitting in the last 365 days: "
            "no single value stands out",
        ),
        (  # mixed from one answer naming two crafts
            trait(value="mixed", score=1.0, declared_values="knitting,painting", declared_at=OCT_2),
            "Craft: mixed (1.00) — said Knitting and Painting on 2 Oct 2026: "
            "no single value stands out",
        ),
        (  # skill is observed through product tiers, and falls back to all time
            trait(
                dimension="skill",
                value="beginner",
                score=0.7,
                observed_value="beginner",
                observed_share=0.7,
                observed_window="all",
            ),
            "Skill: beginner (0.70) — 70% of spend on starter products "
            "over all their orders (none in the last 365 days)",
        ),
        (  # a declared-only dimension with an underscore in its value
            trait(
                dimension="objection",
                value="shipping_cost",
                score=1.0,
                declared_values="shipping_cost",
                declared_at=OCT_2,
            ),
            "Objection: shipping cost (1.00) — said Shipping cost on 2 Oct 2026",
        ),
    ],
)
def test_a_trait_says_its_evidence_in_words(evidence, expected):
    assert str(why.trait_why(evidence, UTC_ZONE)) == expected


def test_a_declaration_date_is_the_shops_calendar_day():
    late = trait(declared_values="knitting", declared_at=datetime(2026, 10, 2, 23, 30, tzinfo=UTC))
    assert "on 2 Oct 2026" in why.trait_why(late, ZoneInfo("America/New_York")).text
    assert "on 3 Oct 2026" in why.trait_why(late, ZoneInfo("Asia/Tokyo")).text


def test_every_known_dimension_is_listed_unknown_ones_included():
    lines = why.traits_why(
        [trait(), trait(dimension="colour", value="blue", score=1.0, declared_values="blue")],
        UTC_ZONE,
        dimensions=["craft", "skill", "occasion"],
    )
    assert [(t.dimension, t.value) for t in lines] == [
        ("Craft", "knitting"),
        ("Skill", "unknown"),
        ("Occasion", "unknown"),
        ("Colour", "blue"),
    ]
    assert str(lines[1]) == "Skill: unknown — no answer and no purchases to go by"


def test_behaviours_say_why():
    reasons = why.behaviour_reasons(
        profile(
            frequency=12,
            is_vip=True,
            is_frequent=True,
            is_seasonal=True,
            seasonal_quarter=4,
            is_cart_abandoner=True,
            objection="shipping_cost",
            abandoned_at=datetime(2026, 11, 3, 18, tzinfo=UTC),
            is_class_taker=True,
        ),
        UTC_ZONE,
        seasonal_share=0.7,
        class_orders=2,
        class_last_on=date(2026, 3, 14),
    )
    assert [str(r) for r in reasons] == [
        "VIP: among the customers who make the top 20% of revenue",
        "Frequent: 12 orders: among the fifth of customers with the most orders (F score 5)",
        "Seasonal: 70% of orders in Q4, across at least two years",
        "Cart abandoner: answered the exit survey on 3 Nov 2026, objection: shipping cost, "
        "no order since",
        "Class taker: bought from the “classes” category (2 orders, last on 14 Mar 2026)",
    ]


def test_behaviours_without_the_facts_state_the_rule_and_none_means_empty():
    assert why.behaviour_reasons(profile(), UTC_ZONE) == []
    seasonal = why.behaviour_reasons(profile(is_seasonal=True, seasonal_quarter=2), UTC_ZONE)
    assert str(seasonal[0]) == "Seasonal: at least 60% of orders in Q2, across at least two years"
    quiet = why.behaviour_reasons(
        profile(is_cart_abandoner=True, abandoned_at=OCT_2, is_class_taker=True), UTC_ZONE
    )
    assert [str(r) for r in quiet] == [
        "Cart abandoner: answered the exit survey on 2 Oct 2026, no order since",
        "Class taker: bought from the “classes” category",
    ]


@pytest.mark.parametrize(
    "stage, recency, expected",
    [
        ("new", 3, "first order on 5 Jan 2024, within 30 days"),
        ("active", 10, "last order 10 days before 20 Nov 2026, within the churn window"),
        (
            "lapsed",
            1,
            "last order 1 day before 20 Nov 2026: beyond the churn window, within twice it",
        ),
        ("churned", 400, "last order 400 days before 20 Nov 2026: beyond twice the churn window"),
    ],
)
def test_lifecycle_says_why(stage, recency, expected):
    facts = profile(lifecycle=stage, recency_days=recency)
    assert why.lifecycle_reason(facts, AS_OF, UTC_ZONE) == expected


def test_prospects_and_uncovered_cells_say_so():
    prospect = profile(lifecycle="prospect", last_order_on=None, r=None, f=None, rfm_segment=None)
    assert why.lifecycle_reason(prospect, AS_OF, UTC_ZONE) == "no counted orders yet"
    assert why.rfm_reason(prospect) == "no counted orders, so no R, F or M score"
    assert why.rfm_reason(profile()) == "R 5, F 4: Champions in your RFM map"
    assert why.rfm_reason(profile(rfm_segment=None)) == (
        "R 5, F 4: no row of your RFM map names this cell"
    )


# --- the customer page -------------------------------------------------------------------


def page_text(client, customer) -> str:
    response = client.get(f"/customers/{customer.id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    section = html[
        html.index('id="profile"') : html.index("</section>", html.index('id="profile"'))
    ]
    text = " ".join(re.sub(r"<[^>]+>", " ", section).split())
    for loose, tight in ((" :", ":"), (" ,", ","), ("( ", "("), (" )", ")")):
        text = text.replace(loose, tight)
    return text


def test_before_any_refresh_the_profile_says_so(owner_client):
    ada = add_customer("Ada", email="ada@example.com")
    assert "No refresh has run yet" in page_text(owner_client, ada)


def test_the_profile_shows_scores_and_every_trait_with_its_evidence(owner_client):
    ada = add_customer("Ada", email="ada@example.com")
    yarn = [("Merino", "Y1", 1, 6400, "yarn"), ("Zine", "Z1", 1, 3600, "zines")]
    add_order(ada, "#1", 10000, lines=yarn, placed_at=datetime(2026, 11, 1, 15, tzinfo=UTC))
    declare(ada, datetime(2026, 10, 2, 15, tzinfo=UTC), "craft:knitting")
    declare(ada, datetime(2026, 10, 3, 15, tzinfo=UTC), "occasion:gift", "occasion:self")
    run = run_refresh(as_of=AS_OF)
    text = page_text(owner_client, ada)
    assert f"From refresh run #{run.id}, as of 2026-11-20" in text
    assert "Craft: knitting (0.86) — said Knitting on 2 Oct 2026; " in text
    assert "64% of spend on knitting in the last 365 days" in text
    assert "Occasion: mixed (1.00) — said Gift and Self on 3 Oct 2026: no single value" in text
    assert "Skill: unknown — no answer and no purchases to go by" in text  # no tiers
    assert "Objection: unknown — no answer and no purchases to go by" in text
    assert "R 1 · F 1 · M 1" in text  # the only customer with orders ranks 1 on each
    assert "Lifecycle new (first order on 1 Nov 2026, within 30 days)" in text
    assert "Recency 19 days since the last order" in text
    assert "Frequency 1 counted order" in text
    assert "Monetary 100.00 USD" in text
    assert "First / last order 2026-11-01 / 2026-11-01" in text


def test_disagreeing_evidence_shows_both_sides(owner_client):
    ada = add_customer("Ada", email="ada@example.com")
    lines = [("Merino", "Y1", 1, 9000, "yarn"), ("Zine", "Z1", 1, 1000, "zines")]
    add_order(ada, "#1", 10000, lines=lines, placed_at=datetime(2026, 11, 1, 15, tzinfo=UTC))
    declare(ada, datetime(2026, 10, 2, 15, tzinfo=UTC), "craft:painting")
    run_refresh(as_of=AS_OF)
    assert (
        "Craft: painting (0.60) — said Painting on 2 Oct 2026; "
        "but 90% of spend on knitting in the last 365 days"
    ) in page_text(owner_client, ada)


def test_behaviours_show_their_reasons(owner_client):
    exit_survey = add_survey("exit_intent_objection")
    ada = add_customer("Ada", email="ada@example.com")
    for day in (date(2024, 11, 2), date(2025, 11, 2), date(2025, 12, 5), date(2026, 2, 1)):
        placed = datetime(day.year, day.month, day.day, 15, tzinfo=UTC)
        add_order(
            ada, f"#{day}", 5000, lines=[("Class", "C", 1, 5000, "classes")], placed_at=placed
        )
    declare(
        ada, datetime(2026, 11, 3, 15, tzinfo=UTC), "objection:shipping_cost", survey=exit_survey
    )
    run_refresh(as_of=AS_OF)
    text = page_text(owner_client, ada)
    assert "VIP: among the customers who make the top 20% of revenue" in text
    assert "Seasonal: 75% of orders in Q4, across at least two years" in text
    assert (
        "Cart abandoner: answered the exit survey on 3 Nov 2026, objection: shipping cost, "
        "no order since"
    ) in text
    assert "Class taker: bought from the “classes” category (4 orders, last on 1 Feb 2026)" in text


def test_the_seasonal_share_counts_quarters_in_the_shops_time_zone(owner_client):
    set_shop(timezone="America/New_York")
    ada = add_customer("Ada", email="ada@example.com")
    # 1 Oct 02:00 UTC is still 30 Sep in New York: Q3 there.
    for i, at in enumerate(
        (
            datetime(2024, 11, 2, 15, tzinfo=UTC),
            datetime(2025, 11, 2, 15, tzinfo=UTC),
            datetime(2025, 12, 2, 15, tzinfo=UTC),
            datetime(2025, 10, 1, 2, tzinfo=UTC),
            datetime(2026, 2, 1, 15, tzinfo=UTC),
        )
    ):
        add_order(ada, f"#{i}", 5000, placed_at=at)
    add_order(ada, "#cancelled", 5000, placed_at=OCT_2 + timedelta(days=40), cancelled_at=OCT_2)
    run_refresh(as_of=AS_OF)
    assert "Seasonal: 60% of orders in Q4" in page_text(owner_client, ada)


def test_a_customer_newer_than_the_run_is_told_to_wait(owner_client):
    run = run_refresh(as_of=AS_OF)
    ada = add_customer("Ada", email="ada@example.com")
    text = page_text(owner_client, ada)
    assert f"arrived after the last refresh (run #{run.id}" in text
