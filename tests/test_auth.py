import pytest
from sqlalchemy import select

from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD, csrf_from
from webapp.extensions import db
from webapp.models import LoginFailure, User


def test_fresh_install_leads_to_setup(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/setup"


def test_setup_creates_the_owner_and_logs_in(client):
    page = client.get("/setup")
    response = client.post(
        "/setup",
        data={
            "email": " Owner@Example.com ",
            "password": OWNER_PASSWORD,
            "confirm": OWNER_PASSWORD,
            "csrf_token": csrf_from(page),
        },
    )
    assert response.status_code == 302
    user = db.session.scalars(select(User)).one()
    assert user.email == "owner@example.com"
    assert user.role == "owner"
    assert user.password_hash != OWNER_PASSWORD
    assert client.get("/").status_code == 200
    # Setup is closed once an owner exists.
    assert client.get("/setup").headers["Location"] == "/login"


def test_setup_shows_errors_next_to_fields(client):
    page = client.get("/setup")
    response = client.post(
        "/setup",
        data={"email": "nope", "password": "short", "confirm": "x", "csrf_token": csrf_from(page)},
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="email-error"' in html
    assert "At least 10 characters." in html
    assert db.session.scalar(select(User.id)) is None


def test_login_and_logout(auth, client):
    auth.create_owner()
    response = auth.login()
    assert response.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    auth.logout()
    assert client.get("/").headers["Location"].startswith("/login")


def test_wrong_password_is_a_form_error(auth, client):
    auth.create_owner()
    response = auth.login(password="wrong password")
    assert response.status_code == 200
    assert "Wrong email or password." in response.get_data(as_text=True)


def test_login_requires_csrf(auth, client):
    auth.create_owner()
    response = client.post("/login", data={"email": OWNER_EMAIL, "password": OWNER_PASSWORD})
    assert response.status_code == 400
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("other_address", [False, True])
def test_five_failures_lock_the_account_with_a_wait_time(auth, client, other_address):
    auth.create_owner()
    for _ in range(5):
        auth.login(password="wrong password")
    if other_address:
        client.environ_base["REMOTE_ADDR"] = "10.9.9.9"
    response = auth.login()  # even the right password waits
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 14 * 60
    assert "Try again in 15 minutes" in response.get_data(as_text=True)


def test_five_failures_from_one_address_block_it(auth, client):
    auth.create_owner()
    for i in range(5):
        auth.login(email=f"guess{i}@example.com", password="wrong password")
    assert auth.login().status_code == 429
    assert db.session.query(LoginFailure).count() == 5


def test_session_cookie_is_httponly_and_samesite(auth, client):
    auth.create_owner()
    response = auth.login()
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_login_never_redirects_off_site(auth, client):
    auth.create_owner()
    page = client.get("/login")
    response = client.post(
        "/login?next=//evil.example/",
        data={"email": OWNER_EMAIL, "password": OWNER_PASSWORD, "csrf_token": csrf_from(page)},
    )
    assert response.headers["Location"] == "/"


def test_every_owner_route_refuses_a_visitor(app, auth, client):
    """Deny by default: each route either is marked public or redirects to login."""
    auth.create_owner()
    checked = 0
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if rule.endpoint == "static" or getattr(view, "is_public", False):
            continue
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<{arg}>", "1").replace(f"<int:{arg}>", "1")
            url = url.replace(f"<path:{arg}>", "1")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(url, method=method)
            assert response.status_code in (302, 400), (method, url, response.status_code)
            if response.status_code == 302:
                assert response.headers["Location"].startswith("/login"), (method, url)
            checked += 1
    assert checked >= 3


def test_htmx_request_without_login_gets_hx_redirect(auth, client):
    auth.create_owner()
    response = client.get("/", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login")
