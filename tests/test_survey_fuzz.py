"""Fuzzing the public survey endpoints: whatever arrives, never a 5xx, and a request that is
refused leaves no row behind (responses, answers, choices, traits, customers)."""

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.factories import add_survey
from webapp.extensions import db
from webapp.models import AnswerChoice, Customer, DeclaredTrait, SurveyAnswer, SurveyResponse
from webapp.shop import get_shop
from webapp.surveys.responses import start_response
from webapp.surveys.tokens import response_token

FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
QUESTIONS = ["craft", "skill", "occasion", "heard_from"]
OPTIONS = ["knitting", "other", "beginner", "gift", "self", "friend", "nope"]

awkward_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "\x00", "\ud800", "x" * 130, "é" * 70, "<script>", "NaN"]),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    awkward_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(awkward_text, inner, max_size=4),
    max_leaves=8,
)
form_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


def rows() -> tuple[int, ...]:
    models = (SurveyResponse, SurveyAnswer, AnswerChoice, DeclaredTrait, Customer)
    return tuple(db.session.scalar(select(func.count()).select_from(m)) for m in models)


def assert_safe(send, *, may_store: bool = True) -> None:
    """Send one request: no 5xx, and nothing stored when it is refused (or when it is a GET)."""
    before = rows()
    response = send()
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    db.session.rollback()  # see the rows the request committed, not a stale snapshot
    if response.status_code >= 400 or not may_store:
        assert rows() == before, response.get_data(as_text=True)[:300]


def body(draw_value) -> bytes:
    return draw_value if isinstance(draw_value, bytes) else json.dumps(draw_value).encode()


@pytest.fixture
def setup(app):
    survey = add_survey("post_purchase_profile")
    shop = get_shop()
    shop.allowed_origins = "https://shop.example"
    db.session.commit()
    response = start_response(db.session, survey, shop, visitor_id="v")
    db.session.commit()
    return {
        "survey": survey.id,
        "key": shop.embed_key,
        "slug": survey.slug,
        "token": response_token(response.public_id),
    }


showing = st.dictionaries(
    st.sampled_from(
        [
            "survey",
            "visitor",
            "page",
            "device",
            "order_id",
            "email",
            "customer_id",
            "signature",
            "extra",
        ]
    ),
    json_values,
    max_size=8,
)


@FUZZ
@given(
    payload=st.one_of(showing, json_values, st.binary(max_size=60)),
    use_real_survey=st.booleans(),
    origin=st.sampled_from([None, "https://shop.example", "https://evil.example", "null"]),
)
def test_showing(client, setup, payload, use_real_survey, origin):
    if isinstance(payload, dict) and use_real_survey:
        payload = {**payload, "survey": setup["survey"]}
    headers = {"Origin": origin} if origin else {}
    assert_safe(
        lambda: client.post(
            f"/embed/{setup['key']}/responses",
            data=body(payload),
            content_type="application/json",
            headers=headers,
        )
    )


@FUZZ
@given(
    question=st.one_of(st.sampled_from(QUESTIONS), json_values),
    answer=st.one_of(
        st.sampled_from(OPTIONS),
        st.lists(st.sampled_from(OPTIONS), max_size=3),
        st.fixed_dictionaries(
            {}, optional={"options": st.lists(st.sampled_from(OPTIONS)), "other": json_values}
        ),
        json_values,
    ),
    raw=st.one_of(st.none(), st.binary(max_size=40)),
)
def test_answering(client, setup, question, answer, raw):
    payload = raw if raw is not None else {"question": question, "answer": answer}
    assert_safe(
        lambda: client.post(
            f"/embed/r/{setup['token']}/answers",
            data=body(payload),
            content_type="application/json",
        )
    )


@FUZZ
@given(token=st.text(max_size=120), payload=st.one_of(json_values, st.binary(max_size=40)))
def test_tokens_and_dismissal(client, setup, token, payload):
    path = quote(token, safe="") or "x"
    assert_safe(lambda: client.post(f"/embed/r/{path}/dismiss", data=body(payload)))
    assert_safe(
        lambda: client.post(f"/embed/r/{path}/answers", json={"question": "craft", "answer": "x"})
    )
    assert_safe(lambda: client.get(f"/r/{path}"), may_store=False)


form_fields = st.dictionaries(
    st.sampled_from(["question", "answer", "other", "email", "consent", "step"]),
    st.one_of(form_text, st.sampled_from(QUESTIONS + OPTIONS), st.lists(form_text, max_size=3)),
    max_size=5,
)


@FUZZ
@given(form=form_fields, htmx=st.booleans())
def test_the_survey_page(client, setup, form, htmx):
    headers = {"HX-Request": "true"} if htmx else {}
    assert_safe(lambda: client.post(f"/r/{setup['token']}", data=form, headers=headers))


@FUZZ
@given(
    form=form_fields,
    query=st.dictionaries(
        st.sampled_from(["order_id", "email", "customer_id", "signature", "utm_source"]),
        form_text,
        max_size=4,
    ),
)
def test_the_hosted_link(client, setup, form, query):
    assert_safe(lambda: client.get(f"/s/{setup['slug']}", query_string=query), may_store=False)
    assert_safe(lambda: client.post(f"/s/{setup['slug']}", query_string=query, data=form))
