"""Fixtures: every database test runs on SQLite and again on PostgreSQL.

On a laptop without PostgreSQL or Chromium those tests skip, saying why; under CI
(CI=true) nothing may skip, so they fail instead.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from werkzeug.serving import make_server

from webapp import create_app
from webapp.database import ensure_database, seed_shop
from webapp.extensions import db

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get(
    "PATCHWORK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
CHROMIUM = os.environ.get("PATCHWORK_CHROMIUM", "/usr/bin/chromium")
OWNER_EMAIL = "owner@example.com"
OWNER_PASSWORD = "correct horse battery"


def unavailable(reason: str):
    """Skip on a laptop; fail under CI, where everything must run."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: nothing may skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "patchwork.db"
    url = f"sqlite:///{path}"
    ensure_database(create_app("test", {"DATABASE_URL": url}))
    return url


@contextmanager
def new_postgresql_database(prefix: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for the block; dropped afterwards."""
    name = f"{prefix}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{uuid.uuid4().hex[:6]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        unavailable(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc.__class__.__name__}")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    with new_postgresql_database("patchwork_test") as url:
        ensure_database(create_app("test", {"DATABASE_URL": url}))
        yield url


def empty_database() -> None:
    """Delete every row (keeping the migrated schema), then seed the shop's settings."""
    tables = [t.name for t in db.metadata.sorted_tables if t.name != "alembic_version"]
    if db.engine.dialect.name == "postgresql":
        truncate = text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        # A live server's request thread outlives its test by a moment (its threads are
        # daemons); should one still hold a lock, end its connection rather than wait forever.
        db.session.execute(text("SET LOCAL lock_timeout = '5s'"))
        try:
            db.session.execute(truncate)
        except OperationalError:
            db.session.rollback()
            db.session.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            db.session.execute(truncate)
    else:
        for name in reversed(tables):
            db.session.execute(text(f"DELETE FROM {name}"))
    db.session.commit()
    seed_shop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> str:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def app(database_url, tmp_path):
    app = create_app(
        "test", {"DATABASE_URL": database_url, "UPLOAD_DIR": str(tmp_path / "uploads")}
    )
    with app.app_context():
        empty_database()
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class AuthActions:
    """Create the owner and log in, so a test reads like its scenario."""

    def __init__(self, app, client):
        self.app = app
        self.client = client

    def create_owner(self, email: str = OWNER_EMAIL, password: str = OWNER_PASSWORD):
        from webapp.auth import create_user

        return create_user(email, password, role="owner")

    def login(self, email: str = OWNER_EMAIL, password: str = OWNER_PASSWORD):
        page = self.client.get("/login")
        return self.client.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": csrf_from(page)},
        )

    def logout(self):
        return self.client.post("/logout", data={"csrf_token": csrf_from(self.client.get("/"))})


def csrf_from(response) -> str:
    """The CSRF token of the first form (or hx-headers) on a page."""
    import re

    html = response.get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'"X-CSRFToken": "([^"]+)"', html
    )
    assert match, "no CSRF token on the page"
    return match.group(1)


@pytest.fixture
def auth(app, client) -> AuthActions:
    return AuthActions(app, client)


@pytest.fixture
def owner_client(auth, client):
    """A client logged in as the shop's owner."""
    auth.create_owner()
    response = auth.login()
    assert response.status_code == 302
    return client


# --- the browser -----------------------------------------------------------------------


@pytest.fixture
def live_server(app):
    """The app served over HTTP on a free port, in a thread, against the test database."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_port}"
    yield server
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def chromium():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        unavailable(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def expect(chromium):
    """Playwright's auto-waiting assertions, waiting as long as pages do (a loaded CI machine
    is slow); imported late so that a laptop without Playwright skips."""
    from playwright.sync_api import expect

    expect.set_options(timeout=10_000)
    return expect


@pytest.fixture
def page(chromium):
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def owner_page(page, live_server, auth):
    """A browser page logged in as the owner."""
    auth.create_owner()
    page.goto(live_server.url + "/login")
    page.get_by_label("Email").fill(OWNER_EMAIL)
    page.get_by_label("Password").fill(OWNER_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server.url + "/")
    return page


@pytest.fixture
def sg():
    """A local stand-in for SendGrid's v3 Mail Send API (tests/sendgrid_server.py)."""
    from tests.sendgrid_server import FakeSendGrid

    with FakeSendGrid() as server:
        yield server
