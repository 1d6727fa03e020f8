"""Catalogue pages: products, the category -> craft table, and the category rules."""

from flask import Blueprint

bp = Blueprint("catalog", __name__, url_prefix="/catalog")


@bp.route("/")
def index():
    return "todo"
