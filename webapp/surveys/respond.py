"""The shopper's survey pages: the iframe's steps, the hosted link, and the owner's preview."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("respond", __name__)
