"""The shopper's unsubscribe link and email preferences, reached from every campaign email.

- /u/<token>            the List-Unsubscribe address. A POST unsubscribes at once: RFC 8058's
                        one-click (mail clients post ``List-Unsubscribe=One-Click``) and the
                        page's own button alike. A GET only shows that button: link scanners
                        and prefetchers follow GETs, and must never unsubscribe anyone.
- /preferences/<token>  whether the address is subscribed, with buttons to unsubscribe or
                        subscribe again (forms post an ``action`` to the same address).

The signed token (webapp.campaigns.messages.recipient_token) names the customer and the
ledger row of the email; it is the only key, so there is no login and no CSRF token (a mail
client's one-click POST could carry neither). An unsubscribe is recorded once per link as an
EmailEvent, next to SendGrid's own events, for the campaign's report.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, render_template, request
from werkzeug.exceptions import HTTPException

from webapp.auth import public
from webapp.campaigns.events import store_events
from webapp.campaigns.messages import read_recipient_token
from webapp.extensions import db
from webapp.models import CampaignRecipient, Customer
from webapp.models._types import utcnow
from webapp.shop import get_shop

bp = Blueprint("unsubscribe", __name__)

TOKEN_MAX = 200  # our tokens are under 100 characters; longer is not ours
ACTIONS = ("unsubscribe", "resubscribe")


@bp.after_request
def _shopper_page_headers(response: Response) -> Response:
    """Plain pages of our own: no scripts, no framing, the token never sent on, not cached."""
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self';"
        " base-uri 'none'; frame-ancestors 'none'"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def _error_page(error: HTTPException):
    db.session.rollback()
    return render_template("unsubscribe/invalid.html", status=error.code), error.code


for _code in (400, 404, 405):
    # By code: the app's owner-facing error pages are registered by code and would win.
    bp.register_error_handler(_code, _error_page)


def _subscriber(token: str) -> tuple[Customer, int | None]:
    """The customer a token names and the ledger row of the email it came in; 404 if the
    token is forged or the customer is gone."""
    found = read_recipient_token(token) if len(token) <= TOKEN_MAX else None
    customer = db.session.get(Customer, found[0]) if found else None
    if customer is None or customer.erased_at is not None:
        abort(404)
    return customer, found[1]


def masked(email: str | None) -> str:
    """j•••@example.com: enough for the shopper to recognise, little for anyone else."""
    if not email or "@" not in email:
        return ""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}•••@{domain}"


def unsubscribe_customer(customer: Customer, recipient_id: int | None) -> None:
    """Unsubscribe (kept as first done) and record the link's event once. The caller commits."""
    now = utcnow()
    if customer.unsubscribed_at is None:
        customer.unsubscribed_at = now
    ledger = db.session.get(CampaignRecipient, recipient_id) if recipient_id else None
    if ledger is not None and ledger.customer_id != customer.id:
        ledger = None
    store_events(
        [
            {
                "sg_event_id": f"link:{customer.id}:{recipient_id or 0}",
                "event": "unsubscribe",
                "campaign_id": ledger.campaign_id if ledger else None,
                "recipient_id": ledger.id if ledger else None,
                "customer_id": customer.id,
                "machine_open": False,
                "url": None,
                "reason": None,
                "occurred_at": now,
            }
        ]
    )


def resubscribe_customer(customer: Customer) -> None:
    """Subscribe again: fresh consent, given on the preferences page. The caller commits."""
    customer.unsubscribed_at = None
    customer.accepts_marketing = True
    customer.consent_source = "preferences"
    customer.consent_at = utcnow()


def subscribed(customer: Customer) -> bool:
    return customer.accepts_marketing and customer.unsubscribed_at is None


def _page(template: str, token: str, customer: Customer, **context) -> str:
    return render_template(
        template,
        token=token,
        shop=get_shop(),
        address=masked(customer.email),
        subscribed=subscribed(customer),
        bounced=customer.bounced_at is not None,
        **context,
    )


@bp.route("/u/<token>", methods=["GET", "POST"])
@public
def unsubscribe(token: str):
    customer, recipient_id = _subscriber(token)
    if request.method != "POST":  # GET and HEAD: show the button, change nothing
        return _page("unsubscribe/unsubscribe.html", token, customer, done=False)
    unsubscribe_customer(customer, recipient_id)
    db.session.commit()
    return _page("unsubscribe/unsubscribe.html", token, customer, done=True)


@bp.route("/preferences/<token>", methods=["GET", "POST"])
@public
def preferences(token: str):
    customer, recipient_id = _subscriber(token)
    if request.method != "POST":
        return _page("unsubscribe/preferences.html", token, customer, notice=None)
    action = request.form.get("action")
    if action not in ACTIONS:
        abort(400)
    if action == "unsubscribe":
        unsubscribe_customer(customer, recipient_id)
    else:
        resubscribe_customer(customer)
    db.session.commit()
    return _page("unsubscribe/preferences.html", token, customer, notice=action)
