"""The owner's survey pages: the list, starting from a template, the htmx builder."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("surveys", __name__, url_prefix="/surveys")


@bp.get("/")
def index():
    """Placeholder until the builder lands: the list of surveys."""
    from flask import render_template_string

    return render_template_string(
        "{% extends 'base.html' %}{% block content %}<h1>Surveys</h1>{% endblock %}"
    )
