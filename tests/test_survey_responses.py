"""Recording responses: identity and linking, answers stored once, consent from an email."""

import pytest
from sqlalchemy import func, select

from surveys.answers import AnswerError
from tests.factories import add_customer, add_order, add_survey
from webapp.extensions import db
from webapp.models import AnswerChoice, Customer, DeclaredTrait, SurveyAnswer, SurveyResponse
from webapp.shop import get_shop
from webapp.surveys.responses import (
    Identity,
    dismiss_response,
    link_pending_responses,
    record_answer,
    sign_identity,
    start_response,
)


def signed(**fields) -> Identity:
    identity = Identity(**fields)
    return Identity(**fields, signature=sign_identity(get_shop().embed_secret, identity))


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_a_signed_order_id_links_the_response_to_the_order_and_its_customer(app):
    ada = add_customer("Ada", email="ada@example.com")
    order = add_order(ada, "#1001", 4200)
    response = start_response(
        db.session, add_survey(), get_shop(), identity=signed(order_ref="1001")
    )
    assert (response.customer_id, response.order_id) == (ada.id, order.id)
    assert response.identity_verified


@pytest.mark.parametrize("trust", [False, True])
def test_an_unsigned_claim_links_only_when_the_shop_trusts_unsigned_identity(app, trust):
    ada = add_customer("Ada", email="ada@example.com")
    get_shop().trust_unsigned_identity = trust
    bad = Identity(email="Ada@Example.com ", signature="00" * 32)
    response = start_response(db.session, add_survey(), get_shop(), identity=bad)
    assert not response.identity_verified
    assert response.claimed_email == "Ada@Example.com "
    assert response.customer_id == (ada.id if trust else None)


def test_a_visitor_identified_later_gets_their_anonymous_responses_linked(app):
    ada = add_customer("Ada", email="ada@example.com", external_id="c-7")
    survey = add_survey("exit_intent_objection")
    earlier = start_response(db.session, survey, get_shop(), visitor_id="v1")
    other = start_response(db.session, survey, get_shop(), visitor_id="v2")
    start_response(
        db.session, survey, get_shop(), visitor_id="v1", identity=signed(customer_ref="c-7")
    )
    db.session.commit()
    assert earlier.customer_id == ada.id
    assert other.customer_id is None


def test_a_signed_order_imported_later_is_linked_when_it_arrives(app):
    survey = add_survey()
    response = start_response(
        db.session, survey, get_shop(), visitor_id="v9", identity=signed(order_ref="#2002")
    )
    anonymous = start_response(db.session, survey, get_shop(), visitor_id="v9")
    db.session.commit()
    assert response.order_id is None and response.order_ref == "#2002"
    ada = add_customer("Ada", email="ada@example.com")
    order = add_order(ada, "#2002", 1000)
    assert link_pending_responses(db.session, get_shop()) == 1
    db.session.commit()
    db.session.refresh(response)
    db.session.refresh(anonymous)
    assert (response.order_id, response.customer_id) == (order.id, ada.id)
    assert anonymous.customer_id == ada.id
    assert link_pending_responses(db.session, get_shop()) == 0


def test_answers_are_stored_once_and_move_the_response_to_completion(app):
    survey = add_survey("post_purchase_profile")
    response = start_response(db.session, survey, get_shop())
    record_answer(db.session, response, "craft", ["knitting", "crochet"])
    record_answer(db.session, response, "craft", ["knitting", "crochet"])
    db.session.commit()
    assert count(SurveyAnswer) == 1 and count(AnswerChoice) == 2
    assert {(t.dimension, t.value) for t in db.session.scalars(select(DeclaredTrait))} == {
        ("craft", "knitting"),
        ("craft", "crochet"),
    }
    assert response.started_at is not None and response.next_question == "skill"
    record_answer(db.session, response, "craft", ["sewing"])  # back, and changed
    assert {t.value for t in db.session.scalars(select(DeclaredTrait))} == {"sewing"}
    for question_id, raw in [
        ("skill", "beginner"),
        ("occasion", "gift"),
        ("heard_from", "instagram"),
    ]:
        record_answer(db.session, response, question_id, raw)
    db.session.commit()
    assert response.completed_at is not None and response.next_question is None


def test_an_answer_cannot_skip_ahead_or_name_an_unknown_question(app):
    response = start_response(db.session, add_survey(), get_shop())
    with pytest.raises(AnswerError) as skipped:
        record_answer(db.session, response, "skill", "beginner")
    assert skipped.value.code == "out_of_order"
    with pytest.raises(AnswerError) as unknown:
        record_answer(db.session, response, "nope", "x")
    assert unknown.value.code == "unknown_question"
    assert count(SurveyAnswer) == 0


def test_an_email_given_with_consent_creates_the_consenting_customer(app):
    survey = add_survey("exit_intent_objection")
    email = {"id": "email", "type": "email", "prompt": "Your email?", "required": False}
    survey.published = {**survey.published, "questions": [*survey.published["questions"], email]}
    db.session.commit()
    response = start_response(db.session, survey, get_shop(), visitor_id="v3")
    record_answer(db.session, response, "objection", "not_found")
    record_answer(db.session, response, "looking_for", None)
    record_answer(db.session, response, "email", {"email": "New@Example.com", "consent": True})
    db.session.commit()
    customer = db.session.scalar(select(Customer).where(Customer.email_norm == "new@example.com"))
    assert customer.accepts_marketing and customer.consent_source == "survey"
    assert response.customer_id == customer.id


def test_dismissal_is_recorded_once(app):
    response = start_response(db.session, add_survey(), get_shop())
    dismiss_response(response)
    first = response.dismissed_at
    dismiss_response(response)
    assert response.dismissed_at == first is not None
    assert count(SurveyResponse) == 1
