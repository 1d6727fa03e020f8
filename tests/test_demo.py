"""`patchwork demo` and the synthetic shop generator behind it (and behind bench/)."""

from __future__ import annotations

import csv
import math
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from webapp.campaigns import results
from webapp.demo.campaigns import CAMPAIGNS
from webapp.demo.command import DEMO_EMAIL, DEMO_PASSWORD, DEMO_SHOP_NAME
from webapp.demo.generator import (
    LINE_COLUMNS,
    ORDER_COLUMNS,
    PRODUCT_COLUMNS,
    Scale,
    SyntheticShop,
)
from webapp.extensions import db
from webapp.models import (
    AnswerChoice,
    Campaign,
    CampaignRecipient,
    Customer,
    DeclaredTrait,
    EmailEvent,
    Order,
    OrderLine,
    OutboxMessage,
    Product,
    RefreshRun,
    Segment,
    ShopSettings,
    Survey,
    SurveyAnswer,
    SurveyResponse,
    User,
)

SHOPIFY_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}$")


def counts() -> dict[str, int]:
    return {
        model.__name__: db.session.scalar(select(func.count()).select_from(model))
        for model in (Customer, Order, OrderLine, Product, User, Segment, RefreshRun)
    }


def test_demo_builds_the_shop_and_a_second_run_adds_nothing(runner):
    result = runner.invoke(args=["demo", "--no-serve", "--customers", "60"])

    assert result.exit_code == 0, result.output
    assert DEMO_EMAIL in result.output and DEMO_PASSWORD in result.output
    assert "http://127.0.0.1:5000/" in result.output
    first = counts()
    assert first["Customer"] == 60
    imported = select(func.count(Order.id)).where(Order.external_id.not_like("#D-%"))
    assert db.session.scalar(imported) == Scale.for_customers(60).orders  # and campaigns' orders
    assert first["OrderLine"] > first["Order"]
    assert first["Product"] > 36  # 12 categories x 3 tiers, some with variants
    tiers = set(db.session.scalars(select(Product.tier).distinct()))
    assert tiers == {"starter", "standard", "premium"}
    owner = db.session.scalars(select(User).where(User.email == DEMO_EMAIL)).one()
    assert owner.role == "owner"
    shop = db.session.get(ShopSettings, 1)
    assert (shop.name, shop.timezone) == (DEMO_SHOP_NAME, "America/New_York")
    assert db.session.scalar(select(func.max(Order.placed_at))) <= datetime.now(UTC)
    # The template segments and a first refresh, for the dashboard and the segment pages.
    assert first["Segment"] >= 20 and first["RefreshRun"] == 1
    run = db.session.scalars(select(RefreshRun)).one()
    assert run.status == "done" and run.counts["customers"] == 60
    assert len(run.counts["segments"]) == first["Segment"]

    again = runner.invoke(args=["demo", "--no-serve", "--customers", "60"])

    assert again.exit_code == 0, again.output
    assert "already built" in again.output
    assert counts() == first


def test_demo_login_works_in_the_browser_form(runner, auth):
    runner.invoke(args=["demo", "--no-serve", "--customers", "5"])

    response = auth.login(DEMO_EMAIL, DEMO_PASSWORD)

    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_demo_refuses_a_database_holding_another_shops_orders(runner):
    db.session.add(
        Order(external_id="#1", placed_at=datetime.now(UTC), total_cents=1000, currency="USD")
    )
    db.session.commit()

    result = runner.invoke(args=["demo", "--no-serve", "--customers", "5"])

    assert result.exit_code == 1
    assert "empty database" in result.output
    assert counts()["Order"] == 1


def test_demo_serves_with_the_scheduler_in_process(runner, monkeypatch):
    calls = {}
    monkeypatch.setattr(
        "werkzeug.serving.run_simple", lambda host, port, app, **kw: calls.update(kw, at=port)
    )
    monkeypatch.setattr(
        "webapp.scheduler.process.start_in_process", lambda app: calls.update(runner=1)
    )
    monkeypatch.setattr(
        "webapp.demo.command.start_shop_page",
        lambda host, port, page: calls.update(shop=(host, port, page)),
    )

    result = runner.invoke(args=["demo", "--customers", "5", "--port", "5099"])

    assert result.exit_code == 0, result.output
    shop_host, shop_port, page = calls.pop("shop")
    assert calls == {"at": 5099, "runner": 1, "use_reloader": False, "use_debugger": False,
                     "threaded": True}  # fmt: skip
    assert (shop_host, shop_port) == ("127.0.0.1", 5001)
    assert page.patchwork_url == "http://127.0.0.1:5099"
    assert "http://127.0.0.1:5001/" in result.output


# --- surveys and the demo shop's own pages -------------------------------------------------


def test_demo_publishes_surveys_with_thousands_of_answers_and_a_second_run_keeps_them(runner):
    result = runner.invoke(args=["demo", "--no-serve", "--customers", "60"])

    assert result.exit_code == 0, result.output
    surveys = db.session.scalars(select(Survey).order_by(Survey.id)).all()
    assert [s.template_key for s in surveys] == [
        "post_purchase_profile",
        "exit_intent_objection",
        "nps",
    ]
    assert all(s.is_active for s in surveys)
    answers = db.session.scalar(select(func.count()).select_from(SurveyAnswer))
    assert answers > 700
    responses = db.session.scalars(select(SurveyResponse)).all()
    assert len(responses) > 1600
    assert all(r.shown_at <= datetime.now(UTC) for r in responses)
    by_survey = defaultdict(list)
    for response in responses:
        by_survey[response.survey_id].append(response)
    profile, exit_survey, nps = (by_survey[s.id] for s in surveys)
    # Post-purchase answers come with a signed order id: linked to the order's customer.
    assert profile and all(r.identity_verified and r.order_id for r in profile)
    for r in profile:
        assert db.session.get(Order, r.order_id).customer_id == r.customer_id
    # Exit answers are mostly anonymous; visitors who bought later are linked.
    linked = [r for r in exit_survey if r.customer_id]
    assert 0 < len(linked) < len(exit_survey) / 4
    assert {r.device for r in responses} == {"mobile", "tablet", "desktop"}
    assert any(r.completed_at for r in nps) and any(r.dismissed_at for r in nps)
    assert db.session.scalar(select(func.count()).select_from(AnswerChoice)) > 500
    assert db.session.scalar(select(func.count()).select_from(DeclaredTrait)) > 100
    shop = db.session.get(ShopSettings, 1)
    assert "http://127.0.0.1:5001" in shop.allowed_origins.split()

    again = runner.invoke(args=["demo", "--no-serve", "--customers", "60", "--shop-port", "5002"])

    assert again.exit_code == 0, again.output
    assert db.session.scalar(select(func.count()).select_from(Survey)) == 3
    assert db.session.scalar(select(func.count()).select_from(SurveyAnswer)) == answers
    db.session.refresh(shop)
    assert shop.allowed_origins.split() == ["http://127.0.0.1:5001", "http://127.0.0.1:5002"]


def test_every_demo_answer_is_one_the_survey_accepts(runner):
    from surveys.answers import validate_answer
    from webapp.surveys.responses import live_definition

    runner.invoke(args=["demo", "--no-serve", "--customers", "30"])

    definitions = {s.id: live_definition(s) for s in db.session.scalars(select(Survey))}
    answers = db.session.scalars(select(SurveyAnswer)).all()
    assert answers
    for answer in answers:
        question = definitions[answer.survey_id].question(answer.question_id)
        if answer.value is not None:  # None: an optional question skipped
            validate_answer(question, answer.value)  # raises if the demo broke a rule


def test_the_demo_refuses_the_same_port_for_the_shop(runner):
    result = runner.invoke(args=["demo", "--no-serve", "--customers", "5", "--shop-port", "5000"])
    assert result.exit_code != 0 and "must differ from --port" in result.output


def test_the_demo_shop_pages_carry_the_embed_tag_and_a_signed_order(runner):
    from werkzeug.test import Client

    from webapp.demo.command import demo_shop_page
    from webapp.demo.shop_page import shop_app
    from webapp.surveys.responses import Identity, identity_verified

    runner.invoke(args=["demo", "--no-serve", "--customers", "5"])
    shop = db.session.get(ShopSettings, 1)
    client = Client(shop_app(demo_shop_page("http://127.0.0.1:5000")))

    home = client.get("/")
    thanks = client.get("/checkout/thank-you")

    tag = f'<script async src="http://127.0.0.1:5000/embed.js" data-shop-key="{shop.embed_key}"'
    assert home.status_code == 200 and tag in home.text
    assert "data-order-id" not in home.text
    order_ref = re.search(r'data-order-id="([^"]+)"', thanks.text)[1]
    signature = re.search(r'data-signature="([0-9a-f]{64})"', thanks.text)[1]
    assert tag in thanks.text
    assert db.session.scalar(select(Order.id).where(Order.external_id == order_ref))
    assert identity_verified(shop.embed_secret, Identity(order_ref=order_ref, signature=signature))
    assert client.get("/products/merino-worsted-yarn").status_code == 200
    assert client.get("/nope").status_code == 404


def test_the_demo_shop_is_served_over_http_on_its_own_port():
    from urllib.request import urlopen

    from webapp.demo.shop_page import ShopPage, start_shop_page

    server = start_shop_page("127.0.0.1", 0, ShopPage("http://127.0.0.1:5000", "key-1", "Shop"))
    try:
        with urlopen(f"http://127.0.0.1:{server.server_port}/", timeout=5) as response:
            html = response.read().decode()
    finally:
        server.shutdown()

    assert 'src="http://127.0.0.1:5000/embed.js" data-shop-key="key-1"' in html


# --- campaigns -----------------------------------------------------------------------------


def test_demo_sends_two_campaigns_with_events_and_attributed_orders(runner):
    now = datetime.now(UTC)
    result = runner.invoke(args=["demo", "--no-serve", "--customers", "300"])

    assert result.exit_code == 0, result.output
    assert "Campaigns: 2 sent" in result.output
    campaigns = db.session.scalars(select(Campaign).order_by(Campaign.id)).all()
    assert [c.status for c in campaigns] == ["sent", "sent"]
    closed, still_open = campaigns
    assert timedelta(days=39) < now - closed.started_at < timedelta(days=41)
    assert timedelta(days=3) < now - still_open.started_at < timedelta(days=5)
    for campaign, plan in zip(campaigns, CAMPAIGNS, strict=True):
        report = results.compute(campaign)
        mailed, held_out = report.mailed, report.holdout
        # The real sender's ledger and outbox, moved back to the day of the send.
        outbox = db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.campaign_id == campaign.id)
        ).all()
        assert len(outbox) == mailed.size > 0 and held_out.size > 0
        assert {m.created_at for m in outbox} == {campaign.started_at}
        sent_at = select(CampaignRecipient.sent_at).where(
            CampaignRecipient.campaign_id == campaign.id, CampaignRecipient.status == "sent"
        )
        assert set(db.session.scalars(sent_at)) == {campaign.started_at}
        assert "{{" not in outbox[0].html and plan.discount_code in outbox[0].text
        # SendGrid's events, after the send and not after now.
        assert report.events["delivered"] + report.events["bounced"] == mailed.size
        assert report.events["opened"] >= report.events["clicked"]
        assert report.events["unsubscribed"] >= 1
        times = db.session.scalars(
            select(EmailEvent.occurred_at).where(EmailEvent.campaign_id == campaign.id)
        ).all()
        assert campaign.started_at <= min(times) and max(times) <= datetime.now(UTC)
        # Conversions in both groups, the mailed group's at least its planned rate.
        assert mailed.converters >= math.ceil(mailed.size * plan.mailed_rate)
        assert held_out.converters >= 1
    assert report.window_closed is False and results.compute(closed).window_closed is True
    assert db.session.scalar(select(func.count()).where(EmailEvent.event == "click")) > 0
    assert db.session.scalar(select(func.count()).where(EmailEvent.machine_open.is_(True))) > 0
    # Unsubscribes and bounces suppress the customer, as the webhook does.
    unsubscribed = select(EmailEvent.customer_id).where(EmailEvent.event == "unsubscribe")
    for customer_id in db.session.scalars(unsubscribed):
        assert db.session.get(Customer, customer_id).unsubscribed_at is not None
    # The campaigns' orders are counted in their customers' totals.
    buyers = db.session.scalars(
        select(Order.customer_id).where(Order.external_id.like("#D-%")).distinct()
    ).all()
    for customer in db.session.scalars(select(Customer).where(Customer.id.in_(buyers))):
        live = db.session.scalars(
            select(Order).where(Order.customer_id == customer.id, Order.cancelled_at.is_(None))
        ).all()
        assert customer.orders_count == len(live)
        assert customer.spent_cents == sum(o.total_cents - o.refunded_cents for o in live)
        assert customer.last_order_at == max(o.placed_at for o in live)
    events = db.session.scalar(select(func.count(EmailEvent.id)))

    again = runner.invoke(args=["demo", "--no-serve", "--customers", "300"])

    assert again.exit_code == 0, again.output
    assert db.session.scalar(select(func.count(Campaign.id))) == 2
    assert db.session.scalar(select(func.count(EmailEvent.id))) == events


# --- the generator ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shop_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shop")
    shop = SyntheticShop(Scale.for_customers(1500), seed=7)
    shop.write_products(folder / "products.csv")
    stats = shop.write_orders(folder / "orders.csv")
    with open(folder / "orders.csv", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [dict(zip(header, row, strict=True)) for row in reader]
    return folder, header, rows, stats


def test_orders_file_has_shopifys_header_and_one_row_per_line(shop_files):
    _, header, rows, stats = shop_files

    assert tuple(header) == ORDER_COLUMNS
    assert header[:4] == ["Name", "Email", "Financial Status", "Paid at"]
    assert len(rows) == stats["lines"]
    assert len({r["Name"] for r in rows}) == stats["orders"]
    assert all(SHOPIFY_TIME.match(r["Created at"]) for r in rows)


def test_later_rows_of_a_multi_line_order_repeat_name_and_leave_order_fields_blank(shop_files):
    _, _, rows, _ = shop_files
    by_order = defaultdict(list)
    for row in rows:
        by_order[row["Name"]].append(row)
    multi = [order for order in by_order.values() if len(order) > 1]

    assert len(multi) > 100
    for first, *later in multi:
        assert first["Financial Status"] and first["Total"] and first["Id"]
        for row in later:
            assert row["Name"] == first["Name"]
            assert row["Lineitem name"] and row["Lineitem quantity"]
            blank = [c for c in ORDER_COLUMNS if c not in LINE_COLUMNS]
            assert not any(row[c] for c in blank), row


def test_orders_are_realistic(shop_files):
    _, _, rows, stats = shop_files
    orders = [r for r in rows if r["Financial Status"]]
    per_customer = Counter(r["Email"].lower() for r in orders)
    spellings = defaultdict(set)
    for row in orders:
        spellings[row["Email"].lower()].add(row["Email"])
    months = Counter(int(r["Created at"][5:7]) for r in orders)

    assert len(per_customer) == stats["customers"] == 1500
    once_or_twice = sum(1 for n in per_customer.values() if n <= 2)
    assert once_or_twice / len(per_customer) > 0.6
    assert max(per_customer.values()) >= 20  # a few very large spenders
    assert months[11] + months[12] > 1.5 * (months[6] + months[7])  # Q4 peak
    assert {"paid", "refunded", "partially_refunded"} <= {r["Financial Status"] for r in orders}
    assert any(r["Cancelled at"] for r in orders)
    assert {r["Accepts Marketing"] for r in orders} == {"yes", "no"}
    assert any(len(s) > 1 for s in spellings.values())  # same email, other capitals
    names = [int(r["Name"].lstrip("#")) for r in orders]
    assert names == sorted(names, reverse=True)  # newest first, as Shopify lists them


def test_products_file_has_shopifys_header_and_every_category_in_three_tiers(shop_files):
    folder, _, _, _ = shop_files
    with open(folder / "products.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == PRODUCT_COLUMNS
        rows = list(reader)
    first_rows = [r for r in rows if r["Title"]]
    tiers_by_type = defaultdict(set)
    for row in first_rows:
        tags = {t.strip() for t in row["Tags"].split(",")}
        tiers_by_type[row["Type"]].add(
            "starter" if "kit" in tags else "premium" if "premium" in tags else "standard"
        )

    assert len(tiers_by_type) == 13  # 12 craft categories and classes
    assert all(tiers == {"starter", "standard", "premium"} for tiers in tiers_by_type.values())
    assert len({r["Variant SKU"] for r in rows}) == len(rows)
    assert any(not r["Title"] and r["Handle"] for r in rows)  # a later variant row


def test_the_same_seed_writes_the_same_file(tmp_path):
    for name in ("a.csv", "b.csv"):
        SyntheticShop(Scale.for_customers(40), seed=3).write_orders(tmp_path / name)

    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
