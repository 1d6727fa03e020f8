"""The unsubscribe link and the preferences page: public, no CSRF token, a GET never
unsubscribes, a one-click POST does at once and is recorded once."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.campaign_helpers import sent_recipient
from tests.factories import add_customer
from webapp.campaigns.messages import recipient_token
from webapp.extensions import db
from webapp.models import Customer, EmailEvent
from webapp.shop import get_shop

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def recipient(app):
    get_shop().name = "Loop & Thread"
    return sent_recipient()


@pytest.fixture
def token(recipient) -> str:
    return recipient_token(recipient.customer_id, recipient.id)


def customer_of(recipient) -> Customer:
    db.session.expire_all()
    return db.session.get(Customer, recipient.customer_id)


def events() -> list[EmailEvent]:
    return list(db.session.scalars(select(EmailEvent)))


def test_a_get_shows_the_button_and_changes_nothing(client, recipient, token):
    for _ in range(2):  # a link scanner, then the shopper
        response = client.get(f"/u/{token}")
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        assert "<button" in html and "Unsubscribe" in html
        assert "Loop &amp; Thread" in html
        assert "a•••@example.com" in html and "ada@example.com" not in html
    assert customer_of(recipient).unsubscribed_at is None
    assert events() == []
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_a_one_click_post_unsubscribes_once(app, client, recipient, token):
    assert app.config["WTF_CSRF_ENABLED"]  # no token is sent: the blueprint is exempt
    response = client.post(f"/u/{token}", data=ONE_CLICK)
    assert response.status_code == 200
    assert "You are unsubscribed" in response.get_data(as_text=True)
    first = customer_of(recipient).unsubscribed_at
    assert first is not None

    assert client.post(f"/u/{token}", data=ONE_CLICK).status_code == 200
    assert customer_of(recipient).unsubscribed_at == first
    [event] = events()
    assert event.event == "unsubscribe"
    assert event.sg_event_id == f"link:{recipient.customer_id}:{recipient.id}"
    assert (event.campaign_id, event.recipient_id, event.customer_id) == (
        recipient.campaign_id,
        recipient.id,
        recipient.customer_id,
    )


def test_the_pages_form_post_unsubscribes_too(client, recipient, token):
    assert client.post(f"/u/{token}").status_code == 200
    assert customer_of(recipient).unsubscribed_at is not None


def test_a_link_without_a_ledger_row_still_unsubscribes(client, recipient):
    token = recipient_token(recipient.customer_id, None)  # a test send
    assert client.post(f"/u/{token}", data=ONE_CLICK).status_code == 200
    [event] = events()
    assert event.sg_event_id == f"link:{recipient.customer_id}:0"
    assert event.campaign_id is None and event.recipient_id is None


@pytest.mark.parametrize("path", ["/u/", "/preferences/"])
def test_a_bad_token_is_a_clear_404(client, recipient, token, path):
    for bad in (token[:-2] + "xx", "nonsense", "x" * 500):
        response = client.post(path + bad, data=ONE_CLICK)
        assert response.status_code == 404
        assert "This link is not valid" in response.get_data(as_text=True)
    gone = recipient_token(recipient.customer_id + 1000, None)
    assert client.get(path + gone).status_code == 404
    assert customer_of(recipient).unsubscribed_at is None


def test_preferences_unsubscribe_and_subscribe_again(client, recipient, token):
    page = client.get(f"/preferences/{token}").get_data(as_text=True)
    assert "Loop &amp; Thread" in page and "a•••@example.com" in page
    assert "<strong>subscribed</strong>" in page

    page = client.post(f"/preferences/{token}", data={"action": "unsubscribe"})
    assert "<strong>not subscribed</strong>" in page.get_data(as_text=True)
    assert customer_of(recipient).unsubscribed_at is not None
    assert len(events()) == 1

    page = client.post(f"/preferences/{token}", data={"action": "resubscribe"})
    assert page.status_code == 200
    assert "<strong>subscribed</strong>" in page.get_data(as_text=True)
    customer = customer_of(recipient)
    assert customer.unsubscribed_at is None
    assert customer.accepts_marketing is True
    assert customer.consent_source == "preferences"
    assert customer.consent_at is not None


def test_preferences_subscribe_a_customer_who_never_consented(client, app):
    customer = add_customer("Bo", email="bo@example.com", accepts_marketing=False)
    token = recipient_token(customer.id, None)
    assert "<strong>not subscribed</strong>" in client.get(f"/preferences/{token}").text
    client.post(f"/preferences/{token}", data={"action": "resubscribe"})
    db.session.expire_all()
    assert db.session.get(Customer, customer.id).accepts_marketing is True


def test_preferences_refuse_an_unknown_action(client, recipient, token):
    response = client.post(f"/preferences/{token}", data={"action": "delete"})
    assert response.status_code == 400
    assert customer_of(recipient).unsubscribed_at is None


def test_tokens_in_mail_already_sent_stay_valid(app):
    """The signature is HMAC-SHA256 under a key derived from SECRET_KEY, truncated to 128
    bits: computed here the long way, so a change of how it is computed that changes the
    tokens (and breaks every unsubscribe link already mailed) fails."""
    import base64
    import hashlib
    import hmac

    key = hmac.new(app.config["SECRET_KEY"].encode(), b"patchwork-unsubscribe", "sha256")
    mac = hmac.digest(key.digest(), b"12.34", hashlib.sha256)[:16]
    expected = "12.34." + base64.urlsafe_b64encode(mac).decode().rstrip("=")
    assert recipient_token(12, 34) == expected
