"""The quick way through POST /embed/r/<token>/answers gives what the full way gives.

The usual step (the first answer to the question a response waits for) is written with a few
hand-made statements (responses.QuickStep); every other case goes through record_answer.
These tests pin that the two store the same rows and give the same replies, and that each
case the quick way declines (a retry, a race, a survey not parsed yet, consent) lands on the
full way with the full way's outcome.
"""

from __future__ import annotations

import copy
import threading
import uuid
from datetime import UTC, datetime

import pytest
from limits.storage import memory as limits_memory
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from surveys.templates import CRAFT_QUESTION, OCCASION_QUESTION
from tests.factories import add_survey
from webapp import create_app
from webapp.extensions import db
from webapp.models import Customer, SurveyResponse
from webapp.shop import get_shop
from webapp.surveys import embed, responses
from webapp.surveys.manage import publish
from webapp.surveys.quick import QuickAnswers
from webapp.surveys.responses import record_answer

SHOP_ORIGIN = "https://shop.example"
NOW = datetime(2025, 6, 1, 9, 30, 15, 123456, tzinfo=UTC)

# Every kind of question, answered as a shopper would: choices with traits and "other", a
# rating, an NPS score sent as text, an optional question skipped, an email without consent.
MIXED_QUESTIONS = [
    CRAFT_QUESTION,
    {"id": "rating", "type": "rating", "prompt": "How was it?", "required": True},
    {"id": "recommend", "type": "nps", "prompt": "Would you recommend us?", "required": True},
    {"id": "note", "type": "short_text", "prompt": "Anything else?", "required": False},
    {"id": "email", "type": "email", "prompt": "Your email?", "required": False},
    OCCASION_QUESTION,
]
MIXED_STEPS = [
    ("craft", {"options": ["knitting", "other"], "other": "Tatting"}),
    ("rating", 4),
    ("recommend", "9"),
    ("note", None),
    ("email", {"email": "Ada@Example.com", "consent": False}),
    ("occasion", "gift"),
]


@pytest.fixture
def key(app) -> str:
    shop = get_shop()
    shop.allowed_origins = SHOP_ORIGIN
    db.session.commit()
    return shop.embed_key


@pytest.fixture
def frozen(monkeypatch):
    """Both ways take their timestamps from responses.utcnow: fix it, so rows compare equal."""
    monkeypatch.setattr(responses, "utcnow", lambda: NOW)


@pytest.fixture
def full_way(monkeypatch):
    """Counts the answers that went the full way (record_answer)."""
    calls = []

    def counted(session, response, question_id, raw, **kwargs):
        calls.append(question_id)
        return record_answer(session, response, question_id, raw, **kwargs)

    monkeypatch.setattr(embed, "record_answer", counted)
    return calls


def mixed_survey():
    survey = add_survey("post_purchase_profile", publish=False)
    definition = copy.deepcopy(survey.definition)
    definition["questions"] = copy.deepcopy(MIXED_QUESTIONS)
    survey.definition = definition
    publish(survey)
    db.session.commit()
    return survey


def show(client, key, survey) -> str:
    response = client.post(
        f"/embed/{key}/responses",
        json={"survey": survey.id, "visitor": "v-1", "page": "https://shop.example/thanks"},
        headers={"Origin": SHOP_ORIGIN},
    )
    assert response.status_code == 201, response.json
    return response.json["token"]


def answer(client, token, question, value):
    return client.post(
        f"/embed/r/{token}/answers",
        json={"question": question, "answer": value},
        headers={"Origin": SHOP_ORIGIN},
    )


def public_id(token: str) -> str:
    from webapp.surveys.tokens import read_response_token

    return read_response_token(token)


def stored(token: str) -> dict:
    """Everything one response stored, as the database has it (JSON as its text)."""
    db.session.expire_all()
    response = db.session.scalar(
        select(SurveyResponse).where(SurveyResponse.public_id == public_id(token))
    )
    rid = {"r": response.id}
    rows = db.session.execute
    return {
        "response": (
            response.next_question,
            response.started_at,
            response.completed_at,
            response.dismissed_at,
            response.customer_id,
        ),
        "answers": rows(
            text(
                "SELECT question_id, survey_id, CAST(value AS TEXT), number, answered_at"
                " FROM survey_answers WHERE response_id = :r ORDER BY id"
            ),
            rid,
        ).all(),
        "choices": rows(
            text(
                "SELECT a.question_id, c.option_id, c.survey_id, c.question_id"
                " FROM survey_answer_choices c JOIN survey_answers a ON a.id = c.answer_id"
                " WHERE a.response_id = :r ORDER BY a.id, c.option_id"
            ),
            rid,
        ).all(),
        "traits": rows(
            text(
                "SELECT a.question_id, t.dimension, t.value, t.declared_at"
                " FROM declared_traits t JOIN survey_answers a ON a.id = t.answer_id"
                " WHERE t.response_id = :r ORDER BY t.id"
            ),
            rid,
        ).all(),
    }


def reply(response) -> tuple:
    return (
        response.status_code,
        response.json,
        response.headers.get("Access-Control-Allow-Origin"),
        # Flask-Login makes every response Flask handles vary by Cookie; an answer does not.
        "Origin" in response.headers.get("Vary", ""),
    )


# --- the same rows and replies ---------------------------------------------------------------


def test_both_ways_store_the_same_rows_and_give_the_same_replies(
    app, client, key, frozen, full_way, monkeypatch
):
    survey = mixed_survey()
    quick_token, full_token = show(client, key, survey), show(client, key, survey)

    quick = [reply(answer(client, quick_token, q, value)) for q, value in MIXED_STEPS]
    assert full_way == []  # every step went the quick way
    monkeypatch.setattr(QuickAnswers, "answer", lambda self, environ, token: None)
    full = [reply(answer(client, full_token, q, value)) for q, value in MIXED_STEPS]
    assert full_way == [q for q, _ in MIXED_STEPS]

    assert quick == full
    assert [r[1] for r in quick] == [
        {"next": "rating", "completed": False},
        {"next": "recommend", "completed": False},
        {"next": "note", "completed": False},
        {"next": "email", "completed": False},
        {"next": "occasion", "completed": False},
        {"next": None, "completed": True},
    ]
    assert quick[0][2] == SHOP_ORIGIN and quick[0][3]
    quick_rows, full_rows = stored(quick_token), stored(full_token)
    assert quick_rows == full_rows
    assert quick_rows["response"][:3] == (None, NOW, NOW)
    assert [row[1] for row in quick_rows["choices"]] == ["knitting", "other", "gift"]
    assert {(t[1], t[2]) for t in quick_rows["traits"]} == {
        ("craft", "knitting"),
        ("occasion", "gift"),
    }


def test_an_answer_that_ends_the_survey_early_completes_it_the_quick_way(
    app, client, key, frozen, full_way
):
    survey = add_survey("exit_intent_objection")  # "come back later" jumps to the end
    token = show(client, key, survey)
    assert answer(client, token, "objection", "come_back_later").json == {
        "next": None,
        "completed": True,
    }
    assert full_way == []
    assert stored(token)["response"][:3] == (None, NOW, NOW)


# --- what the quick way leaves to the full way -----------------------------------------------


def test_a_retry_and_a_changed_answer_go_the_full_way(app, client, key, full_way):
    token = show(client, key, add_survey())
    first = answer(client, token, "craft", ["knitting", "crochet"])
    again = answer(client, token, "craft", ["knitting", "crochet"])
    assert full_way == ["craft"]  # the retry
    assert first.json == again.json == {"next": "skill", "completed": False}
    before = stored(token)
    assert len(before["answers"]) == 1 and len(before["choices"]) == 2

    changed = answer(client, token, "craft", ["sewing"])
    assert full_way == ["craft", "craft"]
    assert changed.json == {"next": "skill", "completed": False}
    after = stored(token)
    assert [row[1] for row in after["choices"]] == ["sewing"]
    assert [(t[1], t[2]) for t in after["traits"]] == [("craft", "sewing")]


@pytest.mark.parametrize("theirs", [["knitting", "crochet"], ["sewing"]])
def test_a_concurrent_request_that_stores_the_answer_first_sends_this_one_the_full_way(
    app, client, key, full_way, monkeypatch, theirs
):
    """Between the quick way's read and its insert, another request stores the answer.

    The insert then finds the row (ON CONFLICT DO NOTHING), writes nothing, and the full way
    decides as it always has: the same answer is a retry, a different one replaces it.
    """
    token = show(client, key, add_survey())
    read = responses.QuickStep.waiting
    raced = []

    def waiting_then_a_concurrent_answer(self, pid):
        found = read(self, pid)
        if not raced:
            raced.append(pid)
            with Session(db.engine) as other:
                response = other.scalar(
                    select(SurveyResponse).where(SurveyResponse.public_id == pid)
                )
                record_answer(other, response, "craft", theirs)
                other.commit()
        return found

    monkeypatch.setattr(responses.QuickStep, "waiting", waiting_then_a_concurrent_answer)
    mine = answer(client, token, "craft", ["knitting", "crochet"])
    assert raced and full_way == ["craft"]
    assert mine.status_code == 200
    assert mine.json == {"next": "skill", "completed": False}
    rows = stored(token)
    assert len(rows["answers"]) == 1
    assert [row[1] for row in rows["choices"]] == ["crochet", "knitting"]
    assert sorted(t[2] for t in rows["traits"]) == ["crochet", "knitting"]
    assert rows["response"][0] == "skill"


def test_a_survey_this_process_has_not_parsed_goes_the_full_way_once(app, client, key, full_way):
    survey = add_survey()
    first, second = show(client, key, survey), show(client, key, survey)
    responses._published_cache.clear()
    assert answer(client, first, "craft", ["knitting"]).status_code == 200
    assert answer(client, second, "craft", ["knitting"]).status_code == 200
    assert full_way == ["craft"]


def test_a_republished_survey_is_answered_with_its_new_questions(app, client, key, full_way):
    survey = add_survey("craft")
    before = show(client, key, survey)
    assert answer(client, before, "craft", ["knitting"]).json["completed"] is True
    definition = copy.deepcopy(survey.definition)
    definition["questions"].append(copy.deepcopy(OCCASION_QUESTION))
    survey.definition = definition
    publish(survey)
    db.session.commit()
    after = show(client, key, survey)
    assert answer(client, after, "craft", ["knitting"]).json == {
        "next": "occasion",
        "completed": False,
    }
    assert answer(client, after, "occasion", "self").json["completed"] is True


def test_an_email_given_with_consent_goes_the_full_way_and_records_the_consent(
    app, client, key, full_way
):
    survey = mixed_survey()
    token = show(client, key, survey)
    for question, value in MIXED_STEPS[:4]:
        answer(client, token, question, value)
    given = answer(client, token, "email", {"email": "Ada@Example.com", "consent": True})
    assert given.json == {"next": "occasion", "completed": False}
    assert full_way == ["email"]
    customer = db.session.scalar(select(Customer).where(Customer.email_norm == "ada@example.com"))
    assert customer.accepts_marketing and customer.consent_source == "survey"
    assert stored(token)["response"][4] == customer.id


@pytest.mark.parametrize(
    ("origin", "status"), [(SHOP_ORIGIN, 200), ("https://elsewhere.example", 403), (None, 200)]
)
def test_the_origin_is_checked_against_the_shop_setting_read_with_the_response(
    app, client, key, full_way, origin, status
):
    token = show(client, key, add_survey())
    headers = {"Origin": origin} if origin else {}
    response = client.post(
        f"/embed/r/{token}/answers",
        json={"question": "craft", "answer": ["knitting"]},
        headers=headers,
    )
    assert response.status_code == status
    assert response.headers.get("Access-Control-Allow-Origin") == (
        origin if status == 200 else None
    )
    assert full_way == []  # taken the quick way, or refused before any answer is read
    assert len(stored(token)["answers"]) == (1 if status == 200 else 0)


def test_a_new_allowed_origin_counts_at_once(app, client, key, full_way):
    token = show(client, key, add_survey())
    get_shop().allowed_origins = "https://new-shop.example"
    db.session.commit()
    response = client.post(
        f"/embed/r/{token}/answers",
        json={"question": "craft", "answer": ["knitting"]},
        headers={"Origin": "https://new-shop.example"},
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://new-shop.example"


def test_a_query_string_goes_the_full_way(app, client, key, full_way):
    token = show(client, key, add_survey())
    response = client.post(
        f"/embed/r/{token}/answers?note=%00",
        json={"question": "craft", "answer": ["knitting"]},
        headers={"Origin": SHOP_ORIGIN},
    )
    assert response.status_code == 400  # the app's check for NUL characters, as before
    assert stored(token)["answers"] == []


def test_a_failure_on_the_quick_way_is_logged_and_the_full_way_answers(
    app, client, key, full_way, monkeypatch, caplog
):
    token = show(client, key, add_survey())

    def broken(self, public_id):
        raise RuntimeError("the quick way broke")

    monkeypatch.setattr(responses.QuickStep, "waiting", broken)
    response = answer(client, token, "craft", ["knitting"])
    assert response.status_code == 200
    assert response.json == {"next": "skill", "completed": False}
    assert full_way == ["craft"]
    assert "the quick way broke" in caplog.text
    assert len(stored(token)["answers"]) == 1


# --- the rate limit --------------------------------------------------------------------------


@pytest.fixture
def limited_app(database_url, tmp_path):
    """An app whose survey endpoints take 3 requests a minute per address (memory://),
    behind one proxy (the visitor's address from X-Forwarded-For)."""
    app = create_app(
        "test",
        {
            "DATABASE_URL": database_url,
            "UPLOAD_DIR": str(tmp_path / "uploads"),
            "RATELIMIT_ENABLED": True,
            "SURVEY_RATE_LIMIT": "3 per minute",
            "RATELIMIT_STORAGE_URI": "memory://",
            "PROXY_COUNT": 1,
        },
    )
    with app.app_context():
        from tests.conftest import empty_database

        empty_database()
        yield app
        db.session.remove()
        db.engine.dispose()


def test_answers_taken_the_quick_way_are_still_rate_limited(limited_app):
    client = limited_app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.9.8." + str(uuid.uuid4().int % 250)
    shop = get_shop()
    shop.allowed_origins = SHOP_ORIGIN
    db.session.commit()
    key = shop.embed_key
    survey = add_survey("craft")
    tokens = [show(client, key, survey) for _ in range(3)]  # the showings have their own count
    replies = [answer(client, token, "craft", ["knitting"]) for token in tokens]
    refused = answer(client, tokens[0], "craft", ["knitting"])
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert refused.status_code == 429 and refused.json["error"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 61


def test_a_request_the_quick_way_leaves_to_the_view_is_counted_once(limited_app):
    client = limited_app.test_client()
    visitor = {"X-Forwarded-For": "10.7.6." + str(uuid.uuid4().int % 250)}
    client.environ_base["REMOTE_ADDR"] = "10.9.9.9"  # the proxy: same for every visitor
    get_shop().allowed_origins = SHOP_ORIGIN
    db.session.commit()
    survey = add_survey("craft")
    key = get_shop().embed_key
    tokens = []
    for _ in range(2):
        shown = client.post(
            f"/embed/{key}/responses",
            json={"survey": survey.id, "visitor": "v-1"},
            headers={"Origin": SHOP_ORIGIN, **visitor},
        )
        tokens.append(shown.json["token"])

    def post(token):
        return client.post(
            f"/embed/r/{token}/answers",
            json={"question": "craft", "answer": ["knitting"]},
            headers={"Origin": SHOP_ORIGIN, **visitor},
        )

    # the answer (quick), its retry (the view), another answer: three, not four
    assert [post(t).status_code for t in (tokens[0], tokens[0], tokens[1])] == [200, 200, 200]
    assert post(tokens[1]).status_code == 429
    other_visitor = {"X-Forwarded-For": "10.5.4.3"}
    assert (
        client.post(
            f"/embed/r/{tokens[1]}/answers",
            json={"question": "craft", "answer": ["knitting"]},
            headers={"Origin": SHOP_ORIGIN, **other_visitor},
        ).status_code
        == 200
    )  # each visitor has its own count, from the forwarded address


def test_counting_in_memory_starts_no_thread_per_request(limited_app, monkeypatch):
    started = []

    class CountedTimer(threading.Timer):
        def start(self):
            started.append(self)
            super().start()

    monkeypatch.setattr(limits_memory.threading, "Timer", CountedTimer)
    client = limited_app.test_client()
    key = get_shop().embed_key
    for _ in range(3):
        client.get(f"/embed/{key}/config.json")
    assert started == []
