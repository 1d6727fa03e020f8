"""The signed response token: what lets a shopper's iframe, and only it, write its response.

The token names the response (its random public id) and is signed with SECRET_KEY, so it
cannot be forged or pointed at another shopper's response; it travels in the iframe's URL and
the embed's requests, so no third-party cookie is needed.
"""

from __future__ import annotations

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

_SALT = "patchwork.survey-response"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_SALT)


def response_token(public_id: str) -> str:
    return _serializer().dumps(public_id)


def read_response_token(token: str) -> str | None:
    """The response's public id, or None for a forged, altered or expired token."""
    max_age = current_app.config["SURVEY_TOKEN_MAX_AGE_DAYS"] * 86400
    try:
        value = _serializer().loads(token, max_age=max_age)
    except BadSignature:  # SignatureExpired is a BadSignature
        return None
    return value if isinstance(value, str) else None
