"""The JSON API (`POST /api/orders`) and Shopify's order webhooks.

Both authenticate themselves (a bearer token; an HMAC signature), so their views are @public,
and both validate the whole body before the first write.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge

from webapp.auth import public
from webapp.extensions import db
from webapp.imports.payloads import (
    MAX_ORDERS_PER_CALL,
    FieldError,
    PayloadError,
    parse_api_orders,
    parse_shopify_order,
)
from webapp.imports.records import ImportReport, OrderRecord
from webapp.models import ApiToken
from webapp.settings import hash_token
from webapp.shop import get_shop, shop_timezone

bp = Blueprint("api", __name__)

# 1000 orders with a few lines each is well under 4 MB; the app-wide limit is sized for CSVs.
MAX_API_BODY = 16 * 1024 * 1024
MAX_WEBHOOK_BODY = 4 * 1024 * 1024
SHOPIFY_ORDER_TOPICS = {"orders/create", "orders/updated"}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        errors: list[FieldError] | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []
        self.headers = headers or {}


@bp.errorhandler(ApiError)
def _api_error(error: ApiError) -> tuple[Response, int, dict]:
    body: dict = {"error": error.message}
    if error.errors:
        body["errors"] = [e.as_dict() for e in error.errors]
    return jsonify(body), error.status, error.headers


# --- tokens ------------------------------------------------------------------------------


# RFC 6750: no credentials -> just the challenge; bad credentials -> error="invalid_token".
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="patchwork"'}
_INVALID = {"WWW-Authenticate": 'Bearer realm="patchwork", error="invalid_token"'}


def authenticate_bearer() -> ApiToken:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "Send an API token: Authorization: Bearer <token>.", headers=_CHALLENGE)
    api_token = db.session.scalar(
        select(ApiToken).where(ApiToken.token_hash == hash_token(token.strip()))
    )
    if api_token is None:
        raise ApiError(401, "This API token is not valid.", headers=_INVALID)
    if api_token.revoked_at is not None:
        raise ApiError(401, "This API token has been revoked.", headers=_INVALID)
    return api_token


# --- bodies ------------------------------------------------------------------------------


def read_body(limit: int) -> bytes:
    """The raw body, refusing oversized ones before reading them when the length is known."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"The body is larger than {limit // (1024 * 1024)} MB.")
    request.max_content_length = limit  # also stops chunked bodies without a length
    try:
        return request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise ApiError(413, f"The body is larger than {limit // (1024 * 1024)} MB.") from None


def parse_json(raw: bytes) -> object:
    # Decimal, never float: "total": 19.99 must stay exactly 1999 cents.
    try:
        return json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError as exc:  # also bad UTF-8, NaN/Infinity and 5000-digit integers
        raise ApiError(400, f"The body is not valid JSON: {exc}.") from None
    except RecursionError:
        raise ApiError(400, "The body is nested too deeply.") from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def write_orders(records: list[OrderRecord], source: str) -> ImportReport:
    """Upsert the orders, then link survey responses that were waiting for them."""
    # The writer retries once itself when a concurrent call inserted the same rows first.
    from webapp.imports.service import link_survey_responses
    from webapp.imports.writer import upsert_orders

    report = upsert_orders(records, source=source)
    link_survey_responses()
    return report


REPORT_COUNTS = ("customers_created", "customers_updated", "orders_created", "orders_updated")


def report_body(report: ImportReport, received: int) -> dict:
    """The writer's counts, as the CLI's --json prints them, and how many orders came in."""
    body = {name: getattr(report, name) for name in REPORT_COUNTS}
    body["lines"] = report.lines
    body["orders_received"] = received
    return body


# --- POST /api/orders --------------------------------------------------------------------


@bp.route("/api/orders", methods=["POST"])
@public
def orders():
    token = authenticate_bearer()
    if not request.is_json:
        raise ApiError(415, "Send the orders as JSON (Content-Type: application/json).")
    body = parse_json(read_body(MAX_API_BODY))
    if not isinstance(body, dict) or not isinstance(body.get("orders"), list):
        raise ApiError(400, 'The body must be an object with a list of orders: {"orders": [...]}.')
    unknown = sorted(set(body) - {"orders"})
    if unknown:
        raise ApiError(400, f"Unknown top-level field(s): {', '.join(unknown)}.")
    if len(body["orders"]) > MAX_ORDERS_PER_CALL:
        raise ApiError(
            413,
            f"{len(body['orders'])} orders in one call; send at most {MAX_ORDERS_PER_CALL}.",
        )
    shop = get_shop()
    records, errors = parse_api_orders(body["orders"], shop_timezone(), shop.currency)
    token.last_used_at = datetime.now(UTC)
    db.session.commit()
    if errors:
        bad = len({e.index for e in errors})
        raise ApiError(
            422,
            f"{bad} of {len(body['orders'])} orders are invalid; nothing was imported.",
            errors,
        )
    report = write_orders(records, source="api")
    return jsonify(report_body(report, len(records)))


# --- POST /webhooks/shopify/orders -------------------------------------------------------


def shopify_signature_valid(raw: bytes, header: str, secret: str) -> bool:
    expected = base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest())
    return hmac.compare_digest(expected, header.strip().encode())


@bp.route("/webhooks/shopify/orders", methods=["POST"])
@public
def shopify_orders_webhook():
    secret = get_shop().webhook_secret
    if not secret:
        raise ApiError(401, "No Shopify webhook secret is configured in Patchwork's Settings.")
    raw = read_body(MAX_WEBHOOK_BODY)
    signature = request.headers.get("X-Shopify-Hmac-Sha256", "")
    if not signature or not shopify_signature_valid(raw, signature, secret):
        raise ApiError(401, "The X-Shopify-Hmac-Sha256 signature does not match.")
    topic = request.headers.get("X-Shopify-Topic", "")
    if topic not in SHOPIFY_ORDER_TOPICS:
        # Shopify retries anything but a 2xx: accept other topics and do nothing.
        return jsonify({"ignored": True, "topic": topic})
    try:
        record = parse_shopify_order(parse_json(raw))
    except PayloadError as exc:
        raise ApiError(400, f"Not a usable Shopify order: {exc}.") from None
    report = write_orders([record], source="shopify_webhook")
    return jsonify(report_body(report, 1))
