"""The demo shop's two sent campaigns, so that a newcomer opens real campaign reports.

Both go out through the real sender (webapp.campaigns.sending) with the outbox mailer, so the
ledger, its holdout and the outbox are what a real send writes; the send is then moved back
to the day it is meant to have happened: one 40 days ago, whose attribution window has
closed, and one 4 days ago, whose window is still open. What SendGrid would have reported
since (deliveries, a few bounces, opens, some of them machine opens, clicks, an unsubscribe
or two) is stored through the event webhook's own functions, which also suppress the
bounced and unsubscribed customers. The orders placed within the window make the mailed
group convert clearly more often than the holdout, as real Order rows whose customers'
totals are recomputed as an import would.

What happens after each send draws from a random.Random of the seed and the campaign. The
holdout itself is drawn by the sender, so which customers are held out differs between
builds; the sizes do not.
"""

from __future__ import annotations

import html
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import click
from sqlalchemy import select, update

from webapp.campaigns.events import apply_suppressions, event_rows, store_events
from webapp.campaigns.mailer import OutboxMailer
from webapp.campaigns.render import with_utm
from webapp.campaigns.sending import send_campaign
from webapp.demo.surveys import SHOP_SITE
from webapp.extensions import db
from webapp.imports.writer import refresh_customer_totals
from webapp.models import (
    Campaign,
    CampaignRecipient,
    Category,
    Order,
    OrderLine,
    OutboxMessage,
    Product,
    Segment,
    SegmentRunStat,
    ShopSettings,
)
from webapp.segmentation.refresh import current_run_id

R = CampaignRecipient
FROM_EMAIL = "hello@loopanddaub.example"
ATTRIBUTION_DAYS = 7
SEND_HOUR = 10  # shop time: inside the default sending hours

# What SendGrid reports for a craft shop's list: shares of the mailed recipients.
BOUNCE_RATE = 0.02
OPEN_RATE = 0.45  # of those delivered
MACHINE_OPEN_SHARE = 0.10  # of the opens: Apple Mail Privacy Protection and the like
REOPEN_RATE = 0.3  # human openers who open it again
CLICK_RATE = 0.2  # of the human openers: about 8% of those delivered
UNSUBSCRIBE_RATE = 0.005  # at least one per campaign
CLICKERS_SHARE_OF_CONVERTERS = 0.6  # most mailed converters came through the email's link

BOUNCE_REASON = "550 5.1.1 The email account that you tried to reach does not exist."


@dataclass
class Reactions:
    """What the mailed recipients did, as the orders need it."""

    clicks: dict[int, datetime]  # customer id -> first click
    bounced: set[int]  # customer ids
    stored: int  # events stored


@dataclass(frozen=True)
class DemoCampaign:
    key: str  # in its orders' names: "#D-C1-0001"
    segments: tuple[str, ...]  # segment templates, the first with sendable members wins
    name: str
    subject: str
    preheader: str
    body: str
    link: str  # what its recipients click
    discount_code: str
    holdout_percent: int
    days_ago: int
    # Converters within the window, orders the customers placed anyway included. High for a
    # week, so that the 3,000-customer demo's holdout of about 80 knitters has the conversions
    # the report needs for a confidence interval (webapp.campaigns.results.MIN_CONVERSIONS).
    mailed_rate: float
    holdout_rate: float


CAMPAIGNS = (
    DemoCampaign(
        key="C1",
        segments=("craft-knitting", "craft-crochet", "craft-painting", "beginners"),
        name="New season supplies",
        subject="{{ first_name or 'Hello' }}, new {{ craft or 'craft' }} supplies just landed",
        preheader="Picked for you, with 15% off until Sunday",
        body="""Hi {{ first_name or "there" }},

The new season's {{ craft or "craft" }} supplies are on the shelves, and we picked a few \
we think you'll love:

{% for p in recommendations %}
- **{{ p.title }}**, {{ p.price }}
{% endfor %}

{% if restock %}Running low on {{ restock }}? It's back in stock as well.{% endif %}

Use **{{ discount_code }}** at checkout for 15% off everything until Sunday.

[See what's new]({SHOP_SITE}/collections/new)

Happy making,
The Loop & Daub team
""".replace("{SHOP_SITE}", SHOP_SITE),
        link=f"{SHOP_SITE}/collections/new",
        discount_code="NEWSEASON15",
        holdout_percent=20,
        days_ago=40,
        mailed_rate=0.16,
        holdout_rate=0.06,
    ),
    DemoCampaign(
        key="C2",
        # Still in its window, and in the 3,000-customer demo its holdout is under
        # results.MIN_GROUP: its report shows the conversions so far and why the lift cannot
        # be told yet.
        segments=("lapsed", "at-risk"),
        name="We miss you",
        subject="{{ first_name or 'Hello' }}, it's been a while",
        preheader="20% off your next order, on us",
        body="""Hi {{ first_name or "there" }},

It's been a while since your last visit, so here's **20% off** your next order with the \
code **{{ discount_code }}**.

{% if restock %}Time to stock up on {{ restock }}?{% endif %}

{% if recommendations %}A few things other makers love right now:

{% for p in recommendations %}
- {{ p.title }}, {{ p.price }}
{% endfor %}
{% endif %}

[Come back and browse]({SHOP_SITE}/)

The Loop & Daub team
""".replace("{SHOP_SITE}", SHOP_SITE),
        link=f"{SHOP_SITE}/",
        discount_code="COMEBACK20",
        holdout_percent=15,
        days_ago=4,
        mailed_rate=0.08,
        holdout_rate=0.03,
    ),
)


def add_demo_campaigns(seed: int = 42, now: datetime | None = None) -> None:
    """Send the demo's campaigns, backdated, with their events and orders; nothing when the
    shop has campaigns already (the demo starting again), or no segment has members."""
    if db.session.scalar(select(Campaign.id).limit(1)) is not None:
        return
    started = time.monotonic()
    now = now or datetime.now(UTC)
    shop = db.session.get(ShopSettings, 1)
    used: set[int] = set()
    made: dict[str, int] = defaultdict(int)
    for plan in CAMPAIGNS:
        segment = _segment(plan.segments, used)
        if segment is None:
            continue
        used.add(segment.id)
        rng = random.Random(f"{seed}:{plan.key}")
        campaign = _send(plan, segment, shop, _send_time(shop, now, plan.days_ago))
        mailed = _mailed(campaign.id)
        reactions = _events(campaign, plan, mailed, rng, now)
        made["campaigns"] += 1
        made["mailed"] += len(mailed)
        made["events"] += reactions.stored
        made["orders"] += _orders(plan, campaign, segment, shop, reactions, rng, now)
    if made["campaigns"]:
        click.echo(
            f"Campaigns: {made['campaigns']} sent to {made['mailed']:,} customers, "
            f"{made['events']:,} events, {made['orders']:,} orders in their windows "
            f"({time.monotonic() - started:.1f} s)"
        )


def _segment(templates: tuple[str, ...], used: set[int]) -> Segment | None:
    """The first of the templates' segments with sendable members, else the segment with the
    most of them (the owner may have deleted or emptied the templates)."""
    rows = db.session.scalars(
        select(Segment)
        .join(SegmentRunStat, SegmentRunStat.segment_id == Segment.id)
        .where(SegmentRunStat.run_id == current_run_id(), SegmentRunStat.sendable > 0)
        .order_by(SegmentRunStat.sendable.desc(), Segment.id)
    ).all()
    candidates = [segment for segment in rows if segment.id not in used]
    by_template = {segment.template: segment for segment in candidates}
    for template in templates:
        if template in by_template:
            return by_template[template]
    return candidates[0] if candidates else None


def _send_time(shop: ShopSettings, now: datetime, days_ago: int) -> datetime:
    day = (now - timedelta(days=days_ago)).astimezone(ZoneInfo(shop.timezone))
    return day.replace(hour=SEND_HOUR, minute=0, second=0, microsecond=0).astimezone(UTC)


def _send(plan: DemoCampaign, segment: Segment, shop: ShopSettings, at: datetime) -> Campaign:
    """Send through the real sender into the outbox, then move the send back to ``at``."""
    campaign = Campaign(
        name=plan.name,
        segment_id=segment.id,
        from_email=FROM_EMAIL,
        from_name=shop.name,
        subject=plan.subject,
        preheader=plan.preheader,
        body_format="markdown",
        body=plan.body,
        discount_code=plan.discount_code,
        holdout_percent=plan.holdout_percent,
        frequency_cap_days=0,  # both demo campaigns reach everyone in their segment
        attribution_days=ATTRIBUTION_DAYS,
        status="scheduled",
        scheduled_at=at,
        created_at=at - timedelta(days=1),
    )
    db.session.add(campaign)
    db.session.commit()
    send_campaign(campaign.id, mailer=OutboxMailer(), sending_hours=False)  # backdated anyway

    campaign = db.session.get(Campaign, campaign.id, populate_existing=True)
    took = campaign.finished_at - campaign.started_at
    db.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign.id)
        .values(started_at=at, finished_at=at + took, updated_at=at + took)
    )
    db.session.execute(
        update(R).where(R.campaign_id == campaign.id, R.sent_at.is_not(None)).values(sent_at=at)
    )
    db.session.execute(
        update(OutboxMessage).where(OutboxMessage.campaign_id == campaign.id).values(created_at=at)
    )
    db.session.commit()
    return db.session.get(Campaign, campaign.id, populate_existing=True)


def _mailed(campaign_id: int) -> list[tuple[int, int, str]]:
    """(ledger id, customer id, email) of the recipients mailed, in ledger order."""
    return db.session.execute(
        select(R.id, R.customer_id, R.email)
        .where(R.campaign_id == campaign_id, R.status == "sent")
        .order_by(R.id)
    ).all()


def _events(
    campaign: Campaign,
    plan: DemoCampaign,
    mailed: list[tuple[int, int, str]],
    rng: random.Random,
    now: datetime,
) -> Reactions:
    """SendGrid's events for the mailed recipients, stored and applied as the webhook does.
    Events of the open window's campaign that would happen after ``now`` are left out."""
    events: list[dict] = []
    reactions = Reactions(clicks={}, bounced=set(), stored=0)
    link = _clicked_url(plan.link, campaign.name)

    def event(kind: str, recipient_id: int, email: str, when: datetime, n: int = 0, **extra):
        if when > now:
            return False
        events.append(
            {
                "event": kind,
                "email": email,
                "timestamp": int(when.timestamp()),
                "sg_event_id": f"demo-{recipient_id}-{kind}-{n}",
                "campaign_id": str(campaign.id),
                "recipient_id": str(recipient_id),
                **extra,
            }
        )
        return True

    delivered = []
    for recipient_id, customer_id, email in mailed:
        arrived = campaign.started_at + timedelta(seconds=rng.uniform(2, 90))
        if rng.random() < BOUNCE_RATE:
            event("bounce", recipient_id, email, arrived, type="bounce", reason=BOUNCE_REASON)
            reactions.bounced.add(customer_id)
            continue
        event("delivered", recipient_id, email, arrived)
        delivered.append((recipient_id, email, arrived))
        if rng.random() >= OPEN_RATE:
            continue
        if rng.random() < MACHINE_OPEN_SHARE:  # the mail client fetched it, not a person
            fetched = arrived + timedelta(seconds=rng.uniform(5, 60))
            event("open", recipient_id, email, fetched, sg_machine_open=True)
            continue
        opened = arrived + timedelta(hours=rng.expovariate(1 / 8))
        if not event("open", recipient_id, email, opened, sg_machine_open=False):
            continue
        if rng.random() < REOPEN_RATE:
            again = opened + timedelta(hours=rng.expovariate(1 / 24))
            event("open", recipient_id, email, again, 1, sg_machine_open=False)
        clicked = opened + timedelta(seconds=rng.uniform(5, 300))
        if rng.random() < CLICK_RATE and event("click", recipient_id, email, clicked, url=link):
            reactions.clicks[customer_id] = clicked
    leaving = max(1, round(len(delivered) * UNSUBSCRIBE_RATE)) if delivered else 0
    for recipient_id, email, arrived in rng.sample(delivered, leaving):
        event("unsubscribe", recipient_id, email, arrived + timedelta(hours=rng.uniform(1, 30)))

    rows, _ = event_rows(events)
    stored = store_events([{k: v for k, v in row.items() if k != "suppresses"} for row in rows])
    apply_suppressions([row for row in rows if row["sg_event_id"] in stored])
    db.session.commit()
    reactions.stored = len(stored)
    return reactions


def _clicked_url(link: str, campaign_name: str) -> str:
    """The link as the email carried it: with the UTM parameters the renderer adds."""
    tagged = with_utm(f'<a href="{link}">', campaign_name)
    return html.unescape(tagged.removeprefix('<a href="').removesuffix('">'))


def _orders(
    plan: DemoCampaign,
    campaign: Campaign,
    segment: Segment,
    shop: ShopSettings,
    reactions: Reactions,
    rng: random.Random,
    now: datetime,
) -> int:
    """Orders within the window, so that each group reaches its conversion rate (orders its
    customers placed anyway count too); how many were added."""
    start = campaign.started_at
    end = min(start + timedelta(days=campaign.attribution_days), now)
    groups: dict[str, list[int]] = {"sent": [], "held_out": []}
    for status, customer_id in db.session.execute(
        select(R.status, R.customer_id)
        .where(R.campaign_id == campaign.id, R.status.in_(list(groups)))
        .order_by(R.id)
    ):
        groups[status].append(customer_id)
    converted = set(
        db.session.scalars(
            select(Order.customer_id)
            .where(
                Order.customer_id.in_(groups["sent"] + groups["held_out"]),
                Order.placed_at >= start,
                Order.placed_at < end,
                Order.cancelled_at.is_(None),
                Order.total_cents - Order.refunded_cents > 0,  # as the report counts them
            )
            .distinct()
        )
    )
    buyers: list[tuple[int, datetime | None]] = []  # (customer id, when they clicked)
    for status, rate in (("sent", plan.mailed_rate), ("held_out", plan.holdout_rate)):
        members = groups[status]
        wanted = math.ceil(len(members) * rate) - len(converted.intersection(members))
        pool = [c for c in members if c not in converted and c not in reactions.bounced]
        rng.shuffle(pool)
        if status == "sent":  # most come through the email's link
            share = round(wanted * CLICKERS_SHARE_OF_CONVERTERS)
            clickers = [c for c in pool if c in reactions.clicks][:share]
            pool = clickers + [c for c in pool if c not in clickers]
            buyers += [(c, reactions.clicks.get(c)) for c in pool[: max(0, wanted)]]
        else:
            buyers += [(c, None) for c in pool[: max(0, wanted)]]

    products = _products(segment, [c for c, _ in buyers])
    for n, (customer_id, clicked) in enumerate(buyers, start=1):
        if clicked is not None:  # bought straight from the email's link
            placed = clicked + timedelta(minutes=rng.uniform(3, 90))
        else:  # sooner rather than later in the window
            placed = start + (end - start) * rng.random() ** 2
        placed = min(placed, end - timedelta(seconds=1))
        choices = products.get(customer_id) or products[None]
        name = f"#D-{plan.key}-{n:04d}"
        db.session.add(_order(name, customer_id, placed, choices, shop.currency, rng))
    db.session.flush()
    refresh_customer_totals({c for c, _ in buyers})
    db.session.commit()
    return len(buyers)


def _products(segment: Segment, customer_ids: list[int]) -> dict[int | None, list[Product]]:
    """What each buyer picks from: a craft segment's craft, else the categories the buyer
    bought before; under None, what anyone else picks from."""
    catalogue = db.session.scalars(
        select(Product).where(Product.price_cents > 0).order_by(Product.id)
    ).all()
    by_category: dict[str | None, list[Product]] = defaultdict(list)
    for product in catalogue:
        by_category[product.category].append(product)
    template = segment.template or ""
    if template.startswith("craft-"):
        names = db.session.scalars(
            select(Category.name).where(Category.craft == template.removeprefix("craft-"))
        )
        in_craft = [product for name in names for product in by_category.get(name, [])]
        if in_craft:
            return {None: in_craft}
    choices: dict[int | None, list[Product]] = {None: list(catalogue)}
    rows = db.session.execute(
        select(Order.customer_id, OrderLine.category)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(Order.customer_id.in_(customer_ids), OrderLine.category.is_not(None))
        .distinct()
        .order_by(Order.customer_id, OrderLine.category)
    )
    for customer_id, category in rows:
        choices.setdefault(customer_id, []).extend(by_category.get(category, []))
    return choices


def _order(
    name: str,
    customer_id: int,
    placed: datetime,
    choices: list[Product],
    currency: str,
    rng: random.Random,
) -> Order:
    picked = rng.sample(choices, min(len(choices), rng.choice((1, 1, 2, 3))))
    lines = [
        OrderLine(
            position=position,
            sku=product.sku,
            name=product.title,
            quantity=rng.choice((1, 1, 2, 3)),
            price_cents=product.price_cents,
            product_id=product.id,
            category=product.category,
            tier=product.tier,
        )
        for position, product in enumerate(picked)
    ]
    return Order(
        external_id=name,
        customer_id=customer_id,
        placed_at=placed,
        currency=currency,
        total_cents=sum(line.quantity * line.price_cents for line in lines),
        financial_status="paid",
        source="web",
        lines=lines,
    )
