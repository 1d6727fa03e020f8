"""The shopper's survey pages: the iframe's steps, the hosted link, and the owner's preview."""

from __future__ import annotations

from flask import Blueprint

from webapp.auth import public
from webapp.surveys.public import rate_limited, response_for_token

bp = Blueprint("respond", __name__)


@bp.route("/r/<token>", methods=["GET", "POST"])
@public
@rate_limited
def step(token: str):
    response_for_token(token)
    return "The survey page is on its way."
