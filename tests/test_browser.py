"""Headless Chromium through the owner's eyes: login, the import preview, customer search."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD
from tests.test_import_views import WITH_BAD_ROW
from webapp import tasks
from webapp.extensions import db
from webapp.models import Customer

pytestmark = pytest.mark.browser


@pytest.fixture
def task_runner(app):
    """The in-process task runner the demo uses, polling the test database."""
    before = set(threading.enumerate())
    stop = tasks.start_runner_thread(app)
    started = [t for t in threading.enumerate() if t not in before and t.name == "task-runner"]
    yield
    stop.set()
    for thread in started:
        thread.join(timeout=10)


def test_login_shows_a_wrong_password_next_to_the_field(page, live_server, auth, expect):
    auth.create_owner()
    page.goto(live_server.url + "/")
    expect(page).to_have_url(re.compile(r"/login"))
    page.get_by_label("Email").fill(OWNER_EMAIL)
    page.get_by_label("Password").fill("not my password")
    page.get_by_role("button", name="Log in").click()

    password = page.get_by_label("Password")
    expect(password).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#" + password.get_attribute("aria-describedby"))).to_have_text(
        "Wrong email or password."
    )

    password.fill(OWNER_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(live_server.url + "/")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def test_import_preview_then_only_the_good_rows(
    owner_page, live_server, task_runner, tmp_path, expect
):
    export = tmp_path / "orders_export.csv"
    export.write_bytes(WITH_BAD_ROW)
    owner_page.goto(live_server.url + "/imports/")
    owner_page.get_by_label("CSV file").set_input_files(export)
    owner_page.get_by_role("button", name="Upload and preview").click()

    # The progress component polls until the preview is done and swaps it in.
    bad_rows = owner_page.locator("table.bad-rows tbody tr")
    expect(bad_rows).to_have_count(1)
    expect(bad_rows.locator("td").first).to_have_text("4")
    expect(bad_rows.locator("td").nth(1)).to_contain_text("two")
    expect(owner_page.get_by_text("This file has 1 bad row;")).to_be_visible()

    owner_page.get_by_role("button", name="Import only the good rows").click()
    expect(owner_page.get_by_text("The import has finished")).to_be_visible()
    counts = owner_page.locator("table.counts")
    expect(counts.get_by_role("row", name=re.compile("Customers"))).to_contain_text("2")
    expect(counts.get_by_role("row", name=re.compile("Orders"))).to_contain_text("2")
    owner_page.get_by_role(
        "button", name="See your customers"
    ).click()  # Pico: a link styled as a button
    expect(owner_page.locator("#customer-rows tr")).to_have_count(2)


def add_customers() -> None:
    """A handful of customers, as an import would leave them."""
    now = datetime.now(UTC)
    people = [
        ("Ada", "Lovelace", "London", 3, 18_450, 12, True),
        ("Grace", "Hopper", "Arlington", 7, 64_300, 3, True),
        ("Linus", "Pauling", "Portland", 1, 2_990, 200, False),
        ("Mary", "Anning", "Lyme Regis", 4, 23_775, 41, True),
        ("Ida", "Wells", "Chicago", 2, 9_800, 95, False),
        ("Rosalind", "Franklin", "Cambridge", 5, 41_250, 20, True),
        ("Beatrix", "Potter", "Near Sawrey", 9, 88_120, 6, True),
        ("Anni", "Albers", "Orange", 1, 4_500, 400, False),
        ("William", "Morris", "Walthamstow", 12, 131_940, 2, True),
        ("Elsa", "Schiaparelli", "Paris", 2, 15_600, 150, False),
    ]
    for first, last, city, orders, cents, days_ago, consent in people:
        email = f"{first}.{last}@example.com".replace(" ", "").lower()
        db.session.add(
            Customer(
                first_name=first,
                last_name=last,
                email=email,
                email_norm=email,
                city=city,
                country="GB",
                orders_count=orders,
                spent_cents=cents,
                last_order_at=now - timedelta(days=days_ago),
                accepts_marketing=consent,
            )
        )
    db.session.commit()


def test_customer_search_narrows_the_rows_in_place(owner_page, live_server, expect):
    add_customers()
    owner_page.set_viewport_size({"width": 1280, "height": 800})
    owner_page.goto(live_server.url + "/customers/")
    rows = owner_page.locator("#customer-rows tr")
    expect(rows).to_have_count(10)
    # A full page load would drop this marker; htmx swapping the rows keeps it.
    owner_page.evaluate("window.patchworkSamePage = true")

    owner_page.get_by_label("Search customers").press_sequentially("gra")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Grace Hopper")
    expect(owner_page).to_have_url(re.compile(r"[?&]q=gra\b"))
    assert owner_page.evaluate("window.patchworkSamePage") is True

