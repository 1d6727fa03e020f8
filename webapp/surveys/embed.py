"""The embed's public endpoints: the loader script, its config, and shown/dismissed/answers.

Every request here comes from a shopper's browser on the shop's site (or a bot pretending
to be one), so each endpoint is @public, rate limited per address, accepts only small JSON
objects with known fields, answers every problem with a 4xx JSON body
{"error": code, "reason": text}, and lets browsers call it only from the shop's allowed
origins (CORS). Writes go through webapp.surveys.responses, which holds the rules.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    request,
    send_from_directory,
    url_for,
)
from werkzeug.exceptions import HTTPException

from surveys.answers import AnswerError
from surveys.triggers import device_class, embed_document
from webapp.auth import public
from webapp.extensions import db, limiter
from webapp.models import ShopSettings, Survey
from webapp.shop import get_shop
from webapp.surveys.manage import active_surveys
from webapp.surveys.public import (
    JSON_MIMETYPES,
    ShopperError,
    identity_from,
    origin_allowed,
    parse_json,
    rate_limited,
    response_for_token,
    text_field,
)
from webapp.surveys.responses import (
    PAGE_URL_MAX,
    VISITOR_ID_MAX,
    AnswerRejected,
    dismiss_response,
    live_definition,
    record_answer,
    start_response,
)
from webapp.surveys.tokens import response_token

bp = Blueprint("embed", __name__)

SHOPPER_BLUEPRINTS = frozenset({"embed", "respond"})
DEVICES = frozenset({"mobile", "tablet", "desktop"})
PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight answer
LOADER_MAX_AGE = 300  # the loader changes rarely; five minutes bounds a deploy's delay
_DB_ID_MAX = 2**31 - 1
_HTTP_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


# --- errors: JSON for every 4xx --------------------------------------------------------------


def json_error(status: int, code: str, reason: str, headers: dict | None = None) -> Response:
    response = jsonify({"error": code, "reason": reason})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def wants_json_error() -> bool:
    """Whether an error on this request answers in JSON: the embed's API, even unrouted.

    The app's HTML error handlers ask this, because a 404 or 405 raised by routing happens
    before any blueprint is known.
    """
    return request.blueprint == "embed" or request.path.startswith("/embed/")


def http_error_json(error: HTTPException) -> Response:
    status = error.code or 400
    headers: dict[str, str] = {}
    reason = error.description or ""
    if status == 405 and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        reason = f"Use {' or '.join(error.valid_methods)} here."  # type: ignore[attr-defined]
    elif status == 413:
        limit = current_app.config["SURVEY_MAX_BODY_BYTES"]
        reason = f"The body is larger than {limit} bytes."
    elif status == 429:
        wait = limiter.retry_after()
        headers["Retry-After"] = str(wait)
        reason = f"Too many requests from this address; try again in {wait} seconds."
    return json_error(status, _HTTP_CODES.get(status, "error"), reason, headers)


@bp.errorhandler(ShopperError)
def _shopper_error(error: ShopperError) -> Response:
    db.session.rollback()  # nothing from a rejected request is stored
    return json_error(error.status, error.code, error.reason)


for _code in _HTTP_CODES:
    # By code, not by class: the app's HTML handlers are registered by code and would win.
    bp.register_error_handler(_code, http_error_json)


@bp.before_app_request
def _cap_shopper_bodies() -> None:
    """Shoppers' requests are small: cap their bodies before anything reads them.

    Registered on the app (before the app's own hooks, which read forms) so that the limit
    is in place before the first read.
    """
    if request.blueprint in SHOPPER_BLUEPRINTS:
        request.max_content_length = current_app.config["SURVEY_MAX_BODY_BYTES"]


# --- CORS ------------------------------------------------------------------------------------


@bp.after_request
def _allow_shop_origin(response: Response) -> Response:
    if request.endpoint == "embed.loader":
        return response
    if any(name.lower() == "vary" for name, _ in response.headers):
        response.vary.add("Origin")
    else:  # the usual case: no header to parse and merge with
        response.headers.add("Vary", "Origin")
    origin = request.headers.get("Origin")
    if origin and origin_allowed(get_shop(), origin):
        response.headers["Access-Control-Allow-Origin"] = origin
    return response


def _check_origin(shop: ShopSettings) -> None:
    origin = request.headers.get("Origin")
    if not origin_allowed(shop, origin):
        raise ShopperError(
            403,
            "origin_not_allowed",
            f"{origin[:100]} may not use this shop's surveys: the shop owner adds it under"
            " Settings, Allowed origins.",
        )


def _preflight(shop: ShopSettings, methods: str) -> Response:
    _check_origin(shop)
    response = Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = methods
    response.headers["Access-Control-Allow-Headers"] = "Content-Type"
    response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    return response


# --- request bodies --------------------------------------------------------------------------


def _json_object(*, allow_empty: bool = False) -> dict:
    """The body as a JSON object, or ShopperError saying what is wrong with it."""
    if request.mimetype not in JSON_MIMETYPES:
        raise ShopperError(415, "unsupported_media_type", "Send a JSON object.")
    raw = request.get_data(cache=False)  # 413 past SURVEY_MAX_BODY_BYTES
    if allow_empty and not raw.strip():
        return {}
    try:
        data = parse_json(raw)
    except (ValueError, RecursionError):  # bad UTF-8 is a ValueError too
        raise ShopperError(400, "invalid_json", "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ShopperError(400, "not_an_object", "The body must be a JSON object.")
    return data


def _only(data: dict, allowed: frozenset[str]) -> None:
    for key in data:
        if key not in allowed:
            raise ShopperError(400, "unexpected_field", f"Unexpected field {key[:40]!r}.")


def _shop_for_key(shop_key: str) -> ShopSettings:
    shop = get_shop()
    if not (
        shop.embed_key
        and hmac.compare_digest(shop.embed_key.encode(), shop_key.encode("utf-8", "replace"))
    ):
        raise ShopperError(404, "unknown_shop", "No shop has this embed key.")
    return shop


# --- the loader and its config ---------------------------------------------------------------


@bp.get("/embed.js")
@public
@rate_limited
def loader() -> Response:
    response = send_from_directory(
        current_app.static_folder,  # type: ignore[arg-type]
        "embed.js",
        mimetype="application/javascript",
        max_age=LOADER_MAX_AGE,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def config_document(shop: ShopSettings) -> dict:
    """What the loader needs: each active survey's trigger settings, its id and title (the
    dialog's name), the shop-wide cooldown, and where to report a showing."""
    surveys = active_surveys(db.session)
    definitions = {survey.id: live_definition(survey) for survey in surveys}
    document = embed_document(
        ((survey_id, d.triggers) for survey_id, d in definitions.items()),
        shop.survey_cooldown_days,
    )
    for entry in document["surveys"]:
        entry["title"] = definitions[entry["id"]].title
    document["responses"] = url_for("embed.responses", shop_key=shop.embed_key, _external=True)
    return document


@bp.route("/embed/<shop_key>/config.json", methods=["GET", "OPTIONS"])
@public
@rate_limited
def config(shop_key: str) -> Response:
    shop = _shop_for_key(shop_key)
    if request.method == "OPTIONS":
        return _preflight(shop, "GET")
    _check_origin(shop)
    body = json.dumps(config_document(shop), separators=(",", ":"), sort_keys=True)
    response = Response(body, mimetype="application/json")
    response.set_etag(hashlib.sha256(body.encode()).hexdigest()[:32])
    # Browsers keep it and ask again each time (304 when nothing changed): a publish or a
    # pause reaches shoppers on their next page view.
    response.cache_control.no_cache = True
    response.cache_control.public = True
    return response.make_conditional(request)


# --- showing, answering, dismissing ----------------------------------------------------------

_RESPONSE_FIELDS = frozenset(
    {"survey", "visitor", "page", "device", "order_id", "email", "customer_id", "signature"}
)


def _active_survey(value: object) -> Survey:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ShopperError(400, "invalid_type", "survey must be the survey's id (a number).")
    survey = db.session.get(Survey, value) if 1 <= value <= _DB_ID_MAX else None
    if survey is None:
        raise ShopperError(404, "unknown_survey", "This shop has no such survey.")
    if not survey.is_active:
        raise ShopperError(410, "survey_closed", "This survey is not running.")
    return survey


def _device(data: dict) -> str:
    device = data.get("device")
    if device is None:
        return device_class(request.headers.get("User-Agent"))
    if device not in DEVICES:
        raise ShopperError(400, "invalid_device", "device must be mobile, tablet or desktop.")
    return device


@bp.route("/embed/<shop_key>/responses", methods=["POST", "OPTIONS"])
@public
@rate_limited
def responses(shop_key: str) -> tuple[Response, int] | Response:
    """The loader is showing a survey: record it, and hand out the response's token."""
    shop = _shop_for_key(shop_key)
    if request.method == "OPTIONS":
        return _preflight(shop, "POST")
    _check_origin(shop)
    data = _json_object()
    _only(data, _RESPONSE_FIELDS)
    if "survey" not in data:
        raise ShopperError(400, "missing_field", "Send survey.")
    survey = _active_survey(data["survey"])
    visitor = text_field(data, "visitor", VISITOR_ID_MAX, required=True)
    page = text_field(data, "page", PAGE_URL_MAX)
    device = _device(data)
    response = start_response(
        db.session,
        survey,
        shop,
        visitor_id=visitor,
        identity=identity_from(data),
        device=device,
        page_url=page,
    )
    db.session.commit()
    token = response_token(response.public_id)
    url = url_for("respond.step", token=token, _external=True)
    return jsonify({"token": token, "url": url}), 201


@bp.route("/embed/r/<token>/answers", methods=["POST", "OPTIONS"])
@public
@rate_limited
def answers(token: str) -> Response:
    """One answer; the same answer twice is stored once, a changed one replaces it.

    The usual answer never gets here: webapp.surveys.quick takes it before Flask does."""
    shop = get_shop()
    if request.method == "OPTIONS":
        return _preflight(shop, "POST")
    _check_origin(shop)
    survey_response = response_for_token(token)
    data = _json_object()
    _only(data, frozenset({"question", "answer"}))
    if "question" not in data or "answer" not in data:
        raise ShopperError(400, "missing_field", "Send question and answer.")
    try:
        record_answer(db.session, survey_response, data["question"], data["answer"])
    except AnswerError as error:
        status = 409 if isinstance(error, AnswerRejected) else 422
        raise ShopperError(status, error.code, error.reason) from None
    # The reply before the commit: after it, reading the response would load it again.
    reply = jsonify(
        {
            "next": survey_response.next_question,
            "completed": survey_response.completed_at is not None,
        }
    )
    db.session.commit()
    return reply


@bp.route("/embed/r/<token>/dismiss", methods=["POST", "OPTIONS"])
@public
@rate_limited
def dismiss(token: str) -> Response:
    """The shopper closed the survey (sent with keepalive or sendBeacon as the page goes)."""
    shop = get_shop()
    if request.method == "OPTIONS":
        return _preflight(shop, "POST")
    _check_origin(shop)
    survey_response = response_for_token(token)
    _only(_json_object(allow_empty=True), frozenset())
    dismiss_response(survey_response)
    db.session.commit()
    return Response(status=204)
