"""SendGrid's Event Webhook (`POST /webhooks/sendgrid`): what became of each message.

SendGrid signs every POST (ECDSA P-256 over the timestamp header and the raw body) with the
key shown under Mail Settings; without that key configured nothing is accepted, and a
signature more than five minutes away from now is a replay. A POST carries up to thousands
of events and SendGrid retries a POST it thinks failed, so each event is stored once by its
``sg_event_id`` (ON CONFLICT DO NOTHING, on SQLite and PostgreSQL alike), all of a POST in
one transaction.

Events name their message through the custom_args the sender set (``campaign_id``, and
``recipient_id`` per personalization), which SendGrid copies into each event as top-level
keys. An event that names no ledger row, or the wrong campaign for it, is not ours (a test
send, another system on the same account): it is ignored, and still answered 200 so that
SendGrid does not retry it. Bounces, spam reports and unsubscribes mark the customer, who is
then never mailed again (webapp.segmentation.compiler.sendable).
"""

from __future__ import annotations

import binascii
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric import ec
from flask import Blueprint, Response, current_app, jsonify, request
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from webapp.api import ApiError, parse_json, read_body
from webapp.auth import public
from webapp.extensions import db
from webapp.models import CampaignRecipient, Customer, EmailEvent

bp = Blueprint("sendgrid_events", __name__)

MAX_BODY = 16 * 1024 * 1024  # thousands of events of a few hundred bytes each
TIMESTAMP_TOLERANCE = 300  # seconds either side of now
LEDGER_CHUNK = 1000  # ledger ids per IN (...) query
MAX_ID = 2**31 - 1  # an INTEGER column


@bp.errorhandler(ApiError)
def _refused(error: ApiError) -> tuple[Response, int]:
    return jsonify({"error": error.message}), error.status


# --- the signature -----------------------------------------------------------------------


def _digits(text: str) -> bool:
    """A short run of ASCII digits (int() takes other digits too, and is slow on long runs)."""
    return text.isascii() and text.isdigit() and len(text) <= 12


@lru_cache(maxsize=4)  # the configured key, parsed once
def _verifier(key: str) -> EventWebhook:
    """The key as SendGrid shows it (base64 DER); a pasted PEM's armour lines are dropped."""
    lines = (line.strip() for line in key.splitlines())
    verifier = EventWebhook("".join(line for line in lines if not line.startswith("-----")))
    if not isinstance(verifier.public_key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic curve key")
    return verifier


def verify_request(raw: bytes) -> None:
    """ApiError unless the body carries a current signature by the configured key."""
    key = current_app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"].strip()
    if not key:
        raise ApiError(
            503, "SENDGRID_WEBHOOK_PUBLIC_KEY is not configured: events cannot be verified."
        )
    try:
        verifier = _verifier(key)
    except ValueError:
        raise ApiError(503, "SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid public key.") from None
    signature = request.headers.get(EventWebhookHeader.SIGNATURE, "").strip()
    timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP, "").strip()
    if not signature or not timestamp:
        raise ApiError(
            401,
            f"Send the {EventWebhookHeader.SIGNATURE} and {EventWebhookHeader.TIMESTAMP} headers.",
        )
    if not _digits(timestamp) or abs(time.time() - int(timestamp)) > TIMESTAMP_TOLERANCE:
        raise ApiError(403, "The signature's timestamp is not within five minutes of now.")
    try:
        payload = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "The body is not UTF-8.") from None
    try:
        valid = verifier.verify_signature(payload, signature, timestamp)
    except (binascii.Error, ValueError):  # not base64, or not a DER signature
        valid = False
    if not valid:
        raise ApiError(403, "The signature does not match the body.")


# --- the events --------------------------------------------------------------------------


def suppression(event: dict) -> str | None:
    """The Customer column an event sets, if any."""
    kind = event.get("event")
    if kind == "bounce" and event.get("type") != "blocked":  # a block is not the address
        return "bounced_at"
    if kind == "dropped" and "bounced address" in str(event.get("reason", "")).lower():
        return "bounced_at"
    if kind == "spamreport":
        return "spam_reported_at"
    if kind in ("unsubscribe", "group_unsubscribe"):
        return "unsubscribed_at"
    return None


def _text(value: object) -> str | None:
    """A text field as stored: NUL characters dropped (PostgreSQL refuses them)."""
    if not isinstance(value, str):
        return None
    return value.replace("\x00", "") or None


def _id(value: object) -> int | None:
    """A custom_args id: SendGrid sends them back as strings."""
    if isinstance(value, bool):
        return None
    text = str(value).strip() if isinstance(value, (str, int)) else ""
    return int(text) if _digits(text) and 0 < int(text) <= MAX_ID else None


def _occurred_at(value: object) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), UTC)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _ledger(recipient_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """Ledger row id -> (campaign id, customer id), read a chunk of ids at a time."""
    ids = sorted(set(recipient_ids))
    found: dict[int, tuple[int, int]] = {}
    for start in range(0, len(ids), LEDGER_CHUNK):
        rows = db.session.execute(
            select(
                CampaignRecipient.id, CampaignRecipient.campaign_id, CampaignRecipient.customer_id
            ).where(CampaignRecipient.id.in_(ids[start : start + LEDGER_CHUNK]))
        )
        found.update(
            {row_id: (campaign_id, customer_id) for row_id, campaign_id, customer_id in rows}
        )
    return found


def event_rows(events: list) -> tuple[list[dict], int]:
    """The EmailEvent rows of a POST's events (each sg_event_id once), and how many were
    ignored: not an object, no sg_event_id or time, or no matching ledger row."""
    candidates = [e for e in events if isinstance(e, dict)]
    ledger = _ledger(r for e in candidates if (r := _id(e.get("recipient_id"))) is not None)
    rows: dict[str, dict] = {}
    ignored = len(events) - len(candidates)
    for event in candidates:
        sg_event_id = _text(event.get("sg_event_id"))
        kind = _text(event.get("event"))
        occurred_at = _occurred_at(event.get("timestamp"))
        recipient_id = _id(event.get("recipient_id"))
        owner = ledger.get(recipient_id)
        if (
            not sg_event_id
            or len(sg_event_id) > 120
            or not kind
            or len(kind) > 30
            or occurred_at is None
            or owner is None
            or owner[0] != _id(event.get("campaign_id"))
        ):
            ignored += 1
            continue
        rows.setdefault(
            sg_event_id,
            {
                "sg_event_id": sg_event_id,
                "event": kind,
                "campaign_id": owner[0],
                "recipient_id": recipient_id,
                "customer_id": owner[1],
                "machine_open": event.get("sg_machine_open") in (True, "true"),
                "url": _text(event.get("url")),
                "reason": _text(event.get("reason")),
                "occurred_at": occurred_at,
                "suppresses": suppression(event),
            },
        )
    return list(rows.values()), ignored


def store_events(rows: list[dict]) -> set[str]:
    """Insert EmailEvent rows, skipping sg_event_ids already stored; the ids inserted.

    Also used for the unsubscribe page's own events. The caller commits.
    """
    if not rows:
        return set()
    module = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        module.insert(EmailEvent)
        .on_conflict_do_nothing(index_elements=["sg_event_id"])
        .returning(EmailEvent.sg_event_id)
    )
    return set(db.session.scalars(statement, rows))


def apply_suppressions(rows: list[dict]) -> None:
    """Mark each customer by the earliest event of each kind (columns already set are kept)."""
    earliest: dict[tuple[str, int], datetime] = {}
    for row in rows:
        if row["suppresses"]:
            key = (row["suppresses"], row["customer_id"])
            earliest[key] = min(earliest.get(key, row["occurred_at"]), row["occurred_at"])
    by_column: dict[str, list[dict]] = defaultdict(list)
    for (column, customer_id), at in earliest.items():
        by_column[column].append({"customer": customer_id, "at": at})
    table = Customer.__table__
    for column, params in by_column.items():
        db.session.execute(
            update(table)
            .where(table.c.id == bindparam("customer"), table.c[column].is_(None))
            .values({column: bindparam("at")}),
            params,
        )


@bp.route("/webhooks/sendgrid", methods=["POST"])
@public
def receive():
    raw = read_body(MAX_BODY)
    verify_request(raw)
    events = parse_json(raw)
    if not isinstance(events, list):
        raise ApiError(400, "The body must be a JSON list of events.")
    rows, ignored = event_rows(events)
    stored = store_events([{k: v for k, v in row.items() if k != "suppresses"} for row in rows])
    # Only new events mark customers: a retried old unsubscribe must not undo a re-subscribe.
    apply_suppressions([row for row in rows if row["sg_event_id"] in stored])
    db.session.commit()
    duplicates = len(events) - ignored - len(stored)
    return jsonify({"stored": len(stored), "duplicates": duplicates, "ignored": ignored})
