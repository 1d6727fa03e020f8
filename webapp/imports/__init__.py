"""Getting the shop's products and order history in: CSV files, the JSON API, webhooks."""

from flask import Blueprint

bp = Blueprint("imports", __name__, url_prefix="/imports")


@bp.route("/")
def index():
    return "todo"
