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


# --- survey responses --------------------------------------------------------------------


def ann_answered_surveys(customer):
    """Ann answers a survey on her order's page (linked), and types her address into another
    survey where she only claimed to be her (unverified, so not linked)."""
    from tests.factories import add_survey
    from webapp.shop import get_shop
    from webapp.surveys.responses import Identity, record_answer, sign_identity, start_response

    shop = get_shop()
    profile = add_survey("post_purchase_profile")
    identity = Identity(order_ref="#1001")
    signed = Identity(order_ref="#1001", signature=sign_identity(shop.embed_secret, identity))
    linked = start_response(
        db.session, profile, shop, identity=signed, visitor_id="v-ann", device="mobile",
        page_url="https://shop.example/thanks?order=1001", now=T0,
    )  # fmt: skip
    record_answer(db.session, linked, "craft", {"options": ["other"], "other": "Ann's rug hooking"})
    record_answer(db.session, linked, "skill", "beginner")

    exit_survey = add_survey("exit_intent_objection")
    email = {"id": "email", "type": "email", "prompt": "Your email?", "required": False}
    questions = [*exit_survey.published["questions"], email]
    exit_survey.published = {**exit_survey.published, "questions": questions}
    claimed = start_response(
        db.session, exit_survey, shop, identity=Identity(email="ANN.SMITH@example.com"),
        visitor_id="v-ann-2", page_url="https://shop.example/cart",
    )  # fmt: skip
    record_answer(db.session, claimed, "objection", "not_found")
    record_answer(db.session, claimed, "looking_for", "Ann Smith's favourite blue merino")
    record_answer(db.session, claimed, "email", "ann.smith@example.com")  # no consent
    db.session.commit()
    assert linked.customer_id == customer.id and claimed.customer_id is None
    return linked, claimed


def test_export_holds_the_customers_survey_responses_and_answers(app):
    customer = ann()
    ann_answered_surveys(customer)

    data = export_customer(customer)

    linked, claimed = data["survey_responses"]
    assert linked["survey"]["title"] == "Tell us about you"
    assert linked["device"] == "mobile" and linked["order_ref"] == "#1001"
    assert linked["page_url"] == "https://shop.example/thanks?order=1001"
    assert [(a["question"], a["answer"]) for a in linked["answers"]] == [
        ("What are you making?", "Something else: Ann's rug hooking"),
        ("How would you describe your skill?", "Beginner"),
    ]
    assert linked["answers"][1]["value"] == {"options": ["beginner"], "other": None}
    assert claimed["claimed_email"] == "ANN.SMITH@example.com"
    assert claimed["answers"][-1]["answer"] == "ann.smith@example.com (no consent)"
    json.dumps(data)


def test_erase_removes_the_personal_data_in_survey_responses_and_keeps_the_choices(app):
    from webapp.models import SurveyAnswer, SurveyResponse

    customer = ann()
    linked, claimed = ann_answered_surveys(customer)

    erase_customer(customer)

    db.session.expire_all()
    for response in (
        db.session.get(SurveyResponse, linked.id),
        db.session.get(SurveyResponse, claimed.id),
    ):
        assert (response.claimed_email, response.claimed_customer_ref) == (None, None)
        assert (response.page_url, response.visitor_id) == (None, None)
    answers = {a.question_id: a.value for a in db.session.scalars(select(SurveyAnswer))}
    assert answers["craft"] == {"options": ["other"], "other": "(erased)"}
    assert answers["skill"] == {"options": ["beginner"], "other": None}
    assert answers["objection"] == {"options": ["not_found"], "other": None}
    assert answers["looking_for"] == {"text": "(erased)"}
    assert answers["email"] is None
    text = json.dumps(export_customer(db.session.get(Customer, customer.id)))
    for value in ("rug hooking", "merino", "ann.smith", "ANN.SMITH", "thanks?order", "v-ann"):
        assert value not in text


def test_the_customer_page_lists_their_survey_answers_in_words(owner_client):
    customer = ann()
    linked, _ = ann_answered_surveys(customer)

    html = owner_client.get(f"/customers/{customer.id}").get_data(as_text=True)

    section = html.split('id="survey-answers-heading"')[1].split("</section>")[0]
    assert f'href="/surveys/{linked.survey_id}/results">Tell us about you</a>' in section
    assert "<dd>Something else: Ann&#39;s rug hooking</dd>" in section
    assert "<dd>Beginner</dd>" in section
    assert "Before you go" not in section  # not linked to Ann: only its export finds it
