"""Sending a campaign: freeze the recipients into the ledger, then mail them batch by batch,
never twice.

The ledger row of each (campaign, customer) moves queued -> sending -> sent (or failed,
unknown, back to queued). A batch is marked ``sending`` and committed before its requests go
out, and ``sent`` only after SendGrid accepted them. A sender that dies (SIGKILL, power
loss) therefore leaves at most its batch in flight as ``sending``; whoever resumes marks
those rows ``unknown`` for the owner to decide on, and goes on with the queued rest.

One process sends a campaign at a time: it holds the campaign's lease
(webapp.campaigns.lease).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import partial
from time import monotonic
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import and_, bindparam, func, or_, select, update

from webapp import collector, tasks
from webapp.campaigns import lease
from webapp.campaigns.ledger import (
    CampaignError,
    freeze,
    readiness,
    status_counts,
    suppression_reason,
)
from webapp.campaigns.mailer import Mailer, Outcome, mailer_for
from webapp.campaigns.messages import PERSONALIZATIONS_PER_REQUEST, Payloads, Recipient
from webapp.campaigns.render import ContentError
from webapp.extensions import db
from webapp.models import Campaign, CampaignRecipient, Customer, ShopSettings
from webapp.models._types import utcnow
from webapp.scheduler.registry import Dispatch, dispatch_source

log = logging.getLogger(__name__)

SEND_TASK = "campaign_send"
R = CampaignRecipient
MAX_FAILED_BATCHES = 3  # in a row: the campaign pauses itself


class CampaignBusy(CampaignError):
    """Another process is sending it."""


Progress = Callable[..., None]


# --- quiet hours -------------------------------------------------------------------------


def _clock(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def next_send_window(moment: datetime, shop: ShopSettings) -> datetime:
    """``moment`` if sending may start then (inside the shop's sending hours, default
    09:00-20:00 shop time), else when the next window opens."""
    tz = ZoneInfo(shop.timezone)
    local = moment.astimezone(tz)
    start, end = _clock(shop.quiet_hours_start), _clock(shop.quiet_hours_end)
    now = local.time()
    inside = start <= now < end if start <= end else (now >= start or now < end)
    if inside:
        return moment
    day = local.date() if now < start else local.date() + timedelta(days=1)
    return datetime.combine(day, start, tzinfo=tz).astimezone(UTC)


# --- sending ------------------------------------------------------------------------------


@dataclass
class Summary:
    campaign_id: int
    status: str
    counts: dict[str, int]
    sent_now: int = 0
    paused_reason: str = ""

    def as_dict(self) -> dict:
        return {
            "campaign_id": self.campaign_id,
            "status": self.status,
            "sent_now": self.sent_now,
            "counts": self.counts,
            "paused_reason": self.paused_reason,
        }


def summary(campaign: Campaign, sent_now: int = 0) -> Summary:
    return Summary(
        campaign.id,
        campaign.status,
        status_counts(campaign.id),
        sent_now,
        campaign.paused_reason,
    )


def send_campaign(
    campaign_id: int,
    *,
    mailer: Mailer | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    sending_hours: bool = True,
) -> Summary:
    """Start or go on sending: freeze the ledger if not yet done, then mail every queued
    recipient. Returns when all are done, or the campaign is paused or cancelled (from the
    browser, the command line, or by itself after repeated failures).

    A scheduled campaign starts only once its time has come and, unless ``sending_hours``
    is off (the operator's `patchwork campaigns send`), inside the shop's sending hours;
    otherwise it waits for the next window."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignError(f"There is no campaign {campaign_id}.")
    if campaign.status not in ("scheduled", "sending"):  # draft (unscheduled), paused, done
        return summary(campaign)
    owner = lease.sender_name()
    if not lease.take(campaign_id, owner):
        raise CampaignBusy(f"Campaign {campaign_id} is being sent by {campaign.lease_owner}.")
    mailer = mailer or mailer_for(current_app.config)
    try:
        with collector.held_back():
            return _send(campaign_id, owner, mailer, progress, stop, sending_hours)
    finally:
        mailer.close()
        lease.release(campaign_id, owner)


def _start(campaign: Campaign, shop: ShopSettings, mailer: Mailer, sending_hours: bool) -> bool:
    """Freeze the ledger and mark the campaign sending, in one transaction, if it is still
    scheduled and due (a cancel or unschedule committed meanwhile wins). False: not now."""
    now = utcnow()
    window = next_send_window(now, shop) if sending_hours else now
    if window > now:  # outside the sending hours: wait for the next window
        db.session.execute(
            update(Campaign)
            .where(Campaign.id == campaign.id, Campaign.status == "scheduled")
            .values(scheduled_at=window)
        )
        db.session.commit()
        return False
    if problems := readiness(campaign, shop):
        raise CampaignError(" ".join(problems))
    started = db.session.execute(
        update(Campaign)
        .where(
            Campaign.id == campaign.id,
            Campaign.status == "scheduled",
            Campaign.scheduled_at <= now,
            Campaign.started_at.is_(None),
        )
        .values(status="sending", started_at=now)
    ).rowcount
    if not started:
        db.session.rollback()
        return False
    info = freeze(campaign, shop, now)
    db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign.id)
        .values(send_info={**info, "mailer": mailer.name})
    )
    db.session.commit()
    return True


def _send(campaign_id, owner, mailer, progress, stop, sending_hours) -> Summary:
    campaign = db.session.get(Campaign, campaign_id, populate_existing=True)
    shop = db.session.get(ShopSettings, 1)
    if campaign.started_at is None:
        if not _start(campaign, shop, mailer, sending_hours):
            return summary(db.session.get(Campaign, campaign_id, populate_existing=True))
        campaign = db.session.get(Campaign, campaign_id, populate_existing=True)
    else:
        # Rows in flight when the last sender stopped: SendGrid may have taken them.
        db.session.execute(
            update(R)
            .where(R.campaign_id == campaign_id, R.status == "sending")
            .values(status="unknown", error="In flight when the sender stopped; not re-sent.")
        )
        db.session.commit()
    if campaign.status != "sending":  # paused: a resume must set it back first
        return summary(campaign)

    payloads = Payloads(campaign, shop)
    batch_size = (
        current_app.config["CAMPAIGN_TEMPLATE_BATCH"]
        if campaign.uses_template
        else mailer.concurrency * current_app.config["CAMPAIGN_REQUESTS_PER_WORKER"]
    )
    loop = _Loop(campaign, owner, mailer, progress)
    try:
        loop.run(payloads, batch_size, stop)
    finally:
        loop.close()
    cancelled = select(Campaign.id).where(
        Campaign.id == campaign_id, Campaign.status == "cancelled"
    )
    # Rows a retry queued again after a cancel: cancelled too.
    db.session.execute(
        update(R)
        .where(R.campaign_id == campaign_id, R.status == "queued", cancelled.exists())
        .values(status="cancelled")
    )
    db.session.commit()
    db.session.expire_all()
    return summary(db.session.get(Campaign, campaign_id), loop.sent_now)


def _failed(error: ContentError) -> Outcome:
    return Outcome("failed", error=str(error))


class _Loop:
    """Batch after batch, the next one read and rendered while the one before is in flight
    (sent, then recorded): rows are marked ``sending`` only once the batch before is
    recorded, so at most one batch is ever in flight."""

    def __init__(self, campaign: Campaign, owner: str, mailer: Mailer, progress):
        self.campaign_id, self.owner, self.mailer = campaign.id, owner, mailer
        self.shared_requests = campaign.uses_template
        self.progress = progress
        counts = status_counts(campaign.id)
        self.done = counts.get("sent", 0)
        self.total = self.done + counts.get("queued", 0)
        self.sent_now = self.failed_batches = 0
        # The outbox writes through this thread's session: it sends in line.
        self.background = ThreadPoolExecutor(1) if mailer.threaded else None
        self.flight: Future | None = None

    def run(self, payloads: Payloads, size: int, stop) -> None:
        start = after = _before_first(self.campaign_id)
        claimed: list[Recipient] = []
        renew_at = 0.0
        while True:
            # A batch just claimed says the campaign was still sending under this lease:
            # its status is read again only when a claim took nothing.
            going = not (stop and stop.is_set()) and (
                bool(claimed) or self._status() == "sending"
            )
            upcoming = _queued(self.campaign_id, after, size) if going else []
            to_send = [r for r in upcoming if not r.suppressed]
            try:
                requests = self._requests(payloads, to_send)
            finally:
                self._land()
            if not upcoming:
                if going and after != start and _any_queued(self.campaign_id):
                    after = start  # rows a retry queued again, behind the ones read since
                    continue
                if going:
                    _finish(self.campaign_id)
                return
            renew = monotonic() >= renew_at
            claimed = _mark(self.campaign_id, self.owner, upcoming, renew)
            if renew:
                renew_at = monotonic() + current_app.config["CAMPAIGN_LEASE_SECONDS"] / 4
            if len(claimed) != len(to_send):  # paused or cancelled meanwhile
                requests = self._requests(payloads, claimed)
            after = upcoming[-1].id
            if claimed:
                self.flight = self._submit(claimed, requests)

    def _requests(self, payloads: Payloads, batch: list[Recipient]) -> list:
        """Each request encoded, or the ContentError its recipient's merge fields met."""
        return [
            request if isinstance(request, ContentError) else self.mailer.encode(request)
            for request in payloads.build(batch)
        ]

    def _status(self) -> str:
        return db.session.connection().scalar(_STATUS, {"campaign": self.campaign_id})

    def _submit(self, batch: list[Recipient], requests: list) -> Future:
        """Send the requests that rendered (the others fail with their error) and record
        what became of each: on the background thread, in a session of its own, while this
        one reads and renders the next batch; the outbox in line, through this session."""
        if self.background is None:
            future: Future = Future()
            future.set_result(self._settle(batch, requests))
            return future
        app = current_app._get_current_object()

        def send_and_record():
            with app.app_context():
                return self._settle(batch, requests)

        return self.background.submit(send_and_record)

    def _settle(self, batch: list[Recipient], requests: list) -> tuple[list[Outcome], int]:
        answers = iter(self.mailer.send_all(r for r in requests if not isinstance(r, ContentError)))
        outcomes = [
            Outcome("failed", error=str(r)) if isinstance(r, ContentError) else next(answers)
            for r in requests
        ]
        return outcomes, _record(batch, outcomes, self.shared_requests)

    def _land(self) -> None:
        """Wait for the batch in flight to be sent and recorded. SendGrid refusing the
        account (401, 403) pauses at once; three batches in a row that all failed, or all
        got no answer, pause too."""
        if self.flight is None:
            return
        future, self.flight = self.flight, None
        outcomes, sent = future.result()
        self.sent_now += sent
        self.done += sent
        errors = "; ".join(sorted({o.error for o in outcomes if o.error}))[:500]
        if any(o.status == "halt" for o in outcomes):
            pause(self.campaign_id, f"Paused: SendGrid refused the account. {errors}")
        elif not sent:
            self.failed_batches += 1
            if self.failed_batches >= MAX_FAILED_BATCHES:
                pause(
                    self.campaign_id,
                    f"Paused after {self.failed_batches} failed batches in a row: {errors}",
                )
        else:
            self.failed_batches = 0
        if self.progress:
            self.progress(self.done, self.total, f"{self.done} of {self.total} sent")

    def close(self) -> None:
        if self.background is not None:
            self.background.shutdown()


# The hot statements of the loop go through the tables (Core), not the ORM entities, and
# are built once: at 100,000 rows the ORM's per-row bookkeeping, and building a statement
# per batch, cost more than running the statements.
LEDGER = CampaignRecipient.__table__
CAMPAIGNS = Campaign.__table__
CUSTOMERS = Customer.__table__

_STATUS = select(CAMPAIGNS.c.status).where(CAMPAIGNS.c.id == bindparam("campaign"))

# The next rows of the campaign in id order, whatever their status: no index holds the
# status (see CampaignRecipient), and a condition on it would have PostgreSQL plan from
# statistics that predate the ledger (a sort of every row, in place of the index's order).
# The first batch reads from the campaign's first row, not from 0: PostgreSQL's generic plan
# walks the primary key from there, past every earlier campaign's rows.
_BEFORE_FIRST = select(func.min(LEDGER.c.id) - 1).where(
    LEDGER.c.campaign_id == bindparam("campaign")
)
_NEXT_ROWS = (
    select(
        LEDGER.c.id,
        LEDGER.c.customer_id,
        LEDGER.c.email,
        suppression_reason(),
        func.coalesce(CUSTOMERS.c.first_name, ""),
        LEDGER.c.status,
    )
    .select_from(LEDGER.outerjoin(CUSTOMERS, CUSTOMERS.c.id == LEDGER.c.customer_id))
    .where(LEDGER.c.campaign_id == bindparam("campaign"), LEDGER.c.id > bindparam("after"))
    .order_by(LEDGER.c.id)
    .limit(bindparam("size"))
)
_ANY_QUEUED = (
    select(LEDGER.c.id)
    .where(LEDGER.c.campaign_id == bindparam("campaign"), LEDGER.c.status == "queued")
    .limit(1)
)


def _queued(campaign_id: int, after: int, size: int) -> list[Recipient]:
    """The next queued rows after the row ``after``, up to ``size``; each with the reason
    its customer may no longer be mailed (unsubscribed, bounced, erased since the send
    started), if any, and the customer's first name for the merge fields."""
    found: list[Recipient] = []
    while len(found) < size:
        rows = db.session.connection().execute(
            _NEXT_ROWS, {"campaign": campaign_id, "after": after, "size": size}
        ).all()
        found += [Recipient(row_id, customer_id, email, suppressed=reason, first_name=first)
                  for row_id, customer_id, email, reason, first, status in rows
                  if status == "queued"]  # fmt: skip
        if len(rows) < size:
            break
        after = rows[-1][0]
    return found[:size]


_CLAIM = (
    LEDGER.update()
    .where(
        LEDGER.c.campaign_id == bindparam("campaign"),
        LEDGER.c.status == "queued",
        LEDGER.c.id.between(bindparam("first"), bindparam("last")),
        select(CAMPAIGNS.c.id)
        .where(
            CAMPAIGNS.c.id == bindparam("campaign"),
            CAMPAIGNS.c.status == "sending",
            CAMPAIGNS.c.lease_owner == bindparam("owner"),
        )
        .exists(),
    )
    .values(status="sending", batch=bindparam("first"), sent_at=bindparam("now"))
)
_CLAIMED = select(LEDGER.c.id).where(
    LEDGER.c.id.between(bindparam("first"), bindparam("last")),
    LEDGER.c.batch == bindparam("first"),
    LEDGER.c.status == "sending",
)


def _before_first(campaign_id: int) -> int:
    return db.session.connection().scalar(_BEFORE_FIRST, {"campaign": campaign_id}) or 0


def _any_queued(campaign_id: int) -> bool:
    return db.session.connection().scalar(_ANY_QUEUED, {"campaign": campaign_id}) is not None


def _mark(campaign_id: int, owner: str, batch: list[Recipient], renew: bool) -> list[Recipient]:
    """Mark the batch in flight, committed before any of it is sent; returns the rows that
    are to go. Rows whose customer can no longer be mailed are suppressed instead; nothing
    is marked unless the campaign is still sending under this sender's lease (a pause or a
    cancel from the browser, or a lease taken over, stops it here). The batch is every
    queued row from its first id to its last (only the lease holder changes queued rows,
    but for a cancel), so a range says it with two parameters rather than a thousand.

    The lease is renewed when ``renew`` says so (a few times per lease period), and
    whenever nothing was marked, to tell a lease taken over from a pause."""
    for reason in {r.suppressed for r in batch if r.suppressed}:
        ids = [r.id for r in batch if r.suppressed == reason]
        db.session.connection().execute(
            LEDGER.update()
            .where(LEDGER.c.id.in_(ids), LEDGER.c.status == "queued")
            .values(status="suppressed", reason=reason)
        )
    connection = db.session.connection()
    marked = connection.execute(
        _CLAIM,
        {"campaign": campaign_id, "owner": owner, "first": batch[0].id, "last": batch[-1].id,
         "now": utcnow()},
    ).rowcount  # fmt: skip
    to_send = [r for r in batch if not r.suppressed]
    if marked != len(to_send):  # some rows were not queued any more: which went?
        claimed = set(connection.scalars(_CLAIMED, {"first": batch[0].id, "last": batch[-1].id}))
        to_send = [r for r in batch if r.id in claimed]
    if (renew or not marked) and not lease.renew(campaign_id, owner):
        db.session.rollback()
        raise CampaignBusy(f"Campaign {campaign_id}: this sender's lease was taken over.")
    db.session.commit()
    return to_send


_ONE_ROW = (
    LEDGER.update()
    .where(LEDGER.c.id == bindparam("row_id"))
    .values(
        status=bindparam("new_status"),
        message_id=bindparam("new_message_id"),
        error=bindparam("new_error"),
    )
)


def _record(batch: list[Recipient], outcomes: list[Outcome], shared_requests: bool) -> int:
    """Each row's outcome: with a template, one UPDATE per request (its outcome covers the
    rows of its personalizations, a range of the batch); with a body, one executemany for
    the rows sent and one UPDATE per other outcome."""
    if shared_requests:
        size = PERSONALIZATIONS_PER_REQUEST
        groups = [
            (outcome, [r.id for r in batch[n * size : (n + 1) * size]])
            for n, outcome in enumerate(outcomes)
        ]
    else:
        groups = [(outcome, [row.id]) for row, outcome in zip(batch, outcomes, strict=True)]
    connection = db.session.connection()
    one_by_one = [
        {"row_id": ids[0], "new_status": "sent", "new_message_id": o.message_id, "new_error": None}
        for o, ids in groups
        if o.status == "sent" and len(ids) == 1
    ]
    if one_by_one:
        connection.execute(_ONE_ROW, one_by_one)
    for outcome, ids in groups:
        if outcome.status == "sent" and len(ids) == 1:
            continue
        change = {"status": outcome.status, "error": outcome.error}
        if outcome.status in ("retry", "halt"):  # SendGrid surely did not take it: queued again
            change.update(status="queued", batch=None, sent_at=None)
        elif outcome.status == "failed":
            change.update(sent_at=None)
        else:
            change.update(message_id=outcome.message_id)
        rows = and_(
            LEDGER.c.id.between(ids[0], ids[-1]),
            LEDGER.c.batch == batch[0].id,  # as _mark set it
            LEDGER.c.status == "sending",
        )
        connection.execute(LEDGER.update().where(rows).values(**change))
    db.session.commit()
    return sum(len(ids) for outcome, ids in groups if outcome.status == "sent")


def _finish(campaign_id: int) -> None:
    db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == "sending")
        .values(status="sent", finished_at=utcnow())
    )
    db.session.commit()


# --- what the owner and the operator do -------------------------------------------------


def schedule(campaign: Campaign, shop: ShopSettings, at: datetime | None = None) -> datetime:
    """Send at ``at`` (None: now), moved to the next sending window if outside it. The
    scheduler's dispatcher starts it then; a send due now is also queued for the task runner,
    which polls every few seconds."""
    when = next_send_window(max(at or utcnow(), utcnow()), shop)
    campaign.status, campaign.scheduled_at = "scheduled", when
    db.session.commit()
    if when <= utcnow():
        queue_send(campaign.id)
    return when


def queue_send(campaign_id: int) -> None:
    tasks.enqueue(SEND_TASK, {"campaign_id": campaign_id})


def unschedule(campaign: Campaign) -> None:
    if campaign.status == "scheduled":
        campaign.status, campaign.scheduled_at = "draft", None
        db.session.commit()


def pause(campaign_id: int, reason: str = "Paused by the owner.") -> bool:
    paused = db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == "sending")
        .values(status="paused", paused_reason=reason)
    ).rowcount
    db.session.commit()
    return bool(paused)


def resume(campaign_id: int) -> bool:
    """Back to sending; the caller queues or runs the send."""
    resumed = db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == "paused")
        .values(status="sending", paused_reason="")
    ).rowcount
    db.session.commit()
    return bool(resumed)


def cancel(campaign_id: int) -> bool:
    """Stop for good: queued recipients are never mailed by this campaign."""
    cancelled = db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status.in_(("scheduled", "sending", "paused")))
        .values(status="cancelled", finished_at=utcnow())
    ).rowcount
    db.session.execute(
        update(R)
        .where(R.campaign_id == campaign_id, R.status == "queued")
        .values(status="cancelled")
    )
    db.session.commit()
    return bool(cancelled)


def _run_send(campaign_id: int, progress=None, stop=None) -> dict:
    """A send run by the scheduler process (the task runner, the dispatcher)."""
    try:
        return send_campaign(campaign_id, progress=progress, stop=stop).as_dict()
    except CampaignBusy as exc:  # another sender has it; if it stops, the dispatcher takes over
        return {"busy": str(exc)}


@tasks.handler(SEND_TASK)
def run_send_task(task, progress) -> dict:
    """A send queued from the browser (send now, resume). Stopped with the scheduler, it
    ends after its batch in flight; the dispatcher takes it over at the next start."""
    return _run_send(task.params["campaign_id"], progress, progress.stop)


@dispatch_source("campaigns")
def due_campaigns(now: datetime) -> Iterable[Dispatch]:
    """Scheduled campaigns whose time has come, each started once per scheduled time; and
    sends left without a sender (stopped, killed, or found busy a moment before the other
    sender stopped), each taken over once under a key of that moment."""
    rows = db.session.execute(
        select(
            Campaign.id,
            Campaign.name,
            Campaign.status,
            Campaign.scheduled_at,
            Campaign.lease_owner,
            Campaign.lease_expires_at,
            Campaign.updated_at,
        ).where(
            or_(
                and_(Campaign.status == "scheduled", Campaign.scheduled_at <= now),
                Campaign.status == "sending",
            )
        )
    ).all()
    for campaign_id, name, status, at, owner, expires, changed in rows:
        if status == "scheduled":
            key, title = f"campaign:{campaign_id}:{at:%Y%m%dT%H%M%S}", f"Send {name}"
        elif owner is None or expires < now or lease.holder_is_dead(owner):
            key, title = (
                f"campaign:{campaign_id}:takeover:{changed:%Y%m%dT%H%M%S%f}",
                f"Go on sending {name}",
            )
        else:
            continue  # its sender is at work
        yield Dispatch(key, title, partial(_dispatched_send, campaign_id))


def _dispatched_send(campaign_id: int, context) -> dict:
    return _run_send(campaign_id, context.progress, context.stop)
