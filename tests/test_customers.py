import re
from datetime import timedelta

import pytest

from tests.factories import T0, add_customer, add_order
from webapp import customers as customer_list
from webapp.extensions import db
from webapp.models import Customer
from webapp.privacy import erase_customer

HX = {"HX-Request": "true", "HX-Target": "customer-results", "HX-Trigger": "search"}


def row_names(html: str) -> list[str]:
    body = html.split('<tbody id="customer-rows">', 1)[1].split("</tbody>", 1)[0]
    return re.findall(r'<a href="/customers/\d+"[^>]*>([^<]+)</a>', body)


def link(html: str, rel: str) -> str | None:
    match = re.search(r'<a id="page-\w+" href="([^"]+)"[^>]*rel="' + rel + '"', html)
    return match.group(1).replace("&amp;", "&") if match else None


@pytest.fixture
def shoppers(app):
    add_customer("Ann", "Smith", "Ann.Smith@Example.com", spent_cents=5000, orders_count=2)
    add_customer("anna", "Jones", "anna@shop.test", spent_cents=100, orders_count=1)
    add_customer("Bob", "Annesley", "bob@example.com", spent_cents=9000, orders_count=5)
    add_customer("Carla", "Mendes", "carla@annex.test", spent_cents=0, orders_count=0)


def test_the_list_shows_every_customer_with_the_count(owner_client, shoppers):
    response = owner_client.get("/customers/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "4 customers in your shop." in html
    assert 'name="q"' in html and "Search customers" in html
    assert row_names(html) == ["Carla Mendes", "Bob Annesley", "anna Jones", "Ann Smith"]
    assert "90.00 USD" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ann", {"Ann Smith", "anna Jones", "Bob Annesley"}),  # first and last name, any case
        ("ANNA", {"anna Jones"}),
        ("smi", {"Ann Smith"}),
        ("ann.smith@ex", {"Ann Smith"}),  # email prefix, case-insensitive
        ("carla@", {"Carla Mendes"}),
        ("ann smi", {"Ann Smith"}),  # first and last name
        ("annex", set()),  # emails match from their start only
        ("zz%", set()),
    ],
)
@pytest.mark.parametrize("cap", [2000, 1], ids=["few-matches", "broad-search"])
def test_search_by_name_and_email(owner_client, shoppers, monkeypatch, cap, query, expected):
    # A broad search walks the sort index with a filter instead of collecting ids first.
    monkeypatch.setattr(customer_list, "SEARCH_CAP", cap)
    response = owner_client.get("/customers/", query_string={"q": query})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    if expected:
        assert set(row_names(html)) == expected
        assert f"{len(expected)} customer" in html or (cap == 1 and "More than 1 " in html)
    else:
        assert 'id="customer-rows"' not in html
        assert "starts with" in html


def test_htmx_search_gets_only_the_results_and_a_plain_request_the_page(owner_client, shoppers):
    partial = owner_client.get("/customers/?q=smi", headers=HX)
    html = partial.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="customer-results">')
    assert "<html" not in html and 'name="q"' not in html
    assert row_names(html) == ["Ann Smith"]
    assert "HX-Request" in partial.headers["Vary"]

    page = owner_client.get("/customers/?q=smi").get_data(as_text=True)
    assert "<html" in page and 'value="smi"' in page
    assert row_names(page) == ["Ann Smith"]

    restore = owner_client.get(
        "/customers/?q=smi", headers={**HX, "HX-History-Restore-Request": "true"}
    )
    assert "<html" in restore.get_data(as_text=True)


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("spent", ["Bob Annesley", "Ann Smith", "anna Jones", "Carla Mendes"]),
        ("orders", ["Bob Annesley", "Ann Smith", "anna Jones", "Carla Mendes"]),
        ("newest", ["Carla Mendes", "Bob Annesley", "anna Jones", "Ann Smith"]),
        ("bogus", ["Carla Mendes", "Bob Annesley", "anna Jones", "Ann Smith"]),
    ],
)
def test_sort_orders(owner_client, shoppers, sort, expected):
    html = owner_client.get("/customers/", query_string={"sort": sort}).get_data(as_text=True)
    assert row_names(html) == expected


def test_sort_by_last_order_puts_customers_without_orders_last(owner_client):
    add_customer("Old", "Buyer", last_order_at=T0)
    add_customer("Never", "Bought")
    add_customer("Recent", "Buyer", last_order_at=T0 + timedelta(days=30))
    html = owner_client.get("/customers/?sort=last_order").get_data(as_text=True)
    assert row_names(html) == ["Recent Buyer", "Old Buyer", "Never Bought"]


@pytest.mark.parametrize("sort", ["spent", "orders", "last_order", "newest"])
def test_keyset_paging_forward_and_back_has_no_duplicates_or_gaps(owner_client, monkeypatch, sort):
    # Ties in every sort value, and a run of customers with no last order at all.
    for n in range(23):
        add_customer(
            f"P{n:02d}",
            "Shopper",
            spent_cents=(n % 4) * 1000,
            orders_count=n % 3,
            last_order_at=None if n % 5 == 0 else T0 + timedelta(days=n % 4),
        )
    size = 5
    expected = [
        f"{c.first_name} Shopper"
        for c in customer_list.list_customers([], customer_list.SORTS[sort], size=100).customers
    ]
    assert len(expected) == 23

    monkeypatch.setattr(customer_list, "PAGE_SIZE", size)
    pages, url = [], f"/customers/?sort={sort}"
    while url:
        html = owner_client.get(url, headers=HX).get_data(as_text=True)
        pages.append(row_names(html))
        url = link(html, "next")
    assert [name for page in pages for name in page] == expected
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]

    back = []
    url = link(owner_client.get(f"/customers/?sort={sort}").get_data(as_text=True), "next")
    while True:  # walk forward to the end, then back to the start
        html = owner_client.get(url).get_data(as_text=True)
        if not link(html, "next"):
            break
        url = link(html, "next")
    while True:
        back.append(row_names(html))
        url = link(html, "prev")
        if not url:
            break
        html = owner_client.get(url).get_data(as_text=True)
    assert list(reversed(back)) == pages


@pytest.mark.parametrize(
    "args",
    [
        "sort=last_order&after=x_y",
        "sort=last_order&before=99999999999999999999_",
        "sort=spent&after=99999999999999999999_1",
        "sort=spent&before=1_99999999999999999999",
        "sort=last_order&after=-999999999999999999_1",
        "sort=spent&after=_5",
    ],
)
def test_a_broken_page_link_shows_the_first_page(owner_client, shoppers, args):
    response = owner_client.get(f"/customers/?{args}")
    assert response.status_code == 200
    assert len(row_names(response.get_data(as_text=True))) == 4


def test_empty_shop_invites_an_import(owner_client):
    html = owner_client.get("/customers/").get_data(as_text=True)
    assert "No customers yet" in html
    assert "0 customers in your shop." in html


def test_erased_customers_show_without_personal_data_in_the_list(owner_client, shoppers):
    customer = db.session.scalars(db.select(Customer).filter_by(first_name="Bob")).one()
    erase_customer(customer)
    html = owner_client.get("/customers/?sort=spent").get_data(as_text=True)
    assert f"Erased customer #{customer.id}" in html
    assert "Bob" not in html and "bob@example.com" not in html


def test_customer_page_shows_orders_lines_totals_and_consent(owner_client):
    customer = add_customer(
        "Ann",
        "Smith",
        "ann@example.com",
        city="Leeds",
        accepts_marketing=True,
        consent_source="shopify",
        consent_at=T0,
    )
    add_order(
        customer,
        "#1001",
        4500,
        lines=[("Merino yarn", "YARN-1", 3, 1000, "yarn"), ("Needles", "ND-4", 1, 1500, None)],
        refunded_cents=500,
        currency="EUR",
    )
    add_order(customer, "#1002", 2000, cancelled_at=T0 + timedelta(days=2), placed_at=T0)
    response = owner_client.get(f"/customers/{customer.id}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    for text in ("Ann Smith", "ann@example.com", "Leeds", "shopify", "#1001", "#1002"):
        assert text in html
    assert "Merino yarn" in html and "YARN-1" in html and "10.00 EUR" in html and "yarn" in html
    assert "40.00 EUR" in html  # spend net of the refund, the cancelled order left out
    assert "Cancelled" in html and "(1 cancelled)" in html
    assert "Export data" in html and "Erase customer" in html


def test_unknown_customer_is_404(owner_client):
    assert owner_client.get("/customers/999").status_code == 404
    assert owner_client.get("/customers/999/export").status_code == 404
    assert owner_client.get("/customers/99999999999999999999").status_code == 404


def test_a_big_postgresql_table_shows_the_estimated_count(owner_client, shoppers, monkeypatch):
    monkeypatch.setattr(customer_list, "ESTIMATE_FROM", 2)
    if db.engine.dialect.name == "postgresql":
        db.session.execute(db.text("ANALYZE customers"))
        db.session.commit()
        expected = "About 4 customers in your shop."
    else:  # SQLite counts an index quickly: always exact
        expected = "4 customers in your shop."
    html = owner_client.get("/customers/").get_data(as_text=True)
    assert expected in html and ("About" in html) == expected.startswith("About")
