"""The embed's public JSON endpoints: loader, config, showing, answers, dismissal.

Each test plays the loader (or a bot): what a shop's page may do, what it may not, and that a
rejected request leaves nothing behind.
"""

import socket
import uuid

import pytest
from sqlalchemy import func, select

from tests.conftest import unavailable
from tests.factories import add_customer, add_order, add_survey
from webapp import create_app
from webapp.extensions import db
from webapp.models import SurveyAnswer, SurveyResponse
from webapp.shop import get_shop
from webapp.surveys.manage import pause
from webapp.surveys.responses import Identity, sign_identity
from webapp.surveys.tokens import response_token

SHOP_ORIGIN = "https://shop.example"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1"


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def key(app) -> str:
    shop = get_shop()
    shop.allowed_origins = SHOP_ORIGIN
    db.session.commit()
    return shop.embed_key


@pytest.fixture
def survey(app):
    return add_survey("post_purchase_profile")


def show(client, key, survey, **fields):
    body = {"survey": survey.id, "visitor": "v-1", "page": "https://shop.example/thanks"}
    body.update(fields)
    return client.post(f"/embed/{key}/responses", json=body, headers={"Origin": SHOP_ORIGIN})


def token_for(client, key, survey, **fields) -> str:
    response = show(client, key, survey, **fields)
    assert response.status_code == 201, response.json
    return response.json["token"]


def answer(client, token, question, value, **headers):
    return client.post(
        f"/embed/r/{token}/answers", json={"question": question, "answer": value}, headers=headers
    )


# --- the loader and its config ---------------------------------------------------------------


def test_the_loader_is_javascript_cached_for_five_minutes_with_an_etag(client):
    response = client.get("/embed.js")
    assert response.status_code == 200
    assert response.mimetype == "application/javascript"
    assert response.cache_control.public and response.cache_control.max_age == 300
    etag = response.headers["ETag"]
    again = client.get("/embed.js", headers={"If-None-Match": etag})
    assert again.status_code == 304


def test_the_config_lists_only_active_surveys_with_their_triggers_and_the_cooldown(
    client, key, survey
):
    add_survey("exit_intent_objection", publish=False)  # a draft is never shown
    paused = add_survey("exit_intent_objection")
    pause(paused)
    get_shop().survey_cooldown_days = 3
    db.session.commit()

    response = client.get(f"/embed/{key}/config.json", headers={"Origin": SHOP_ORIGIN})
    assert response.status_code == 200
    document = response.json
    assert document["cooldown_days"] == 3
    assert [s["id"] for s in document["surveys"]] == [survey.id]
    entry = document["surveys"][0]
    assert entry["kind"] == "post_purchase" and entry["title"] == survey.title
    assert document["responses"].endswith(f"/embed/{key}/responses")
    assert response.headers["Access-Control-Allow-Origin"] == SHOP_ORIGIN
    assert "no-cache" in response.headers["Cache-Control"]
    assert "Origin" in response.headers["Vary"]


def test_the_config_answers_304_until_something_changes(client, key, survey):
    first = client.get(f"/embed/{key}/config.json")
    etag = first.headers["ETag"]
    assert not etag.startswith("W/")
    unchanged = client.get(f"/embed/{key}/config.json", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.data == b""
    pause(survey)
    db.session.commit()
    changed = client.get(f"/embed/{key}/config.json", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json["surveys"] == []


def test_an_unknown_shop_key_is_a_404_with_a_reason(client, key):
    response = client.get("/embed/not-the-key/config.json")
    assert response.status_code == 404
    assert response.json == {"error": "unknown_shop", "reason": "No shop has this embed key."}
    assert show(client, "not-the-key", add_survey()).status_code == 404


# --- CORS ------------------------------------------------------------------------------------


def test_a_preflight_from_an_allowed_origin_is_answered(client, key):
    response = client.options(
        f"/embed/{key}/responses",
        headers={"Origin": SHOP_ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == SHOP_ORIGIN
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://shop.example"])
def test_other_origins_are_refused_with_a_reason_and_nothing_is_stored(client, key, survey, origin):
    preflight = client.options(f"/embed/{key}/responses", headers={"Origin": origin})
    assert preflight.status_code == 403
    assert "Access-Control-Allow-Origin" not in preflight.headers
    body = {"survey": survey.id, "visitor": "v-1", "page": "/"}
    response = client.post(f"/embed/{key}/responses", json=body, headers={"Origin": origin})
    assert response.status_code == 403
    assert response.json["error"] == "origin_not_allowed"
    assert "Allowed origins" in response.json["reason"]
    assert count(SurveyResponse) == 0


def test_requests_without_an_origin_and_from_patchwork_itself_are_allowed(app, client, key, survey):
    token = token_for(client, key, survey)
    own = app.config["PUBLIC_BASE_URL"]
    assert answer(client, token, "craft", ["knitting"], Origin=own).status_code == 200
    assert answer(client, token, "skill", "beginner", Origin="http://localhost").status_code == 200
    response = client.post(
        f"/embed/{key}/responses", json={"survey": survey.id, "visitor": "v-2", "page": "/"}
    )
    assert response.status_code == 201


# --- showing ---------------------------------------------------------------------------------


def test_showing_a_survey_records_it_and_hands_out_a_token_for_the_iframe(client, key, survey):
    response = show(client, key, survey, device="tablet")
    assert response.status_code == 201
    assert response.headers["Access-Control-Allow-Origin"] == SHOP_ORIGIN
    row = db.session.scalar(select(SurveyResponse))
    assert (row.visitor_id, row.device, row.page_url) == ("v-1", "tablet", SHOP_ORIGIN + "/thanks")
    assert row.shown_at is not None and row.started_at is None
    assert response.json["url"].endswith(f"/r/{response.json['token']}")
    assert client.get(response.json["url"]).status_code == 200


def test_without_a_device_the_user_agent_decides(client, key, survey):
    body = {"survey": survey.id, "visitor": "v-1", "page": "/"}
    response = client.post(f"/embed/{key}/responses", json=body, headers={"User-Agent": IPHONE})
    assert response.status_code == 201
    assert db.session.scalar(select(SurveyResponse.device)) == "mobile"


def test_a_signed_order_id_links_the_response_to_its_customer(client, key, survey):
    ada = add_customer("Ada", email="ada@example.com")
    order = add_order(ada, "#1001", 4200)
    signature = sign_identity(get_shop().embed_secret, Identity(order_ref="1001"))
    assert show(client, key, survey, order_id="1001", signature=signature).status_code == 201
    row = db.session.scalar(select(SurveyResponse))
    assert (row.customer_id, row.order_id, row.identity_verified) == (ada.id, order.id, True)


def test_an_unsigned_email_stays_a_claim(client, key, survey):
    add_customer("Ada", email="ada@example.com")
    assert show(client, key, survey, email="ada@example.com").status_code == 201
    row = db.session.scalar(select(SurveyResponse))
    assert (row.customer_id, row.claimed_email, row.identity_verified) == (
        None,
        "ada@example.com",
        False,
    )


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "not_an_object"),
        (b'{"survey": NaN}', 400, "invalid_json"),
        (b"\xff\xfe{", 400, "invalid_json"),
        (b"[" * 5000 + b"]" * 5000, 400, "invalid_json"),
        (b'{"survey": 1, "visitor": "v", "page": "/", "admin": true}', 400, "unexpected_field"),
        (b'{"visitor": "v", "page": "/"}', 400, "missing_field"),
        (b'{"survey": "1", "visitor": "v", "page": "/"}', 400, "invalid_type"),
        (b'{"survey": true, "visitor": "v", "page": "/"}', 400, "invalid_type"),
        (b'{"survey": 99999999999, "visitor": "v", "page": "/"}', 404, "unknown_survey"),
        (b'{"survey": SID, "page": "/"}', 400, "missing_field"),
        (b'{"survey": SID, "visitor": "  ", "page": "/"}', 400, "missing_field"),
        (b'{"survey": SID, "visitor": 7, "page": "/"}', 400, "invalid_type"),
        (b'{"survey": SID, "visitor": "v\\u0000", "page": "/"}', 400, "invalid_text"),
        (b'{"survey": SID, "visitor": "v\\ud800", "page": "/"}', 400, "invalid_text"),
        (b'{"survey": SID, "visitor": "LONG", "page": "/"}', 400, "too_long"),
        (
            b'{"survey": SID, "visitor": "v", "page": "/", "device": "fridge"}',
            400,
            "invalid_device",
        ),
        (b'{"survey": SID, "visitor": "v", "page": "/", "email": ["a"]}', 400, "invalid_type"),
        (
            b'{"survey": SID, "visitor": "v", "page": "/", "signature": "zz"}',
            400,
            "invalid_signature",
        ),
        (
            b'{"survey": SID, "visitor": "v", "page": "/", "signature": "\xc3\xa9"}',
            400,
            "invalid_signature",
        ),
    ],
)
def test_malformed_showings_get_a_reason_and_store_nothing(client, key, survey, body, status, code):
    body = body.replace(b"SID", str(survey.id).encode()).replace(b"LONG", b"v" * 65)
    response = client.post(f"/embed/{key}/responses", data=body, content_type="application/json")
    assert response.status_code == status
    assert response.json["error"] == code and response.json["reason"]
    assert count(SurveyResponse) == 0


def test_a_form_post_is_not_json(client, key, survey):
    response = client.post(f"/embed/{key}/responses", data={"survey": str(survey.id)})
    assert response.status_code == 415
    assert response.json["error"] == "unsupported_media_type"


def test_a_paused_or_draft_survey_is_not_shown(client, key, survey):
    pause(survey)
    draft = add_survey(publish=False)
    db.session.commit()
    assert show(client, key, survey).json["error"] == "survey_closed"
    assert show(client, key, draft).status_code == 410
    assert count(SurveyResponse) == 0


def test_a_body_over_the_limit_is_a_413_in_json(app, client, key, survey):
    padding = "x" * app.config["SURVEY_MAX_BODY_BYTES"]
    response = show(client, key, survey, page=padding)
    assert response.status_code == 413
    assert response.json["error"] == "body_too_large"
    assert count(SurveyResponse) == 0


def test_a_wrong_method_is_a_405_in_json(client, key):
    response = client.get(f"/embed/{key}/responses")
    assert response.status_code == 405
    assert response.json["error"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]
    assert client.get("/embed/r/abc/nothing-here").json["error"] == "not_found"


def test_owner_pages_keep_their_html_error_pages(client):
    response = client.get("/no-such-page")
    assert response.status_code in (302, 404)
    assert response.mimetype == "text/html"


# --- answering -------------------------------------------------------------------------------


def test_answers_move_the_response_on_until_it_is_completed(client, key, survey):
    token = token_for(client, key, survey)
    steps = [
        ("craft", {"options": ["knitting", "other"], "other": "Tatting"}),
        ("skill", "beginner"),
        ("occasion", "self"),
        ("heard_from", "friend"),
    ]
    replies = [answer(client, token, question, value) for question, value in steps]
    assert [r.status_code for r in replies] == [200] * 4
    assert [r.json["next"] for r in replies] == ["skill", "occasion", "heard_from", None]
    assert replies[-1].json["completed"] is True
    row = db.session.scalar(select(SurveyResponse))
    assert row.started_at is not None and row.completed_at is not None
    assert count(SurveyAnswer) == 4


def test_the_same_answer_sent_twice_is_stored_once(client, key, survey):
    token = token_for(client, key, survey)
    first = answer(client, token, "craft", ["knitting"])
    again = answer(client, token, "craft", ["knitting"])
    assert first.json == again.json == {"next": "skill", "completed": False}
    assert count(SurveyAnswer) == 1


def test_a_changed_answer_replaces_the_stored_one(client, key, survey):
    token = token_for(client, key, survey)
    answer(client, token, "craft", ["knitting"])
    assert answer(client, token, "craft", ["sewing"]).status_code == 200
    assert db.session.scalar(select(SurveyAnswer.value)) == {"options": ["sewing"], "other": None}


@pytest.mark.parametrize(
    ("question", "value", "status", "code"),
    [
        ("craft", ["nope"], 422, "unknown_option"),
        ("craft", [], 422, "required"),
        ("craft", {"options": ["other"]}, 422, "other_missing"),
        ("nope", "x", 422, "unknown_question"),
        (7, "x", 422, "unknown_question"),
        ("skill", "beginner", 409, "out_of_order"),
    ],
)
def test_an_invalid_answer_gets_a_reason_and_stores_nothing(
    client, key, survey, question, value, status, code
):
    token = token_for(client, key, survey)
    response = answer(client, token, question, value)
    assert response.status_code == status
    assert response.json["error"] == code and response.json["reason"]
    assert count(SurveyAnswer) == 0
    assert db.session.scalar(select(SurveyResponse.started_at)) is None


@pytest.mark.parametrize(
    "body", [b"{}", b'{"question": "craft"}', b'{"question": "craft", "answer": 1, "x": 2}']
)
def test_an_answer_needs_exactly_question_and_answer(client, key, survey, body):
    token = token_for(client, key, survey)
    response = client.post(f"/embed/r/{token}/answers", data=body, content_type="application/json")
    assert response.status_code == 400
    assert count(SurveyAnswer) == 0


def test_a_forged_or_altered_token_is_refused(client, key, survey):
    token = token_for(client, key, survey)
    # Change the signature's first character: its last ones may carry only padding bits, so
    # changing those can leave the decoded signature, and the token, valid.
    payload, signature = token.rsplit(".", 1)
    altered = f"{payload}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"
    other, other_signature = response_token("0" * 32).rsplit(".", 1)
    forged = f"{other}.{'B' if other_signature[0] == 'A' else 'A'}{other_signature[1:]}"
    for bad in (altered, "garbage", "a" * 300, forged):
        response = answer(client, bad, "craft", ["knitting"])
        assert response.status_code == 403
        assert response.json["error"] == "invalid_token"
    assert count(SurveyAnswer) == 0


def test_a_token_for_a_response_that_does_not_exist_is_a_404(client, key):
    response = answer(client, response_token(uuid.uuid4().hex), "craft", ["knitting"])
    assert response.status_code == 404
    assert response.json["error"] == "unknown_response"


def test_an_expired_token_is_refused(app, client, key, survey):
    token = token_for(client, key, survey)
    app.config["SURVEY_TOKEN_MAX_AGE_DAYS"] = -1
    response = answer(client, token, "craft", ["knitting"])
    assert response.status_code == 403 and "expired" in response.json["reason"]


def test_a_paused_survey_still_takes_the_answers_of_its_tokens(client, key, survey):
    token = token_for(client, key, survey)
    pause(survey)
    db.session.commit()
    assert answer(client, token, "craft", ["knitting"]).status_code == 200


# --- dismissing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"), [(b"", None), (b"{}", "application/json"), (b"{}", "text/plain")]
)
def test_dismissing_records_the_first_dismissal(client, key, survey, body, content_type):
    token = token_for(client, key, survey)
    headers = {"Origin": SHOP_ORIGIN}
    response = client.post(
        f"/embed/r/{token}/dismiss", data=body, content_type=content_type, headers=headers
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == SHOP_ORIGIN
    first = db.session.scalar(select(SurveyResponse.dismissed_at))
    assert first is not None
    client.post(f"/embed/r/{token}/dismiss")
    db.session.expire_all()
    assert db.session.scalar(select(SurveyResponse.dismissed_at)) == first


def test_dismissing_refuses_fields_and_forged_tokens(client, key, survey):
    token = token_for(client, key, survey)
    assert client.post(f"/embed/r/{token}/dismiss", json={"why": "x"}).status_code == 400
    assert client.post("/embed/r/forged/dismiss").status_code == 403
    assert db.session.scalar(select(SurveyResponse.dismissed_at)) is None


# --- rate limit ------------------------------------------------------------------------------


@pytest.fixture
def limited_app(database_url, tmp_path, request):
    """An app with the rate limit on (2 per minute), in the storage the test names."""
    overrides = {
        "DATABASE_URL": database_url,
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "RATELIMIT_ENABLED": True,
        "SURVEY_RATE_LIMIT": "2 per minute",
        "RATELIMIT_STORAGE_URI": getattr(request, "param", "memory://"),
    }
    if overrides["RATELIMIT_STORAGE_URI"].startswith("redis"):
        _require_redis()
    app = create_app("test", overrides)
    with app.app_context():
        from tests.conftest import empty_database

        empty_database()
        yield app
        db.session.remove()
        db.engine.dispose()


def _require_redis() -> None:
    try:
        import redis  # noqa: F401  (the client the rate limit's Redis storage uses)
    except ImportError:
        unavailable("The redis client is not installed (pip install -e '.[test]')")
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        unavailable("Redis is not running at 127.0.0.1:6379")


@pytest.mark.parametrize("limited_app", ["memory://", "redis://127.0.0.1:6379"], indirect=True)
def test_too_many_requests_from_one_address_get_a_429_with_retry_after(limited_app):
    survey = add_survey()
    key = get_shop().embed_key
    # A fresh address per run: Redis keeps counts across runs and test workers.
    address = "10." + ".".join(str(b) for b in uuid.uuid4().bytes[:3])
    client = limited_app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    body = {"survey": survey.id, "visitor": "v", "page": "/"}
    statuses = [client.post(f"/embed/{key}/responses", json=body).status_code for _ in range(3)]
    assert statuses == [201, 201, 429]
    response = client.post(f"/embed/{key}/responses", json=body)
    assert response.json["error"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 61
    assert count(SurveyResponse) == 2
