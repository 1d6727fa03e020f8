"""Profiles match issue 4's definitions exactly: checked against a straightforward Python
computation of the same definitions on generated edge cases, and on the issue's examples."""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from tests.factories import add_customer, add_order, add_survey
from webapp.extensions import db
from webapp.models import (
    Customer,
    CustomerCategoryStat,
    CustomerProfile,
    CustomerTrait,
    DeclaredTrait,
    Order,
    OrderLine,
    ShopSettings,
    SurveyAnswer,
    SurveyResponse,
)
from webapp.segmentation.refresh import run_refresh

TZ = "America/New_York"
AS_OF = date(2025, 6, 30)
CATEGORIES = ["yarn", "needles", "paint", "brushes", "classes", None, "zines"]
TIERS = ["starter", "standard", "premium", None]
SKILL = {"starter": "beginner", "standard": "intermediate", "premium": "experienced"}
CRAFT = {"yarn": "knitting", "needles": "knitting", "paint": "painting", "brushes": "painting"}
DEFAULT_MAP = [  # the map, written out cell by cell: (R range, F range, name)
    ((1, 2), (1, 2), "Hibernating"),
    ((1, 2), (3, 4), "At Risk"),
    ((1, 2), (5, 5), "Can't Lose Them"),
    ((3, 3), (1, 2), "About to Sleep"),
    ((3, 3), (3, 3), "Need Attention"),
    ((3, 4), (4, 5), "Loyal Customers"),
    ((4, 4), (1, 1), "Promising"),
    ((5, 5), (1, 1), "New Customers"),
    ((4, 5), (2, 3), "Potential Loyalists"),
    ((5, 5), (4, 5), "Champions"),
]


def set_shop(**fields) -> ShopSettings:
    shop = db.session.get(ShopSettings, 1)
    for name, value in fields.items():
        setattr(shop, name, value)
    db.session.commit()
    return shop


def declare(customer: Customer, at: datetime, *traits: str, survey=None) -> SurveyResponse:
    """A response by `customer` at `at` whose answer declared `traits` ("craft:knitting")."""
    survey = survey or add_survey()
    response = SurveyResponse(
        public_id=uuid.uuid4().hex,
        survey_id=survey.id,
        customer_id=customer.id,
        shown_at=at,
        started_at=at,
    )
    db.session.add(response)
    db.session.flush()
    answer = SurveyAnswer(
        response_id=response.id, survey_id=survey.id, question_id="q", value={}, answered_at=at
    )
    db.session.add(answer)
    db.session.flush()
    for trait in traits:
        dimension, value = trait.split(":")
        db.session.add(
            DeclaredTrait(
                answer_id=answer.id,
                response_id=response.id,
                dimension=dimension,
                value=value,
                declared_at=at,
            )
        )
    db.session.commit()
    return response


# --- the reference: the definitions, written the plain way --------------------------------


def reference(orders: list[dict], customer_ids: list[int], as_of: date, tz: str, churn: int):
    zone = ZoneInfo(tz)
    end = datetime(as_of.year, as_of.month, as_of.day, tzinfo=zone) + timedelta(days=1)

    def local_day(at: datetime) -> date:
        return at.astimezone(zone).date()

    counted = [
        o
        for o in orders
        if o["cancelled_at"] is None
        and (o["financial_status"] or "").lower() not in ("voided", "cancelled")
        and o["total"] - o["refunded"] > 0
        and o["placed_at"] < end
    ]
    by_customer = defaultdict(list)
    for o in counted:
        by_customer[o["customer"]].append(o)
    profiles = {}
    for cid in customer_ids:
        mine = by_customer.get(cid, [])
        if not mine:
            profiles[cid] = {"frequency": 0, "monetary_cents": 0, "lifecycle": "prospect"}
            continue
        days = [local_day(o["placed_at"]) for o in mine]
        monetary = sum(o["total"] - o["refunded"] for o in mine)
        profiles[cid] = {
            "frequency": len(mine),
            "monetary_cents": monetary,
            "aov_cents": int((monetary / len(mine)) + 0.5 + 1e-9),
            "first_order_on": min(days),
            "last_order_on": max(days),
            "recency_days": (as_of - max(days)).days,
        }
    buyers = [cid for cid in customer_ids if profiles[cid]["frequency"]]
    n = len(buyers)

    def scores(key, worst_first):  # RANK(): ties share the lowest rank
        ordered = sorted(buyers, key=key, reverse=worst_first)
        result = {}
        for position, cid in enumerate(ordered):
            rank = 1 + sum(1 for other in ordered[:position] if key(other) != key(cid))
            result[cid] = 1 + (5 * (rank - 1)) // n
        return result

    r = scores(lambda c: profiles[c]["recency_days"], worst_first=True)
    f = scores(lambda c: profiles[c]["frequency"], worst_first=False)
    m = scores(lambda c: profiles[c]["monetary_cents"], worst_first=False)
    revenue = sum(profiles[c]["monetary_cents"] for c in buyers)
    running = 0
    vip = set()
    for cid in sorted(buyers, key=lambda c: (-profiles[c]["monetary_cents"], c)):
        if running < revenue * 0.2:
            vip.add(cid)
        running += profiles[cid]["monetary_cents"]
    for cid in buyers:
        p = profiles[cid]
        p.update(r=r[cid], f=f[cid], m=m[cid])
        p["rfm_segment"] = next(
            name
            for (r_lo, r_hi), (f_lo, f_hi), name in DEFAULT_MAP
            if r_lo <= p["r"] <= r_hi and f_lo <= p["f"] <= f_hi
        )
        if (as_of - p["first_order_on"]).days <= 30:
            p["lifecycle"] = "new"
        elif p["recency_days"] <= churn:
            p["lifecycle"] = "active"
        elif p["recency_days"] <= 2 * churn:
            p["lifecycle"] = "lapsed"
        else:
            p["lifecycle"] = "churned"
        p["is_frequent"] = p["f"] == 5
        p["is_vip"] = cid in vip
        quarters = Counter()
        years = defaultdict(set)
        for o in by_customer[cid]:
            local = o["placed_at"].astimezone(zone)
            quarter = (local.month - 1) // 3 + 1
            quarters[quarter] += 1
            years[quarter].add(local.year)
        p["is_seasonal"] = any(
            count >= 0.6 * len(by_customer[cid]) and len(years[q]) >= 2
            for q, count in quarters.items()
        )
    # per customer and category; observed craft and skill traits
    stats = {}
    observed = {}
    year_start = as_of - timedelta(days=365)
    for cid in buyers:
        cats = defaultdict(lambda: {"orders": set(), "spend": 0, "spend_365": 0, "last": None})
        tiers_all, tiers_365 = Counter(), Counter()
        for o in by_customer[cid]:
            recent = local_day(o["placed_at"]) >= year_start
            for line in o["lines"]:
                amount = line["quantity"] * line["price"]
                c = cats[line["category"] or ""]
                c["orders"].add(o["external_id"])
                c["spend"] += amount
                c["spend_365"] += amount if recent else 0
                day = local_day(o["placed_at"])
                c["last"] = day if c["last"] is None else max(c["last"], day)
                tiers_all[line["tier"]] += amount
                tiers_365[line["tier"]] += amount if recent else 0
        for cat, c in cats.items():
            stats[(cid, cat)] = (len(c["orders"]), c["spend"], c["spend_365"], c["last"])
        profiles[cid]["is_class_taker"] = "classes" in cats
        total_365 = sum(c["spend_365"] for c in cats.values())
        key = "spend_365" if total_365 > 0 else "spend"
        total = total_365 if total_365 > 0 else sum(c["spend"] for c in cats.values())
        crafts = Counter()
        for cat, c in cats.items():
            if cat in CRAFT:
                crafts[CRAFT[cat]] += c[key]
        tiers = tiers_365 if total_365 > 0 else tiers_all
        skills = Counter({SKILL[t]: v for t, v in tiers.items() if t in SKILL})
        for dimension, spends in (("craft", crafts), ("skill", skills)):
            shares = {v: s / total for v, s in spends.items() if s > 0 and total > 0}
            if shares:
                observed[(cid, dimension)] = shares
    for cid in customer_ids:
        profiles[cid].setdefault("is_class_taker", False)
    return profiles, stats, observed


def best_trait(declared: set[str], shares: dict[str, float], wd=0.6, wo=0.4, threshold=0.4):
    """The trait rule: (value, score), or None when there is no evidence."""
    if not declared and not shares:
        return None
    values = declared | set(shares)
    if declared and shares:
        score = {v: wd * (v in declared) + wo * shares.get(v, 0) for v in values}
    elif declared:
        score = {v: 1.0 for v in values}
    else:
        score = dict(shares)
    top = max(score.values())
    best = [v for v in values if abs(score[v] - top) < 1e-9]
    value = best[0] if len(best) == 1 and top >= threshold - 1e-9 else "mixed"
    return value, top


# --- generated edge cases ------------------------------------------------------------------


def generate_shop(seed: int) -> tuple[list[dict], list[int]]:
    """Customers and orders with ties, refunds, cancellations, voids, orders either side of
    local midnight and of the as-of day, and over DST changes."""
    rng = random.Random(seed)
    zone = ZoneInfo(TZ)
    customers = [
        Customer(email=f"c{i}@example.com", email_norm=f"c{i}@example.com", external_id=f"c{i}")
        for i in range(60)
    ]
    db.session.add_all(customers)
    db.session.flush()
    orders = []
    counter = 0
    for customer in customers:
        for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3, 4, 6, 9])):
            counter += 1
            day = date(2023, 1, 1) + timedelta(days=rng.randrange(0, 940))
            if rng.random() < 0.15:  # a quarter's worth of seasonal shoppers
                day = date(rng.choice([2023, 2024, 2025]), 12, rng.randrange(1, 28))
            hour, minute = rng.choice([(0, 0), (0, 30), (12, 0), (23, 59), (23, 30), (1, 0)])
            local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
            total = rng.choice([1000, 2500, 2500, 4999, 5000, 12000])
            refunded = rng.choice([0, 0, 0, 0, 500, total])
            lines = [
                {
                    "category": rng.choice(CATEGORIES),
                    "tier": rng.choice(TIERS),
                    "quantity": rng.randrange(1, 4),
                    "price": rng.choice([300, 750, 1200]),
                }
                for _ in range(rng.randrange(1, 4))
            ]
            row = {
                "customer": customer.id,
                "external_id": f"#{counter}",
                "placed_at": local.astimezone(UTC),
                "total": total,
                "refunded": refunded,
                "cancelled_at": local.astimezone(UTC) if rng.random() < 0.08 else None,
                "financial_status": rng.choice(["paid", "paid", "paid", "voided", "refunded"]),
                "lines": lines,
            }
            orders.append(row)
    # Fixed edges: the as-of day's last minute counts, the next day's first does not.
    edge = customers[0].id
    for external_id, local in (
        ("#edge-in", datetime(2025, 6, 30, 23, 59, tzinfo=zone)),
        ("#edge-out", datetime(2025, 7, 1, 0, 0, 30, tzinfo=zone)),
    ):
        orders.append(
            {
                "customer": edge,
                "external_id": external_id,
                "placed_at": local.astimezone(UTC),
                "total": 2000,
                "refunded": 0,
                "cancelled_at": None,
                "financial_status": "paid",
                "lines": [{"category": "yarn", "tier": "starter", "quantity": 1, "price": 2000}],
            }
        )
    for row in orders:
        order = Order(
            customer_id=row["customer"],
            external_id=row["external_id"],
            placed_at=row["placed_at"],
            total_cents=row["total"],
            refunded_cents=row["refunded"],
            cancelled_at=row["cancelled_at"],
            financial_status=row["financial_status"],
        )
        for position, line in enumerate(row["lines"], start=1):
            order.lines.append(
                OrderLine(
                    position=position,
                    name="item",
                    quantity=line["quantity"],
                    price_cents=line["price"],
                    category=line["category"],
                    tier=line["tier"],
                )
            )
        db.session.add(order)
    db.session.commit()
    return orders, [c.id for c in customers]


def profile_rows(run_id: int) -> dict[int, CustomerProfile]:
    rows = db.session.scalars(select(CustomerProfile).where(CustomerProfile.run_id == run_id))
    return {p.customer_id: p for p in rows}


@pytest.mark.parametrize("seed", [1, 2])
def test_profiles_match_the_definitions_on_generated_edge_cases(app, seed):
    set_shop(timezone=TZ)
    orders, customer_ids = generate_shop(seed)
    # A craft the category table maps, and one category that maps to no craft.
    run = run_refresh(as_of=AS_OF)
    assert run.status == "done"
    expected, stats, observed = reference(orders, customer_ids, AS_OF, TZ, churn=90)
    got = profile_rows(run.id)
    assert set(got) == set(customer_ids)
    fields = [
        "frequency", "monetary_cents", "aov_cents", "first_order_on", "last_order_on",
        "recency_days", "r", "f", "m", "rfm_segment", "lifecycle", "is_frequent", "is_vip",
        "is_seasonal", "is_class_taker",
    ]  # fmt: skip
    for cid in customer_ids:
        actual = {name: getattr(got[cid], name) for name in fields}
        wanted = {name: expected[cid].get(name) for name in fields}
        if not expected[cid]["frequency"]:
            wanted.update(is_frequent=False, is_vip=False, is_seasonal=False)
        assert actual == wanted, f"customer {cid}"
    got_stats = {
        (s.customer_id, s.category): (
            s.orders,
            s.spend_cents,
            s.spend_365_cents,
            s.last_purchase_on,
        )
        for s in db.session.scalars(
            select(CustomerCategoryStat).where(CustomerCategoryStat.run_id == run.id)
        )
    }
    assert got_stats == stats
    traits = {
        (t.customer_id, t.dimension): t
        for t in db.session.scalars(select(CustomerTrait).where(CustomerTrait.run_id == run.id))
    }
    assert set(traits) == set(observed)
    for key, shares in observed.items():
        value, score = best_trait(set(), shares)
        assert (traits[key].value, traits[key].score) == (value, pytest.approx(score)), key


def test_emails_differing_only_in_case_are_one_customer_with_both_orders(app, tmp_path):
    from webapp.imports.service import import_orders_file

    path = tmp_path / "orders.csv"
    path.write_text(
        "order_id,email,placed_at,total\n"
        "1,Ann@Example.com,2025-06-01,20.00\n"
        "2,ann@example.com ,2025-06-20,30.00\n"
    )
    report = import_orders_file(str(path))
    assert report.orders_created == 2
    run = run_refresh(as_of=AS_OF)
    (profile,) = profile_rows(run.id).values()
    assert (profile.frequency, profile.monetary_cents, profile.recency_days) == (2, 5000, 10)


def test_ties_share_the_lowest_rank(app):
    """Four buyers, two tied on everything: RANK gives ranks 1, 1, 3, 4 -> scores 1, 1, 3, 4."""
    customers = [add_customer(email=f"t{i}@example.com") for i in range(4)]
    at = datetime(2025, 6, 1, 12, tzinfo=UTC)
    for i, (customer, cents) in enumerate(zip(customers, [1000, 1000, 2000, 3000], strict=True)):
        add_order(customer, f"#{i}", cents, placed_at=at + timedelta(days=[0, 0, 5, 9][i]))
    run = run_refresh(as_of=AS_OF)
    got = profile_rows(run.id)
    assert [got[c.id].m for c in customers] == [1, 1, 3, 4]
    assert [got[c.id].r for c in customers] == [1, 1, 3, 4]
    assert [got[c.id].f for c in customers] == [1, 1, 1, 1]


def test_as_of_ignores_later_orders_and_measures_recency_from_that_day(app):
    ada = add_customer(email="ada@example.com")
    add_order(ada, "#1", 1000, placed_at=datetime(2025, 1, 10, 12, tzinfo=UTC))
    add_order(ada, "#2", 9000, placed_at=datetime(2025, 3, 10, 12, tzinfo=UTC))
    run = run_refresh(as_of=date(2025, 2, 1))
    profile = profile_rows(run.id)[ada.id]
    assert (profile.frequency, profile.monetary_cents, profile.recency_days) == (1, 1000, 22)
    assert profile.lifecycle == "new"


@pytest.mark.parametrize(
    "declared, spend, expected",
    [
        # the examples: said knitting, 64% yarn -> knitting (0.86)
        (["craft:knitting"], {"yarn": 64, "zines": 36}, ("knitting", 0.856)),
        ([], {"yarn": 64, "zines": 36}, ("knitting", 0.64)),
        ([], {"yarn": 35, "paint": 30, "zines": 35}, ("mixed", 0.35)),
        (["craft:painting"], {"yarn": 90, "zines": 10}, ("painting", 0.6)),
        (["craft:pottery"], {}, ("pottery", 1.0)),
        (["craft:knitting", "craft:painting"], {}, ("mixed", 1.0)),
        ([], {"yarn": 40, "zines": 60}, ("knitting", 0.4)),  # the threshold itself wins
    ],
)
def test_preference_traits_combine_declared_and_observed_evidence(app, declared, spend, expected):
    ada = add_customer(email="ada@example.com")
    if spend:
        lines = [(cat, cat, 1, cents * 100, cat) for cat, cents in spend.items()]
        add_order(ada, "#1", 10000, lines=lines, placed_at=datetime(2025, 6, 1, tzinfo=UTC))
    if declared:
        declare(ada, datetime(2025, 5, 1, tzinfo=UTC), *declared)
    run = run_refresh(as_of=AS_OF)
    trait = db.session.get(CustomerTrait, (run.id, ada.id, "craft"))
    assert (trait.value, round(trait.score, 3)) == expected
    if declared and spend:  # the why keeps both kinds of evidence
        assert trait.declared_values == declared[0].split(":")[1]
        assert (trait.observed_value, trait.observed_window) == ("knitting", "365d")


def test_only_the_latest_declaration_counts_and_none_after_the_as_of_day(app):
    ada = add_customer(email="ada@example.com")
    declare(ada, datetime(2025, 1, 1, tzinfo=UTC), "skill:beginner")
    declare(ada, datetime(2025, 3, 1, tzinfo=UTC), "skill:experienced", "occasion:gift")
    declare(ada, datetime(2025, 7, 2, tzinfo=UTC), "skill:intermediate")
    run = run_refresh(as_of=AS_OF)
    traits = {
        t.dimension: (t.value, t.declared_values)
        for t in db.session.scalars(select(CustomerTrait).where(CustomerTrait.run_id == run.id))
    }
    assert traits == {
        "skill": ("experienced", "experienced"),
        "occasion": ("gift", "gift"),
    }


def test_observed_evidence_falls_back_to_all_time_when_the_last_year_is_empty(app):
    ada = add_customer(email="ada@example.com")
    lines = [("Brush", "b", 1, 3000, "brushes")]
    add_order(ada, "#1", 3000, lines=lines, placed_at=datetime(2023, 6, 1, tzinfo=UTC))
    run = run_refresh(as_of=AS_OF)
    trait = db.session.get(CustomerTrait, (run.id, ada.id, "craft"))
    assert (trait.value, trait.score, trait.observed_window) == ("painting", 1.0, "all")


def test_cart_abandoners_answered_exit_intent_lately_and_have_not_ordered_since(app):
    survey = add_survey("exit_intent_objection")
    ada, bob, cy = (add_customer(email=f"{n}@example.com") for n in ("ada", "bob", "cy"))
    june = datetime(2025, 6, 20, 12, tzinfo=UTC)
    declare(ada, june, "objection:shipping_cost", survey=survey)
    declare(bob, june, "objection:shipping_cost", survey=survey)
    add_order(bob, "#1", 2000, placed_at=june + timedelta(days=2))
    declare(cy, datetime(2025, 5, 1, tzinfo=UTC), "objection:price", survey=survey)
    declare(cy, june, "craft:knitting")  # not an exit-intent survey
    run = run_refresh(as_of=AS_OF)
    got = profile_rows(run.id)
    assert (got[ada.id].is_cart_abandoner, got[ada.id].objection) == (True, "shipping_cost")
    assert got[ada.id].lifecycle == "prospect"
    assert not got[bob.id].is_cart_abandoner
    assert not got[cy.id].is_cart_abandoner


def test_trait_weights_are_the_shops(app):
    set_shop(trait_declared_weight_pct=20, trait_observed_weight_pct=80)
    ada = add_customer(email="ada@example.com")
    lines = [("Yarn", "y", 1, 9000, "yarn"), ("Zine", "z", 1, 1000, "zines")]
    add_order(ada, "#1", 10000, lines=lines, placed_at=datetime(2025, 6, 1, tzinfo=UTC))
    declare(ada, datetime(2025, 5, 1, tzinfo=UTC), "craft:painting")
    run = run_refresh(as_of=AS_OF)
    trait = db.session.get(CustomerTrait, (run.id, ada.id, "craft"))
    assert (trait.value, round(trait.score, 2)) == ("knitting", 0.72)


def test_revenue_beyond_32_bit_integers_is_summed_exactly(app):
    big, small = add_customer(email="big@example.com"), add_customer(email="small@example.com")
    add_order(big, "#1", 3_000_000_000, placed_at=datetime(2025, 6, 1, tzinfo=UTC))
    add_order(big, "#2", 3_000_000_001, placed_at=datetime(2025, 6, 2, tzinfo=UTC))
    add_order(small, "#3", 1_000, placed_at=datetime(2025, 6, 1, tzinfo=UTC))
    run = run_refresh(as_of=AS_OF)
    got = profile_rows(run.id)
    assert (got[big.id].monetary_cents, got[big.id].aov_cents) == (6_000_000_001, 3_000_000_001)
    assert got[big.id].is_vip and not got[small.id].is_vip
