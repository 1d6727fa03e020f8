import json
from datetime import UTC, datetime

from sqlalchemy import func, select

from tests.conftest import csrf_from
from tests.factories import add_customer, add_order
from webapp.extensions import db
from webapp.models import Customer, ErasedEmail, Order
from webapp.privacy import email_hash, erase_customer, export_customer

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PERSONAL = ("Ann", "Smith", "Ann.Smith@Example.com", "ann.smith@example.com", "Leeds", "UK", "C-42")


def ann() -> Customer:
    customer = add_customer(
        "Ann",
        "Smith",
        " Ann.Smith@Example.com ",
        external_id="C-42",
        city="Leeds",
        country="UK",
        accepts_marketing=True,
        consent_source="shopify",
        consent_at=T0,
        orders_count=2,
        spent_cents=5500,
        last_order_at=T0,
    )
    add_order(
        customer,
        "#1001",
        4500,
        lines=[("Merino yarn", "YARN-1", 3, 1000, "yarn"), ("Needles", "ND-4", 1, 1500, None)],
        refunded_cents=500,
        placed_at=T0,
    )
    add_order(customer, "#1002", 1500, lines=[("Acrylic paint", "PT-1", 1, 1500, "paint")])
    return customer


def test_email_hash_is_of_the_normalised_email_and_keyed_per_installation(app):
    import hashlib

    assert email_hash(" Ann.Smith@Example.COM ") == email_hash("ann.smith@example.com")
    assert len(email_hash("a@b.c")) == 64
    # Not a plain SHA-256, which a dictionary of emails would reverse.
    assert email_hash("a@b.c") != hashlib.sha256(b"a@b.c").hexdigest()


def test_export_holds_the_customer_consent_orders_and_lines(app):
    customer = ann()
    data = export_customer(customer)
    assert data["customer"]["email"] == " Ann.Smith@Example.com "
    assert data["customer"]["external_id"] == "C-42"
    assert data["consent"] == {
        "accepts_marketing": True,
        "source": "shopify",
        "consented_at": "2025-03-01T12:00:00+00:00",
        "unsubscribed_at": None,
    }
    orders = {o["external_id"]: o for o in data["orders"]}
    assert orders["#1001"]["total_cents"] == 4500 and orders["#1001"]["refunded_cents"] == 500
    assert [line["sku"] for line in orders["#1001"]["lines"]] == ["YARN-1", "ND-4"]
    assert orders["#1001"]["lines"][0]["unit_price_cents"] == 1000
    json.dumps(data)  # JSON-ready as it is


def test_export_is_a_json_download(owner_client):
    customer = ann()
    response = owner_client.get(f"/customers/{customer.id}/export")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="customer-{customer.id}.json"'
    )
    data = json.loads(response.get_data(as_text=True))
    assert {o["external_id"] for o in data["orders"]} == {"#1001", "#1002"}
    assert data["customer"]["first_name"] == "Ann"


def test_erase_removes_personal_data_and_keeps_the_orders(app):
    customer = ann()
    erase_customer(customer)
    db.session.expire_all()
    erased = db.session.get(Customer, customer.id)
    for field in ("email", "email_norm", "first_name", "last_name", "city", "country"):
        assert getattr(erased, field) is None
    assert erased.external_id is None
    assert erased.accepts_marketing is False
    assert erased.erased_at is not None
    # The shop's totals do not change: the orders stay with the anonymised row.
    assert erased.spent_cents == 5500 and erased.orders_count == 2
    assert (
        db.session.scalar(
            select(func.sum(Order.total_cents)).where(Order.customer_id == customer.id)
        )
        == 6000
    )
    kept = db.session.get(ErasedEmail, email_hash("ann.smith@example.com"))
    assert kept is not None and kept.customer_id == customer.id


def test_export_of_an_erased_customer_holds_no_personal_data(app):
    customer = ann()
    erase_customer(customer)
    text = json.dumps(export_customer(customer))
    for value in PERSONAL:
        assert value not in text
    assert email_hash("ann.smith@example.com") not in text
    assert '"#1001"' in text and "YARN-1" in text


def test_erasing_a_customer_without_email_writes_no_hash(app):
    customer = add_customer("No", "Email")
    erase_customer(customer)
    assert customer.erased_at is not None
    assert db.session.scalar(select(func.count()).select_from(ErasedEmail)) == 0


def test_erase_needs_the_typed_confirmation(owner_client):
    customer = ann()
    page = owner_client.get(f"/customers/{customer.id}")
    response = owner_client.post(
        f"/customers/{customer.id}/erase",
        data={"confirm": "yes", "csrf_token": csrf_from(page)},
    )
    assert response.status_code == 422
    assert "Type ERASE to erase this customer." in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Customer, customer.id).first_name == "Ann"


def test_erase_form_redirects_to_the_customer_page_with_a_flash(owner_client):
    customer = ann()
    page = owner_client.get(f"/customers/{customer.id}")
    response = owner_client.post(
        f"/customers/{customer.id}/erase",
        data={"confirm": " erase ", "csrf_token": csrf_from(page)},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"/customers/{customer.id}"
    html = owner_client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Customer #{customer.id} was erased" in html
    assert f"Erased customer #{customer.id}" in html
    assert "Ann" not in html and "Leeds" not in html
    assert "#1001" in html and "Merino yarn" in html
    assert 'id="erase-panel"' not in html


def test_erase_over_htmx_swaps_the_panel_or_redirects(owner_client):
    customer = ann()
    token = csrf_from(owner_client.get(f"/customers/{customer.id}"))
    hx = {"HX-Request": "true", "HX-Target": "erase-panel"}
    wrong = owner_client.post(
        f"/customers/{customer.id}/erase", data={"confirm": "", "csrf_token": token}, headers=hx
    )
    html = wrong.get_data(as_text=True)
    assert wrong.status_code == 200
    assert html.lstrip().startswith('<details id="erase-panel"') and "Type ERASE" in html
    right = owner_client.post(
        f"/customers/{customer.id}/erase",
        data={"confirm": "ERASE", "csrf_token": token},
        headers=hx,
    )
    assert right.headers["HX-Redirect"] == f"/customers/{customer.id}"
    db.session.expire_all()
    assert db.session.get(Customer, customer.id).erased_at is not None


def test_erase_requires_csrf(owner_client):
    customer = ann()
    response = owner_client.post(f"/customers/{customer.id}/erase", data={"confirm": "ERASE"})
    assert response.status_code == 400
    db.session.expire_all()
    assert db.session.get(Customer, customer.id).erased_at is None


def test_a_later_import_does_not_bring_an_erased_customer_back(app, runner, tmp_path):
    customer = ann()
    erase_customer(customer)
    path = tmp_path / "orders.csv"
    path.write_text(
        "order_id,email,placed_at,total,first_name,last_name,city,accepts_marketing\n"
        "#2001,ANN.SMITH@example.com ,2025-06-01,30.00,Ann,Smith,Leeds,yes\n"
    )
    result = runner.invoke(args=["import-orders", str(path), "--format", "generic", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["customers_created"] == 0
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Customer)) == 1
    erased = db.session.get(Customer, customer.id)
    assert (erased.email, erased.first_name, erased.city) == (None, None, None)
    assert erased.accepts_marketing is False
    order = db.session.scalars(select(Order).filter_by(external_id="#2001")).one()
    assert order.customer_id == customer.id
