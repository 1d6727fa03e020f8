"""POST /api/orders: bearer tokens, strict validation before any write, idempotent upserts."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.imports.payloads import parse_api_orders, parse_cents, parse_timestamp
from webapp.models import ApiToken, Customer, Order, OrderLine, ShopSettings
from webapp.settings import create_api_token

URL = "/api/orders"


def an_order(**changes) -> dict:
    order = {
        "order_id": "00042",
        "customer_id": "C-7",
        "email": "Ada@Example.com",
        "placed_at": "2024-05-01T14:30:00Z",
        "total": "42.50",
        "currency": "EUR",
        "accepts_marketing": True,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "city": "London",
        "country": "GB",
        "lines": [
            {"sku": "YARN-1", "name": "Merino yarn", "quantity": 2, "price": "20.00"},
            {"name": "Knitting pattern", "quantity": 1, "price": 2.5},
        ],
    }
    order.update(changes)
    return order


@pytest.fixture
def token(app) -> str:
    return create_api_token("test")[1]


def post(client, body, token=None, **kwargs):
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(
        URL,
        data=data,
        headers=headers,
        content_type=kwargs.pop("content_type", "application/json"),
        **kwargs,
    )


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def nothing_stored():
    assert (count(Order), count(Customer), count(OrderLine)) == (0, 0, 0)


# --- the happy path ----------------------------------------------------------------------


def test_orders_are_imported_and_a_repeat_changes_nothing(client, token):
    second = an_order(order_id="00043", placed_at="2024-05-02", total=10, lines=[])
    response = post(client, {"orders": [an_order(), second]}, token)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {
        "customers_created": 1,
        "customers_updated": 0,
        "orders_created": 2,
        "orders_updated": 0,
        "lines": 2,
        "orders_received": 2,
    }
    order = db.session.scalars(select(Order).where(Order.external_id == "00042")).one()
    assert order.total_cents == 4250
    assert order.currency == "EUR"
    assert order.placed_at == datetime(2024, 5, 1, 14, 30, tzinfo=UTC)
    assert [(li.sku, li.quantity, li.price_cents) for li in order.lines] == [
        ("YARN-1", 2, 2000),
        (None, 1, 250),
    ]
    customer = db.session.get(Customer, order.customer_id)
    assert customer.external_id == "C-7"
    assert customer.email == "Ada@Example.com"
    assert customer.accepts_marketing is True

    again = post(client, {"orders": [an_order(), second]}, token)
    assert again.status_code == 200
    counts = again.get_json()
    assert counts["orders_created"] == counts["orders_updated"] == counts["lines"] == 0
    assert counts["customers_created"] == counts["customers_updated"] == 0
    assert count(Order) == 2


def test_a_changed_order_is_updated(client, token):
    post(client, {"orders": [an_order()]}, token)
    response = post(client, {"orders": [an_order(refunded="12.50")]}, token)
    assert response.get_json()["orders_updated"] == 1
    db.session.expire_all()
    assert db.session.scalars(select(Order)).one().refunded_cents == 1250


def test_a_date_alone_is_that_day_in_the_shop_time_zone(client, token):
    db.session.get(ShopSettings, 1).timezone = "America/New_York"
    db.session.commit()
    post(client, {"orders": [an_order(placed_at="2024-05-01", lines=[])]}, token)
    order = db.session.scalars(select(Order)).one()
    assert order.placed_at == datetime(2024, 5, 1, 4, 0, tzinfo=UTC)


def test_using_a_token_records_when_it_was_last_used(client, token):
    assert db.session.scalars(select(ApiToken)).one().last_used_at is None
    post(client, {"orders": []}, token)
    db.session.expire_all()
    assert db.session.scalars(select(ApiToken)).one().last_used_at is not None


# --- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "Send an API token"),
        ("Basic dXNlcjpwYXNz", "Send an API token"),
        ("Bearer ", "Send an API token"),
        ("Bearer pw_not-a-real-token", "not valid"),
    ],
)
def test_a_missing_or_wrong_token_is_refused(client, token, authorization, reason):
    headers = {"Authorization": authorization} if authorization else {}
    response = post(client, {"orders": [an_order()]}, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert reason in response.get_json()["error"]
    nothing_stored()


def test_a_revoked_token_is_refused(client, token):
    db.session.scalars(select(ApiToken)).one().revoked_at = datetime.now(UTC)
    db.session.commit()
    response = post(client, {"orders": [an_order()]}, token)
    assert response.status_code == 401
    assert "revoked" in response.get_json()["error"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    nothing_stored()


def test_a_revoked_token_is_refused_after_revoking_in_settings(owner_client, client, token):
    from tests.conftest import csrf_from

    token_id = db.session.scalars(select(ApiToken.id)).one()
    owner_client.post(
        f"/settings/tokens/{token_id}/revoke",
        data={"csrf_token": csrf_from(owner_client.get("/settings/"))},
    )
    response = post(client, {"orders": [an_order()]}, token)
    assert response.status_code == 401
    nothing_stored()


def test_a_body_that_is_not_json_is_unsupported(client, token):
    response = post(client, "order_id,total\n1,2\n", token, content_type="text/csv")
    assert response.status_code == 415
    assert "JSON" in response.get_json()["error"]
    nothing_stored()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"orders": [', "not valid JSON"),
        (b'{"orders": "\xff"}', "not valid JSON"),
        ('{"orders": [{"total": NaN}]}', "not valid JSON"),
        ("[]", "must be an object"),
        ('{"order": []}', "must be an object"),
        ('{"orders": {}}', "must be an object"),
        ('{"orders": [], "dry_run": true}', "Unknown top-level field"),
    ],
)
def test_malformed_bodies_are_bad_requests(client, token, body, reason):
    response = post(client, body, token)
    assert response.status_code == 400
    assert reason in response.get_json()["error"]
    nothing_stored()


def test_more_than_1000_orders_is_too_large(client, token):
    orders = [an_order(order_id=str(i), lines=[]) for i in range(1001)]
    response = post(client, {"orders": orders}, token)
    assert response.status_code == 413
    assert "at most 1000" in response.get_json()["error"]
    nothing_stored()


def test_an_oversized_body_is_refused_before_it_is_read(client, token):
    response = post(client, b"{" + b" " * (17 * 1024 * 1024) + b"}", token)
    assert response.status_code == 413
    assert "larger than" in response.get_json()["error"]


def test_one_invalid_order_imports_nothing_and_every_problem_is_listed(client, token):
    orders = [
        an_order(order_id="1"),
        an_order(order_id=2, total="12.345", placed_at="yesterday"),
        an_order(order_id="3", lines=[{"name": "", "quantity": -1, "price": "1"}]),
    ]
    response = post(client, {"orders": orders}, token)
    assert response.status_code == 422
    body = response.get_json()
    assert "2 of 3 orders are invalid; nothing was imported" in body["error"]
    problems = {(e["index"], e["field"]) for e in body["errors"]}
    assert problems == {
        (1, "order_id"),
        (1, "total"),
        (1, "placed_at"),
        (2, "lines[0].name"),
        (2, "lines[0].quantity"),
    }
    assert all(e["message"] for e in body["errors"])
    nothing_stored()


# --- validation, table-driven ------------------------------------------------------------

UTC_TZ = ZoneInfo("UTC")


def parse(orders, currency="USD"):
    """As the view does: JSON numbers arrive as Decimal, never float."""
    decoded = json.loads(json.dumps(orders, default=float), parse_float=Decimal)
    return parse_api_orders(decoded, UTC_TZ, currency)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"order_id": 42}, "order_id", "must be a string, not the number 42"),
        ({"order_id": ""}, "order_id", "must not be empty"),
        ({"order_id": None}, "order_id", "is required"),
        ({"order_id": "x" * 121}, "order_id", "longer than 120"),
        ({"customer_id": 7}, "customer_id", "must be a string"),
        ({"customer_id": None, "email": None}, "customer_id", "give customer_id or email"),
        ({"email": "not-an-email"}, "email", "is not an email address"),
        ({"placed_at": "2024-13-01"}, "placed_at", "is not a date like"),
        ({"placed_at": 1714573800}, "placed_at", "must be an ISO 8601"),
        ({"total": Decimal("19.999")}, "total", "more than two decimals"),
        ({"total": "1,000.00"}, "total", "is not an amount"),
        ({"total": "$5"}, "total", "is not an amount"),
        ({"total": True}, "total", "must be a decimal string"),
        ({"total": "-1"}, "total", "must not be negative"),
        ({"total": "100000000000.00"}, "total", "too large"),
        ({"total": "1e3"}, "total", "is not an amount"),
        ({"refunded": "50.00"}, "refunded", "more than the order's total"),
        ({"currency": "euro"}, "currency", "3-letter ISO 4217"),
        ({"cancelled_at": "soon"}, "cancelled_at", "is not a date like"),
        ({"accepts_marketing": "yes"}, "accepts_marketing", "true, false or null"),
        ({"first_name": ["Ada"]}, "first_name", "must be a string, not a list"),
        ({"placedAt": "2024-05-01"}, "placedAt", "is not a known field"),
        ({"lines": {"name": "x"}}, "lines", "must be a list"),
        ({"lines": ["x"]}, "lines[0]", "must be an object"),
        ({"lines": [{"name": "x", "quantity": 1.5, "price": "1"}]}, "lines[0].quantity", "whole"),
        ({"lines": [{"name": "x", "quantity": 1}]}, "lines[0].price", "is required"),
        (
            {"lines": [{"name": "x", "quantity": 1, "price": "1", "colour": "red"}]},
            "lines[0].colour",
            "is not a known field",
        ),
    ],
)
def test_invalid_order_fields_are_reported(changes, field, message):
    records, errors = parse([an_order(**changes)])
    assert records == []
    assert [(e.index, e.field) for e in errors] == [(0, field)]
    assert message in errors[0].message


def test_an_order_that_is_not_an_object_is_reported():
    records, errors = parse(["00042", None])
    assert [(e.index, e.field) for e in errors] == [(0, ""), (1, "")]


def test_the_same_order_twice_in_one_call_is_an_error():
    records, errors = parse([an_order(), an_order()])
    assert [(e.index, e.field) for e in errors] == [(1, "order_id")]
    assert "also order 0" in errors[0].message


def test_optional_fields_default_sensibly():
    minimal = {"order_id": "9", "email": "a@b.example", "placed_at": "2024-01-01", "total": 5}
    [record], errors = parse([minimal], "CHF")
    assert errors == []
    assert record.currency == "CHF"
    assert record.total_cents == 500
    assert record.refunded_cents == 0
    assert record.accepts_marketing is None
    assert record.lines == []


@pytest.mark.parametrize(
    ("value", "cents"),
    [
        ("12.50", 1250),
        ("12.5", 1250),
        ("12.500", 1250),
        (" 7 ", 700),
        (Decimal("19.99"), 1999),
        (Decimal("0.1"), 10),
        (Decimal("1E+3"), 100000),
        (3, 300),
    ],
)
def test_amounts_are_exact_cents(value, cents):
    assert parse_cents(value) == cents


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01", datetime(2024, 4, 30, 22, 0, tzinfo=UTC)),
        ("2024-05-01T10:00:00", datetime(2024, 5, 1, 8, 0, tzinfo=UTC)),
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, 0, tzinfo=UTC)),
        ("2024-05-01T10:00:00-04:00", datetime(2024, 5, 1, 14, 0, tzinfo=UTC)),
    ],
)
def test_timestamps_follow_the_shop_time_zone_unless_they_have_an_offset(value, expected):
    assert parse_timestamp(value, ZoneInfo("Europe/Berlin")) == expected


def test_a_survey_answered_before_its_order_arrived_is_linked_when_it_does(client, token):
    from tests.factories import add_survey
    from webapp.models import SurveyResponse
    from webapp.shop import get_shop
    from webapp.surveys.responses import Identity, sign_identity, start_response

    identity = Identity(order_ref="00042")
    signed = Identity(order_ref="00042", signature=sign_identity(get_shop().embed_secret, identity))
    start_response(db.session, add_survey(), get_shop(), identity=signed)
    db.session.commit()

    assert post(client, {"orders": [an_order()]}, token).status_code == 200
    response = db.session.scalar(select(SurveyResponse))
    order = db.session.scalar(select(Order).where(Order.external_id == "00042"))
    assert (response.order_id, response.customer_id) == (order.id, order.customer_id)
