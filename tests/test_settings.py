import hashlib
import re

import pytest
from sqlalchemy import select

from tests.conftest import csrf_from
from webapp.extensions import db
from webapp.models import ApiToken, ShopSettings
from webapp.settings import normalise_origin

VALID = {
    "name": "Woolly Mammoth Crafts",
    "postal_address": "1 Yarn Lane\nLeeds LS1 1AA\nUnited Kingdom",
    "timezone": "Europe/London",
    "currency": "gbp",
    "churn_window_days": "120",
    "quiet_hours_start": "8:30",
    "quiet_hours_end": "21:00",
    "holdout_percent": "10",
    "frequency_cap_days": "5",
}


def shop() -> ShopSettings:
    db.session.expire_all()
    return db.session.get(ShopSettings, 1)


def post_settings(client, **changes):
    page = client.get("/settings/")
    data = {**VALID, **changes, "csrf_token": csrf_from(page)}
    return client.post("/settings/", data={k: v for k, v in data.items() if v is not None})


def test_settings_require_login(client, auth):
    auth.create_owner()
    assert client.get("/settings/").headers["Location"].startswith("/login")
    assert client.post("/settings/tokens").status_code in (302, 400)
    assert db.session.scalar(select(ApiToken.id)) is None


def test_settings_page_shows_the_current_settings_and_webhook_url(owner_client, app):
    html = owner_client.get("/settings/").get_data(as_text=True)
    base = app.config["PUBLIC_BASE_URL"].rstrip("/")
    assert f"{base}/webhooks/shopify/orders" in html
    assert f"{base}/api/orders" in html
    assert 'value="My shop"' in html
    assert "no secret yet" in html


def test_saving_valid_settings_normalises_and_redirects(owner_client):
    response = post_settings(owner_client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/settings/"
    saved = shop()
    assert saved.name == "Woolly Mammoth Crafts"
    assert saved.timezone == "Europe/London"
    assert saved.currency == "GBP"
    assert saved.churn_window_days == 120
    assert saved.quiet_hours_start == "08:30"
    assert saved.quiet_hours_end == "21:00"
    assert "Settings saved." in owner_client.get("/settings/").get_data(as_text=True)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "This field is required."),
        ("timezone", "Mars/Olympus_Mons", "Choose a time zone from the list"),
        ("currency", "EURO", "3-letter ISO 4217 code"),
        ("churn_window_days", "0", "Between 1 and 3650 days."),
        ("churn_window_days", "soon", "Not a valid integer value."),
        ("quiet_hours_start", "25:00", "is not a time like 09:00"),
        ("quiet_hours_end", "9pm", "is not a time like 09:00"),
        ("holdout_percent", "51", "Between 0 and 50."),
        ("frequency_cap_days", "-1", "Between 0 and 365 days."),
    ],
)
def test_invalid_settings_show_the_error_next_to_the_field(owner_client, field, value, message):
    before = shop().name
    response = post_settings(owner_client, **{field: value})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    error = re.search(rf'<small class="field-error" id="{field}-error">([^<]*)</small>', html)
    assert error, f"no error next to {field}"
    assert message in error.group(1).replace("&#39;", "'")
    assert shop().name == before  # nothing saved


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("https://Shop.Example.com", "https://shop.example.com"),
        ("https://shop.example.com:443/", "https://shop.example.com"),
        ("http://shop.example.com:80", "http://shop.example.com"),
        ("https://shop.example.com:8443", "https://shop.example.com:8443"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
    ],
)
def test_origins_are_normalised_as_browsers_send_them(raw, origin):
    assert normalise_origin(raw) == origin


@pytest.mark.parametrize(
    "raw",
    [
        "shop.example.com",
        "ftp://shop.example.com",
        "https://*.example.com",
        "https://a.b/?x=1",
        "https://user@shop.example.com",
        "https://shop.example.com:99999",
        "https://",
    ],
)
def test_not_an_origin_is_refused(raw):
    with pytest.raises(ValueError):
        normalise_origin(raw)


# --- secrets -----------------------------------------------------------------------------


def test_webhook_secret_is_saved_and_only_its_last_four_characters_shown(owner_client):
    secret = "f" * 60 + "9a1b"
    page = owner_client.get("/settings/")
    response = owner_client.post(
        "/settings/webhook-secret",
        data={"webhook_secret": f"  {secret} ", "csrf_token": csrf_from(page)},
    )
    assert response.status_code == 302
    assert shop().webhook_secret == secret
    html = owner_client.get("/settings/").get_data(as_text=True)
    assert "…9a1b" in html
    assert secret not in html


def test_a_too_short_webhook_secret_is_a_field_error(owner_client):
    page = owner_client.get("/settings/")
    response = owner_client.post(
        "/settings/webhook-secret", data={"webhook_secret": "short", "csrf_token": csrf_from(page)}
    )
    assert response.status_code == 200
    assert 'id="webhook_secret-error"' in response.get_data(as_text=True)
    assert shop().webhook_secret == ""


def test_embed_secret_is_never_shown_except_once_after_regenerating(owner_client):
    old = shop().embed_secret
    html = owner_client.get("/settings/").get_data(as_text=True)
    assert old not in html
    assert f"…{old[-4:]}" in html
    response = owner_client.post(
        "/settings/embed-secret", data={"csrf_token": csrf_from(owner_client.get("/settings/"))}
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    new = shop().embed_secret
    assert new != old and len(new) == 64
    assert new in response.get_data(as_text=True)
    assert new[-8:] not in response.headers.get("Set-Cookie", "")
    assert new not in owner_client.get("/settings/").get_data(as_text=True)


# --- API tokens --------------------------------------------------------------------------


def create_token(client, name="ERP sync", htmx=False):
    page = client.get("/settings/")
    headers = {"HX-Request": "true", "HX-Target": "api-tokens"} if htmx else {}
    return client.post(
        "/settings/tokens",
        data={"token_name": name, "csrf_token": csrf_from(page)},
        headers=headers,
    )


def shown_token(html: str) -> str:
    match = re.search(r'<code class="token-value">([^<]+)</code>', html)
    assert match, "the new token is not on the page"
    return match.group(1)


def test_a_new_token_is_shown_once_and_stored_only_as_a_hash(owner_client):
    response = create_token(owner_client)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    plain = shown_token(response.get_data(as_text=True))
    # Rendered into the answer, not carried in the (signed, readable) session cookie.
    assert "Set-Cookie" not in response.headers or plain[-8:] not in response.headers["Set-Cookie"]
    token = db.session.scalars(select(ApiToken)).one()
    assert token.name == "ERP sync"
    assert token.token_hash == hashlib.sha256(plain.encode()).hexdigest()
    assert plain.startswith(token.prefix) and len(token.prefix) < 12
    assert len(plain) >= 43
    # Never again.
    again = owner_client.get("/settings/").get_data(as_text=True)
    assert plain not in again
    assert token.prefix in again


def test_creating_a_token_with_htmx_returns_only_the_tokens_section(owner_client):
    response = create_token(owner_client, htmx=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.lstrip().startswith('<article id="api-tokens">')
    assert "<html" not in html
    plain = shown_token(html)
    token = db.session.scalars(select(ApiToken)).one()
    assert token.token_hash == hashlib.sha256(plain.encode()).hexdigest()


def test_a_token_needs_a_name(owner_client):
    response = create_token(owner_client, name="  ")
    assert response.status_code == 200
    assert 'id="token_name-error"' in response.get_data(as_text=True)
    assert db.session.scalar(select(ApiToken.id)) is None


@pytest.mark.parametrize("htmx", [False, True])
def test_revoking_a_token(owner_client, htmx):
    create_token(owner_client)
    owner_client.get("/settings/")
    token = db.session.scalars(select(ApiToken)).one()
    headers = {"HX-Request": "true"} if htmx else {}
    response = owner_client.post(
        f"/settings/tokens/{token.id}/revoke",
        data={"csrf_token": csrf_from(owner_client.get("/settings/"))},
        headers=headers,
    )
    db.session.expire_all()
    assert token.revoked_at is not None
    if htmx:
        assert response.status_code == 200
        assert response.get_data(as_text=True).startswith(f'<tr id="token-{token.id}"')
    else:
        assert response.status_code == 302
        assert "revoked" in owner_client.get("/settings/").get_data(as_text=True)


def test_revoking_an_unknown_token_is_not_found(owner_client):
    response = owner_client.post(
        "/settings/tokens/999/revoke", data={"csrf_token": csrf_from(owner_client.get("/"))}
    )
    assert response.status_code == 404
