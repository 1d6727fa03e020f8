"""A survey's results: funnel, a chart per question, NPS, the responses list and CSV export."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("survey_results", __name__, url_prefix="/surveys")
