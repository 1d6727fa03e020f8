"""What the shopper-facing endpoints share: allowed origins, the rate limit, the response token.

The embed's JSON endpoints (embed.py) and the survey pages (respond.py) answer the same
questions the same way: which sites may call or frame them, how often one address may, and
which response a token names. Each blueprint renders a `ShopperError` in its own form (JSON
for the embed, a page for the survey).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache

from flask import current_app, request
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from surveys.answers import EMAIL_MAX
from surveys.errors import text_problem
from webapp.extensions import db, limiter
from webapp.models import ShopSettings, SurveyResponse
from webapp.settings import normalise_origin
from webapp.surveys.responses import REF_MAX, Identity
from webapp.surveys.tokens import read_response_token

# itsdangerous tokens of a 32-character id are about 80 characters; longer is not ours.
TOKEN_MAX = 200
_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")  # hex HMAC-SHA256
# text/plain too: navigator.sendBeacon and no-preflight fetches send JSON that way.
JSON_MIMETYPES = frozenset({"", "application/json", "text/plain"})


class ShopperError(Exception):
    """A request a shopper's browser (or a bot) made that cannot be served: a 4xx."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


def _survey_rate_limit() -> str:
    # Read per request, so each app (and each test) uses its own configured limit.
    return current_app.config["SURVEY_RATE_LIMIT"]


def rate_limited(view: Callable) -> Callable:
    """Limit a public view to SURVEY_RATE_LIMIT per visitor address (see RateLimiter)."""
    return limiter.limit(_survey_rate_limit)(view)


@lru_cache(maxsize=256)  # the same few origins arrive with every request
def _origin_or_none(value: str | None) -> str | None:
    try:
        return normalise_origin(value) if value else None
    except ValueError:
        return None


def patchwork_origins(host_url: str | None = None) -> set[str]:
    """Patchwork's own origins: the configured public address and the one this request used
    (`host_url`, by default the current request's)."""
    own = {
        _origin_or_none(current_app.config["PUBLIC_BASE_URL"]),
        _origin_or_none(host_url or request.host_url),
    }
    return {origin for origin in own if origin}


def shop_origins(shop: ShopSettings) -> list[str]:
    """The shop's allowed origins (Settings, one per line), in the order the owner wrote them."""
    return list(_listed_origins(shop.allowed_origins or ""))


@lru_cache(maxsize=8)  # parsed once per value of the setting, not once per request
def _listed_origins(setting: str) -> tuple[str, ...]:
    origins: list[str] = []
    for line in setting.splitlines():
        origin = _origin_or_none(line.strip())
        if origin and origin not in origins:
            origins.append(origin)
    return tuple(origins)


def origin_allowed(shop: ShopSettings, origin: str | None) -> bool:
    """Whether a browser request from `origin` may use the shop's public endpoints.

    No Origin header (a server, or a same-origin GET) is allowed; "null" (sandboxed frames,
    files) and anything unparsable are not.
    """
    return origin_allowed_by(shop.allowed_origins, origin)


def origin_allowed_by(
    allowed_origins: str | None, origin: str | None, host_url: str | None = None
) -> bool:
    """`origin_allowed`, given the shop's allowed-origins setting itself (and the request's
    host URL, by default the current request's)."""
    if origin is None:
        return True
    normalised = _origin_or_none(origin)
    if normalised is None:
        return False
    return normalised in _listed_origins(allowed_origins or "") or normalised in (
        patchwork_origins(host_url)
    )


def parse_json(raw: bytes) -> object:
    """Strict JSON (no NaN or Infinity); ValueError or RecursionError if it is not."""
    return json.loads(raw, parse_constant=_reject_constant)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def public_id_for(token: str) -> str | None:
    """The response id a signed token carries; None if forged, expired or too long."""
    return read_response_token(token) if len(token) <= TOKEN_MAX else None


def response_for_token(token: str) -> SurveyResponse:
    """The response a signed token names; ShopperError 403 if forged or expired, 404 if gone."""
    public_id = public_id_for(token)
    if public_id is None:
        raise ShopperError(403, "invalid_token", "This survey link is not valid or has expired.")
    response = db.session.scalar(
        select(SurveyResponse)
        .options(joinedload(SurveyResponse.survey))  # every caller needs its definition
        .where(SurveyResponse.public_id == public_id)
    )
    if response is None:
        raise ShopperError(404, "unknown_response", "This survey response no longer exists.")
    return response


def text_field(data: Mapping, key: str, limit: int, *, required: bool = False) -> str | None:
    """A text field of a request, stripped; None when absent or blank.

    ShopperError 400 when it is not text, cannot be stored, is too long, or is required and
    missing.
    """
    value = data.get(key)
    if value is not None:
        if not isinstance(value, str):
            raise ShopperError(400, "invalid_type", f"{key} must be text.")
        if problem := text_problem(value):
            raise ShopperError(400, "invalid_text", f"{key}: {problem}")
        value = value.strip()
        if len(value) > limit:
            raise ShopperError(400, "too_long", f"{key} is at most {limit} characters long.")
    if required and not value:
        raise ShopperError(400, "missing_field", f"Send {key}.")
    return value or None


def identity_from(data: Mapping) -> Identity:
    """Who the shop's page (or the link in an email) says the shopper is.

    The same fields everywhere: order_id, email, customer_id and signature (hex HMAC-SHA256
    of "order_id|email|customer_id" with the shop's embed secret).
    """
    signature = text_field(data, "signature", 64)
    if signature and not _SIGNATURE.fullmatch(signature):
        raise ShopperError(
            400, "invalid_signature", "signature must be a hex HMAC-SHA256 (64 characters)."
        )
    return Identity(
        order_ref=text_field(data, "order_id", REF_MAX),
        email=text_field(data, "email", EMAIL_MAX),
        customer_ref=text_field(data, "customer_id", REF_MAX),
        signature=signature,
    )
