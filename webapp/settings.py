"""The Settings page: the shop's own settings, category table and rules, API tokens."""

from flask import Blueprint

bp = Blueprint("settings", __name__, url_prefix="/settings")


@bp.route("/")
def index():
    return "todo"
