"""A campaign's results: what happened to its mail, and whether it changed what people did.

Orders placed within the attribution window are attributed to the campaign: for a mailed
recipient from when their mail went, for the holdout from the start of the send. The lift is
the difference of the two groups' conversion rates, with a 95% confidence interval (normal
approximation for two independent proportions). When the groups are too small for that
approximation, the report says so instead of showing a number nobody should act on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, case, distinct, func, literal, select

from webapp.campaigns.ledger import status_counts
from webapp.extensions import db
from webapp.models import Campaign, CampaignRecipient, EmailEvent, Order, ShopSettings

R = CampaignRecipient
Z95 = 1.959964
MIN_GROUP = 30  # recipients per group for the normal approximation
MIN_CONVERSIONS = 5  # conversions in each group (np >= 5)
EVENT_NAMES = {
    "delivered": ("delivered",),
    "opened": ("open",),
    "clicked": ("click",),
    "unsubscribed": ("unsubscribe", "group_unsubscribe"),
    "bounced": ("bounce",),
    "spam_reports": ("spamreport",),
}


@dataclass
class Group:
    size: int = 0
    converters: int = 0
    orders: int = 0
    revenue_cents: int = 0
    daily: list[int] = field(default_factory=list)  # cumulative converters by day

    @property
    def rate(self) -> float | None:
        return self.converters / self.size if self.size else None

    @property
    def revenue_per_recipient_cents(self) -> int | None:
        return round(self.revenue_cents / self.size) if self.size else None


@dataclass
class Lift:
    difference: float | None  # mailed rate minus holdout rate
    low: float | None
    high: float | None
    relative: float | None  # difference / holdout rate
    verdict: str


@dataclass
class Results:
    counts: dict[str, int]
    events: dict[str, int]
    machine_opens: int
    mailed: Group
    holdout: Group
    lift: Lift
    window_days: int
    window_closed: bool


def compute(campaign: Campaign) -> Results:
    counts = status_counts(campaign.id)
    counts["recipients"] = sum(counts.values())
    events = _events(campaign.id)
    machine = events.pop("machine_opens")
    mailed, holdout = _groups(campaign, counts)
    end = campaign.started_at + timedelta(days=campaign.attribution_days)
    return Results(
        counts=counts,
        events=events,
        machine_opens=machine,
        mailed=mailed,
        holdout=holdout,
        lift=lift(mailed, holdout),
        window_days=campaign.attribution_days,
        window_closed=end <= datetime.now(UTC),
    )


def _events(campaign_id: int) -> dict[str, int]:
    """Distinct recipients per kind of event, in one query (opens: people; machine opens
    apart)."""
    e = EmailEvent
    name = case(
        (and_(e.event == "open", e.machine_open.is_(True)), literal("machine_opens")),
        *((e.event.in_(kinds), literal(name)) for name, kinds in EVENT_NAMES.items()),
        else_=literal(None),
    )
    found = dict.fromkeys([*EVENT_NAMES, "machine_opens"], 0)
    rows = db.session.execute(
        select(name, func.count(distinct(e.recipient_id)))
        .where(e.campaign_id == campaign_id)
        .group_by(name)
    )
    for kind, people in rows:
        if kind is not None:
            found[kind] = people
    return found


def _groups(campaign: Campaign, counts: dict[str, int]) -> tuple[Group, Group]:
    """Each group's orders in its window: from when each mailed recipient's mail went (a
    send paused for days mails people days apart), from the start for the holdout. Revenue
    counts orders in the shop's currency (amounts in others are not comparable)."""
    start = campaign.started_at
    days = campaign.attribution_days
    window = timedelta(days=days)
    last_sent = db.session.scalar(
        select(func.max(R.sent_at)).where(R.campaign_id == campaign.id, R.status == "sent")
    )
    amount = Order.total_cents - Order.refunded_cents
    orders = (
        select(R.status, R.sent_at, Order.customer_id, Order.placed_at, Order.currency, amount)
        .join(Order, Order.customer_id == R.customer_id)
        .where(
            R.campaign_id == campaign.id,
            R.status.in_(("sent", "held_out")),
            Order.placed_at >= start,
            Order.placed_at < max(start, last_sent or start) + window,
            Order.cancelled_at.is_(None),
            amount > 0,
        )
    )
    currency = db.session.get(ShopSettings, 1).currency
    groups = {
        "sent": Group(size=counts.get("sent", 0)),
        "held_out": Group(size=counts.get("held_out", 0)),
    }
    first: dict[str, dict[int, int]] = {"sent": {}, "held_out": {}}
    for status, sent_at, customer_id, placed_at, order_currency, cents in db.session.execute(
        orders
    ):
        since = sent_at if status == "sent" and sent_at else start
        if not since <= placed_at < since + window:
            continue
        group = groups[status]
        group.orders += 1
        if order_currency == currency:
            group.revenue_cents += int(cents)
        day = min(days - 1, (placed_at - since).days)
        first[status][customer_id] = min(first[status].get(customer_id, day), day)
    for status, group in groups.items():
        group.converters = len(first[status])
        per_day = [0] * days
        for day in first[status].values():
            per_day[day] += 1
        running = 0
        for day in range(days):
            running += per_day[day]
            group.daily.append(running)
    return groups["sent"], groups["held_out"]


def lift(mailed: Group, holdout: Group) -> Lift:
    if not holdout.size:
        return Lift(None, None, None, None, "No holdout group: the lift cannot be measured.")
    if (
        min(mailed.size, holdout.size) < MIN_GROUP
        or min(mailed.converters, holdout.converters) < MIN_CONVERSIONS
    ):
        return Lift(
            None,
            None,
            None,
            None,
            f"Too small to tell: each group needs at least {MIN_GROUP} people and "
            f"{MIN_CONVERSIONS} conversions (mailed: {mailed.size} / {mailed.converters}, "
            f"holdout: {holdout.size} / {holdout.converters}).",
        )
    p1, p0 = mailed.rate, holdout.rate
    difference = p1 - p0
    se = math.sqrt(p1 * (1 - p1) / mailed.size + p0 * (1 - p0) / holdout.size)
    low, high = difference - Z95 * se, difference + Z95 * se
    relative = difference / p0 if p0 else None
    span = f"{low * 100:+.1f} to {high * 100:+.1f} points"
    if low > 0:
        verdict = (
            f"The campaign lifted conversion by {difference * 100:.1f} points (95% CI {span})."
        )
    elif high < 0:
        verdict = f"The mailed group converted less: {difference * 100:.1f} points (95% CI {span})."
    else:
        verdict = f"No clear difference: the interval ({span}) includes zero."
    return Lift(difference, low, high, relative, verdict)


def chart(results: Results, width: int = 560, height: int = 160) -> dict:
    """Cumulative conversion rates of both groups over the window, as SVG polylines."""
    days = results.window_days
    rates = {
        name: [n / group.size if group.size else 0 for n in group.daily]
        for name, group in (("mailed", results.mailed), ("holdout", results.holdout))
    }
    top = max([r for series in rates.values() for r in series] + [0.001])

    def points(series: list[float]) -> str:
        step = width / max(1, days - 1)
        return " ".join(
            f"{i * step:.1f},{height - (rate / top) * (height - 10):.1f}"
            for i, rate in enumerate(series)
        )

    return {
        "width": width,
        "height": height,
        "mailed": points(rates["mailed"]),
        "holdout": points(rates["holdout"]),
        "top": top,
        "days": days,
    }
