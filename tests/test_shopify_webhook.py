"""POST /webhooks/shopify/orders: HMAC on the raw body, orders/create and orders/updated."""

import base64
import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.imports.payloads import PayloadError, parse_shopify_order
from webapp.models import Customer, Order, OrderLine, ShopSettings

URL = "/webhooks/shopify/orders"
SECRET = "4f1c2e9b7a6d5c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b"

# The shape of Shopify's Order resource as webhooks deliver it (trimmed to what matters
# here, plus a few fields Patchwork ignores).
ORDER = {
    "id": 5940139491234,
    "admin_graphql_api_id": "gid://shopify/Order/5940139491234",
    "name": "#1001",
    "order_number": 1001,
    "email": "Jane.Doe@Example.com",
    "contact_email": "Jane.Doe@Example.com",
    "created_at": "2024-11-10T10:30:00-05:00",
    "processed_at": "2024-11-10T10:30:01-05:00",
    "currency": "USD",
    "total_price": "59.99",
    "subtotal_price": "54.99",
    "financial_status": "paid",
    "cancelled_at": None,
    "buyer_accepts_marketing": False,
    "tags": "wholesale, knitting",
    "source_name": "web",
    "customer": {
        "id": 7150294155426,
        "email": "jane.doe@example.com",
        "first_name": "Jane",
        "last_name": "Doe",
        "email_marketing_consent": {
            "state": "subscribed",
            "opt_in_level": "single_opt_in",
            "consent_updated_at": "2024-11-10T10:29:00-05:00",
        },
    },
    "billing_address": {"first_name": "Jane", "city": "Toronto", "country": "Canada"},
    "line_items": [
        {
            "id": 13688971493691,
            "sku": "YARN-MERINO",
            "name": "Merino yarn - Blue",
            "title": "Merino yarn",
            "quantity": 2,
            "price": "19.99",
        },
        {"id": 13688971493692, "sku": "", "title": "Pattern", "quantity": 1, "price": "15.01"},
    ],
    "refunds": [],
}


def refunded(order: dict, amount: str) -> dict:
    changed = copy.deepcopy(order)
    changed["financial_status"] = "partially_refunded"
    changed["refunds"] = [
        {
            "id": 909,
            "created_at": "2024-11-12T09:00:00-05:00",
            "transactions": [
                {"kind": "refund", "status": "success", "amount": amount},
                {"kind": "refund", "status": "failure", "amount": "99.00"},
            ],
            "refund_line_items": [],
        }
    ]
    return changed


def sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@pytest.fixture
def secret(app) -> str:
    db.session.get(ShopSettings, 1).webhook_secret = SECRET
    db.session.commit()
    return SECRET


def deliver(client, payload, topic="orders/create", signature=None, webhook_id="wh-1"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": sign(body) if signature is None else signature,
        "X-Shopify-Shop-Domain": "woolly.myshopify.com",
        "X-Shopify-Webhook-Id": webhook_id,
    }
    return client.post(URL, data=body, headers=headers, content_type="application/json")


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def nothing_stored():
    assert (count(Order), count(Customer), count(OrderLine)) == (0, 0, 0)


def test_a_signed_order_creates_the_order_and_its_customer(client, secret):
    response = deliver(client, ORDER)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["orders_created"] == 1
    order = db.session.scalars(select(Order)).one()
    assert order.external_id == "#1001"
    assert order.shopify_id == "5940139491234"
    assert order.total_cents == 5999
    assert order.placed_at == datetime(2024, 11, 10, 15, 30, tzinfo=UTC)
    assert order.financial_status == "paid"
    assert order.source == "web"
    assert [(li.sku, li.name, li.quantity, li.price_cents) for li in order.lines] == [
        ("YARN-MERINO", "Merino yarn - Blue", 2, 1999),
        (None, "Pattern", 1, 1501),
    ]
    customer = db.session.get(Customer, order.customer_id)
    assert customer.external_id == "7150294155426"
    assert customer.email == "Jane.Doe@Example.com"
    assert (customer.first_name, customer.last_name, customer.city) == ("Jane", "Doe", "Toronto")
    assert customer.accepts_marketing is True
    assert customer.consent_source == "shopify_webhook"


def test_a_repeated_delivery_changes_nothing(client, secret):
    deliver(client, ORDER)
    response = deliver(client, ORDER)  # Shopify retries with the same X-Shopify-Webhook-Id
    assert response.status_code == 200
    counts = response.get_json()
    assert counts["orders_created"] == counts["orders_updated"] == counts["lines"] == 0
    assert (count(Order), count(Customer)) == (1, 1)


def test_orders_updated_records_a_refund(client, secret):
    deliver(client, ORDER)
    response = deliver(client, refunded(ORDER, "19.99"), topic="orders/updated", webhook_id="2")
    assert response.status_code == 200
    assert response.get_json()["orders_updated"] == 1
    db.session.expire_all()
    order = db.session.scalars(select(Order)).one()
    assert order.refunded_cents == 1999
    assert order.financial_status == "partially_refunded"
    assert db.session.get(Customer, order.customer_id).spent_cents == 4000


def test_a_wrong_signature_is_refused_and_nothing_stored(client, secret):
    body = json.dumps(ORDER).encode()
    response = deliver(client, body, signature=sign(body, "another secret"))
    assert response.status_code == 401
    assert "signature" in response.get_json()["error"]
    nothing_stored()


def test_a_signature_over_a_different_body_is_refused(client, secret):
    original = json.dumps(ORDER).encode()
    tampered = json.dumps({**ORDER, "total_price": "0.01"}).encode()
    response = deliver(client, tampered, signature=sign(original))
    assert response.status_code == 401
    nothing_stored()


def test_a_missing_signature_is_refused(client, secret):
    response = deliver(client, ORDER, signature="")
    assert response.status_code == 401
    nothing_stored()


def test_webhooks_are_refused_until_a_secret_is_configured(client):
    response = deliver(client, ORDER, signature=sign(json.dumps(ORDER).encode(), ""))
    assert response.status_code == 401
    assert "No Shopify webhook secret" in response.get_json()["error"]
    nothing_stored()


def test_other_topics_are_acknowledged_and_ignored(client, secret):
    response = deliver(client, {"id": 1, "title": "A product"}, topic="products/create")
    assert response.status_code == 200
    assert response.get_json() == {"ignored": True, "topic": "products/create"}
    nothing_stored()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "must be a Shopify order object"),
        (json.dumps({**ORDER, "name": None}).encode(), "name: is required"),
        (json.dumps({**ORDER, "id": "abc"}).encode(), "id: 'abc' is not a Shopify id"),
        (json.dumps({**ORDER, "total_price": "12.345"}).encode(), "total_price"),
        (json.dumps({**ORDER, "created_at": "Tuesday"}).encode(), "created_at"),
        (json.dumps({**ORDER, "line_items": "many"}).encode(), "line_items: must be a list"),
    ],
)
def test_a_malformed_order_is_a_bad_request_with_a_reason(client, secret, body, reason):
    response = deliver(client, body)
    assert response.status_code == 400
    assert reason in response.get_json()["error"]
    nothing_stored()


# --- mapping, table-driven ---------------------------------------------------------------


def with_changes(path: str, value) -> dict:
    order = copy.deepcopy(ORDER)
    target = order
    *parents, last = path.split(".")
    for key in parents:
        target = target[key]
    target[last] = value
    return order


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("currency", "dollars", "currency"),
        ("cancelled_at", "later", "cancelled_at"),
        ("customer", "Jane", "customer: must be an object"),
        ("customer.id", 1.5, "must be a number"),
        ("billing_address", ["Toronto"], "billing_address: must be an object"),
        ("refunds", {"amount": "1"}, "refunds: must be a list"),
        ("line_items", [{"title": "x", "quantity": "two", "price": "1"}], "line_items: [0]"),
        ("line_items", [{"quantity": 1, "price": "1"}], "name: is required"),
        ("email", "not-an-email", "email"),
    ],
)
def test_malformed_shopify_fields_name_the_field(path, value, reason):
    with pytest.raises(PayloadError, match=reason.replace("[", r"\[")):
        parse_shopify_order(with_changes(path, value))


@pytest.mark.parametrize(
    ("customer", "buyer_accepts", "expected"),
    [
        ({"email_marketing_consent": {"state": "subscribed"}}, False, True),
        ({"email_marketing_consent": {"state": "unsubscribed"}}, True, False),
        ({"email_marketing_consent": {"state": "not_subscribed"}}, True, False),
        ({"email_marketing_consent": {"state": "pending"}}, True, None),
        ({"accepts_marketing": True}, False, True),
        ({}, True, True),
        ({}, None, None),
    ],
)
def test_marketing_consent_prefers_the_newest_field(customer, buyer_accepts, expected):
    order = copy.deepcopy(ORDER)
    order["customer"] = {"id": 1, **customer}
    order["buyer_accepts_marketing"] = buyer_accepts
    assert parse_shopify_order(order).accepts_marketing is expected


def test_a_guest_order_without_customer_maps_to_its_email():
    order = copy.deepcopy(ORDER)
    order["customer"] = None
    record = parse_shopify_order(order)
    assert record.customer_external_id is None
    assert record.email == "Jane.Doe@Example.com"
    assert record.first_name == "Jane"  # from the billing address


def test_cancelled_orders_keep_their_cancellation_time():
    record = parse_shopify_order(with_changes("cancelled_at", "2024-11-11T08:00:00+01:00"))
    assert record.cancelled_at == datetime(2024, 11, 11, 7, 0, tzinfo=UTC)
