"""SendGrid's Event Webhook: only signed, current POSTs are taken, each event is stored once,
and bounces, spam reports and unsubscribes suppress the customer."""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from tests.campaign_helpers import sent_recipient
from webapp.extensions import db
from webapp.models import Customer, EmailEvent

URL = "/webhooks/sendgrid"


@pytest.fixture
def signing_key(app):
    """A P-256 key pair; its public half configured as SendGrid shows it (base64 DER)."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = base64.b64encode(der).decode()
    return key


def signed_headers(key, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }


def post(client, key, events, timestamp: int | None = None):
    body = json.dumps(events).encode()
    return client.post(URL, data=body, headers=signed_headers(key, body, timestamp))


@pytest.fixture
def recipient(app):
    return sent_recipient()


def event(recipient, kind: str, n: int, **fields) -> dict:
    return {
        "email": "ada@example.com",
        "timestamp": 1_741_000_000 + n,
        "event": kind,
        "sg_event_id": f"evt-{kind}-{n}",
        "sg_message_id": "msg.1",
        "campaign_id": str(recipient.campaign_id),
        "recipient_id": str(recipient.id),
        **fields,
    }


def stored_events() -> list[EmailEvent]:
    return list(db.session.scalars(select(EmailEvent).order_by(EmailEvent.sg_event_id)))


def customer_of(recipient) -> Customer:
    db.session.expire_all()
    return db.session.get(Customer, recipient.customer_id)


def test_a_signed_batch_is_stored_once(client, signing_key, recipient):
    batch = [
        event(recipient, "delivered", 1),
        event(recipient, "open", 2, sg_machine_open=True),
        event(recipient, "open", 3, sg_machine_open=False),
        event(recipient, "click", 4, url="https://shop.example/yarn"),
    ]
    response = post(client, signing_key, batch)
    assert response.status_code == 200
    assert response.json == {"stored": 4, "duplicates": 0, "ignored": 0}

    again = post(client, signing_key, batch)  # SendGrid retries a POST it thinks failed
    assert again.json == {"stored": 0, "duplicates": 4, "ignored": 0}

    rows = stored_events()
    assert len(rows) == 4
    by_id = {row.sg_event_id: row for row in rows}
    assert by_id["evt-open-2"].machine_open and not by_id["evt-open-3"].machine_open
    assert by_id["evt-click-4"].url == "https://shop.example/yarn"
    delivered = by_id["evt-delivered-1"]
    assert (delivered.campaign_id, delivered.recipient_id, delivered.customer_id) == (
        recipient.campaign_id,
        recipient.id,
        recipient.customer_id,
    )
    assert delivered.occurred_at.timestamp() == 1_741_000_001


def test_duplicates_within_one_batch_count_once(client, signing_key, recipient):
    same = event(recipient, "delivered", 1)
    response = post(client, signing_key, [same, same])
    assert response.json == {"stored": 1, "duplicates": 1, "ignored": 0}


def test_a_large_batch_is_stored(client, signing_key, recipient):
    batch = [event(recipient, "open", n) for n in range(3000)]
    response = post(client, signing_key, batch)
    assert response.json == {"stored": 3000, "duplicates": 0, "ignored": 0}
    assert db.session.scalar(select(func.count()).select_from(EmailEvent)) == 3000


def test_a_bounce_suppresses_the_customer(client, signing_key, recipient):
    post(client, signing_key, [event(recipient, "bounce", 1, type="bounce", reason="550 no")])
    customer = customer_of(recipient)
    assert customer.bounced_at.timestamp() == 1_741_000_001
    assert stored_events()[0].reason == "550 no"


def test_a_block_is_not_a_bounce(client, signing_key, recipient):
    post(client, signing_key, [event(recipient, "bounce", 1, type="blocked", reason="spam")])
    assert customer_of(recipient).bounced_at is None
    assert len(stored_events()) == 1


def test_a_drop_for_a_bounced_address_suppresses(client, signing_key, recipient):
    post(client, signing_key, [event(recipient, "dropped", 1, reason="Bounced Address")])
    assert customer_of(recipient).bounced_at is not None


def test_a_spam_report_suppresses_the_customer(client, signing_key, recipient):
    post(client, signing_key, [event(recipient, "spamreport", 1)])
    assert customer_of(recipient).spam_reported_at is not None


def test_an_unsubscribe_keeps_the_first_time(client, signing_key, recipient):
    post(client, signing_key, [event(recipient, "unsubscribe", 5)])
    assert customer_of(recipient).unsubscribed_at.timestamp() == 1_741_000_005
    post(client, signing_key, [event(recipient, "group_unsubscribe", 9)])
    assert customer_of(recipient).unsubscribed_at.timestamp() == 1_741_000_005


def test_a_retried_unsubscribe_does_not_undo_a_resubscribe(client, signing_key, recipient):
    batch = [event(recipient, "unsubscribe", 5)]
    post(client, signing_key, batch)
    customer = customer_of(recipient)
    customer.unsubscribed_at = None  # subscribed again on the preferences page
    db.session.commit()
    post(client, signing_key, batch)
    assert customer_of(recipient).unsubscribed_at is None


def test_events_that_are_not_ours_are_ignored(client, signing_key, recipient):
    batch = [
        event(recipient, "open", 1, recipient_id="999999"),  # no such ledger row
        event(recipient, "open", 2, campaign_id=str(recipient.campaign_id + 1)),
        event(recipient, "open", 3, recipient_id=None),  # a test send: no ledger row
        {k: v for k, v in event(recipient, "open", 4).items() if k != "campaign_id"},
        {k: v for k, v in event(recipient, "open", 5).items() if k != "sg_event_id"},
        event(recipient, "open", 6, timestamp="soon"),
        event(recipient, "open", 7, recipient_id="1e3"),
        "not an event",
        event(recipient, "bounce", 8, recipient_id="999999"),
    ]
    response = post(client, signing_key, batch)
    assert response.status_code == 200
    assert response.json == {"stored": 0, "duplicates": 0, "ignored": len(batch)}
    assert stored_events() == []
    assert customer_of(recipient).bounced_at is None


def test_a_forged_signature_is_refused(client, signing_key, recipient):
    impostor = ec.generate_private_key(ec.SECP256R1())
    response = post(client, impostor, [event(recipient, "unsubscribe", 1)])
    assert response.status_code == 403
    assert "signature" in response.json["error"]
    assert stored_events() == []


def test_a_tampered_body_is_refused(client, signing_key, recipient):
    body = json.dumps([event(recipient, "open", 1)]).encode()
    headers = signed_headers(signing_key, body)
    tampered = body.replace(b"open", b"spamreport")
    response = client.post(URL, data=tampered, headers=headers)
    assert response.status_code == 403
    assert customer_of(recipient).spam_reported_at is None


@pytest.mark.parametrize("offset", [-301, 301])
def test_a_timestamp_off_by_more_than_five_minutes_is_refused(
    client, signing_key, recipient, offset
):
    response = post(client, signing_key, [event(recipient, "open", 1)], time.time() + offset)
    assert response.status_code == 403
    assert "timestamp" in response.json["error"]


@pytest.mark.parametrize(
    "header", ["X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"]
)
def test_missing_headers_are_refused(client, signing_key, recipient, header):
    body = json.dumps([event(recipient, "open", 1)]).encode()
    headers = signed_headers(signing_key, body)
    del headers[header]
    response = client.post(URL, data=body, headers=headers)
    assert response.status_code == 401
    assert header in response.json["error"]


def test_garbage_signatures_are_refused(client, signing_key, recipient):
    body = b"[]"
    headers = signed_headers(signing_key, body)
    for signature in ("not base64!", base64.b64encode(b"not DER").decode()):
        headers["X-Twilio-Email-Event-Webhook-Signature"] = signature
        assert client.post(URL, data=body, headers=headers).status_code == 403


def test_nothing_is_taken_without_a_configured_key(app, client, recipient):
    key = ec.generate_private_key(ec.SECP256R1())
    response = post(client, key, [event(recipient, "open", 1)])
    assert response.status_code == 503
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY is not configured" in response.json["error"]
    app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = "bm90IGEga2V5"
    assert post(client, key, []).status_code == 503


def test_a_body_that_is_not_a_list_is_refused(client, signing_key):
    response = post(client, signing_key, {"event": "open"})
    assert response.status_code == 400
    body = b"[not json"
    assert client.post(URL, data=body, headers=signed_headers(signing_key, body)).status_code == 400
