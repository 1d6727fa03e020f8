"""Getting the shop's products and order history in: CSV files, the JSON API, webhooks."""

from flask import Blueprint

bp = Blueprint("imports", __name__, url_prefix="/imports")

# The views register their routes on bp, so they are imported once bp exists.
from webapp.imports import views  # noqa: E402, F401
