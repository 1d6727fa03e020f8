"""The embed's public endpoints: the loader script, its config, and shown/dismissed/answers."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("embed", __name__)
