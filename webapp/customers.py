"""Customers: search, sort and page; one customer's orders; privacy export and erasure."""

from flask import Blueprint

bp = Blueprint("customers", __name__, url_prefix="/customers")


@bp.route("/")
def index():
    return "todo"
