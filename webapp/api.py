"""The JSON API (`POST /api/orders`) and Shopify's order webhooks."""

from flask import Blueprint

bp = Blueprint("api", __name__)
