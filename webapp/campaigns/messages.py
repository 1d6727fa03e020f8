"""Each recipient's merge fields, and the v3 Mail Send payloads that carry them.

Merge fields are read for a whole batch of recipients in a few grouped queries (never one
query per recipient): their names, their craft and skill traits from the current refresh
run, what they bought (last product, the product they buy most), and the shop's best sellers
per craft for the recommendations.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import orjson
from flask import current_app
from sqlalchemy import Integer, String, any_, bindparam, func, select
from sqlalchemy.dialects import postgresql

from webapp.campaigns.render import CampaignContent, ContentError
from webapp.extensions import db
from webapp.models import (
    Campaign,
    Category,
    Customer,
    CustomerTrait,
    Order,
    OrderLine,
    Product,
    ShopSettings,
)
from webapp.segmentation.refresh import current_run_id
from webapp.web import format_money

RECOMMENDATIONS = 3
BEST_SELLERS_KEPT = 50  # per craft: enough to find three a customer has not bought
PERSONALIZATIONS_PER_REQUEST = 1000  # SendGrid's limit


class Recipient(NamedTuple):  # a tuple: a send builds 100,000, a frozen dataclass costs 5x
    id: int | None  # the ledger row (None for a test send or a preview)
    customer_id: int
    email: str
    name: str = ""
    suppressed: str | None = None  # why the customer may no longer be mailed, if so
    first_name: str | None = None  # read with the ledger row ("" if none); None: not read


# --- unsubscribe tokens ------------------------------------------------------------------


def _token_signer():
    """An HMAC-SHA256 under a key derived from SECRET_KEY, keyed once: each signature
    copies it (a third cheaper than keying it afresh, at one per recipient)."""
    secret = current_app.config["SECRET_KEY"].encode()
    key = hmac.new(secret, b"patchwork-unsubscribe", hashlib.sha256).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def _signature(signer, message: str) -> str:
    mac = signer.copy()
    mac.update(message.encode())
    return base64.urlsafe_b64encode(mac.digest()[:16]).decode().rstrip("=")


def recipient_token(customer_id: int, recipient_id: int | None, signer=None) -> str:
    """``customer.recipient.signature``: an HMAC-SHA256 (truncated to 128 bits) under a key
    derived from SECRET_KEY. Plain hmac rather than itsdangerous's serializer: a send signs
    one per recipient, and this costs a tenth."""
    message = f"{customer_id}.{recipient_id or 0}"
    return f"{message}.{_signature(signer or _token_signer(), message)}"


def read_recipient_token(token: str) -> tuple[int, int | None] | None:
    customer, _, rest = token.partition(".")
    recipient, _, signature = rest.partition(".")
    if not (customer.isdigit() and recipient.isdigit() and len(token) < 100):
        return None
    expected = _signature(_token_signer(), f"{customer}.{recipient}")
    if not hmac.compare_digest(expected, signature):
        return None
    return int(customer), (int(recipient) or None)


def public_url(endpoint: str, **values) -> str:
    """An address shoppers open from their mail (PUBLIC_BASE_URL), also outside a request:
    sends run in the scheduler process."""
    path = current_app.url_map.bind("patchwork").build(endpoint, values)
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/") + path


# --- merge fields --------------------------------------------------------------------------


class IdList:
    """``column IN :ids`` with one parameter rather than a thousand, so that a statement is
    built once and its text is the same for every batch: on PostgreSQL ``= ANY(array)`` (a
    long statement is parsed afresh by psycopg on every call), on SQLite ``IN (SELECT value
    FROM json_each(:ids))`` (SQLAlchemy writes out and binds a thousand placeholders)."""

    def __init__(self):
        self.postgresql = db.session.get_bind().dialect.name == "postgresql"

    def among(self, column):
        if self.postgresql:
            return column == any_(bindparam("ids", type_=postgresql.ARRAY(Integer)))
        listed = func.json_each(bindparam("ids", type_=String)).table_valued("value")
        return column.in_(select(listed.c.value))

    def param(self, ids: list[int]) -> dict:
        return {"ids": ids if self.postgresql else orjson.dumps(ids).decode()}


class MergeFields:
    """Builds merge fields for batches of recipients of one campaign."""

    def __init__(self, campaign: Campaign, shop: ShopSettings):
        # Plain values, read once: not two ORM attribute reads per recipient.
        self.shop_name, self.discount_code = shop.name, campaign.discount_code or ""
        self.postal_address = ", ".join(
            line.strip() for line in shop.postal_address.splitlines() if line.strip()
        )
        self.best_sellers = _best_sellers()
        self.signer = _token_signer()
        self.unsubscribe_base = public_url("unsubscribe.unsubscribe", token="TOKEN")
        self.preferences_base = public_url("unsubscribe.preferences", token="TOKEN")
        # Built once, run once a batch, through the connection: the ORM's per-row work
        # costs more than these queries.
        self.ids = IdList()
        self.first_names = select(Customer.id, Customer.first_name).where(
            self.ids.among(Customer.id)
        )
        run_id = current_run_id()
        self.traits = None if run_id is None else (
            select(CustomerTrait.customer_id, CustomerTrait.dimension, CustomerTrait.value).where(
                CustomerTrait.run_id == run_id,
                self.ids.among(CustomerTrait.customer_id),
                CustomerTrait.dimension.in_(("craft", "skill")),
                CustomerTrait.value.not_in(("mixed", "unknown")),
            )
        )  # fmt: skip
        key = func.coalesce(OrderLine.sku, OrderLine.name)
        self.purchases = (  # per customer, each product bought: how many, and when last
            select(
                Order.customer_id,
                key,
                func.max(OrderLine.name),
                func.sum(OrderLine.quantity),
                func.max(Order.placed_at),
            )
            .join(Order, Order.id == OrderLine.order_id)
            .where(self.ids.among(Order.customer_id), Order.cancelled_at.is_(None))
            .group_by(Order.customer_id, key)
        )

    def _read(self, statement, ids: list[int]):
        return db.session.connection().execute(statement, self.ids.param(ids)).all()

    def for_batch(self, recipients: list[Recipient]) -> list[dict]:
        ids = [r.customer_id for r in recipients]
        first_names = {r.customer_id: r.first_name for r in recipients if r.first_name is not None}
        if unread := [r.customer_id for r in recipients if r.first_name is None]:
            first_names.update(self._read(self.first_names, unread))
        traits = (
            {(customer_id, dim): value for customer_id, dim, value in self._read(self.traits, ids)}
            if self.traits is not None
            else {}
        )
        bought: dict[int, list[_Purchase]] = defaultdict(list)
        for customer_id, sku, title, quantity, last_at in self._read(self.purchases, ids):
            bought[customer_id].append(_Purchase(sku, title, int(quantity or 0), last_at))
        fields = []
        for r in recipients:
            purchases = bought.get(r.customer_id, [])
            craft = traits.get((r.customer_id, "craft"), "")
            # A preview or a test to the owner borrows a member's merge fields, never their
            # unsubscribe link.
            token = recipient_token(r.customer_id, r.id, self.signer) if r.id else "preview"
            fields.append(
                {
                    "first_name": first_names.get(r.customer_id) or "",
                    "shop_name": self.shop_name,
                    "last_product": max(purchases, key=lambda p: p.last_at).title
                    if purchases
                    else "",
                    "craft": craft,
                    "skill": traits.get((r.customer_id, "skill"), ""),
                    "recommendations": self._recommend(craft, {p.key for p in purchases}),
                    "restock": max(purchases, key=lambda p: (p.quantity, p.last_at)).title
                    if purchases
                    else "",
                    "discount_code": self.discount_code,
                    "postal_address": self.postal_address,
                    "unsubscribe_url": self.unsubscribe_base.replace("TOKEN", token),
                    "preferences_url": self.preferences_base.replace("TOKEN", token),
                }
            )
        return fields

    def _recommend(self, craft: str, bought: set) -> list[dict]:
        picks = [p for p in self.best_sellers.get(craft, []) if p["sku"] not in bought]
        return picks[:RECOMMENDATIONS]


@dataclass(frozen=True)
class _Purchase:
    key: str  # the SKU, else the line's name
    title: str
    quantity: int
    last_at: object


def _best_sellers() -> dict[str, list[dict]]:
    """Per craft, the catalogue's products by units sold, best first."""
    sold = func.coalesce(func.sum(OrderLine.quantity), 0)
    rows = db.session.execute(
        select(Category.craft, Product.sku, Product.title, Product.price_cents, sold)
        .join(Category, Category.name == Product.category)
        .outerjoin(OrderLine, OrderLine.product_id == Product.id)
        .where(Category.craft.is_not(None))
        .group_by(Category.craft, Product.id, Product.sku, Product.title, Product.price_cents)
        .order_by(Category.craft, sold.desc(), Product.title)
    )
    best: dict[str, list[dict]] = defaultdict(list)
    for craft, sku, title, price, _ in rows:
        if len(best[craft]) < BEST_SELLERS_KEPT:
            best[craft].append({"sku": sku, "title": title, "price": format_money(price)})
    return best


# --- payloads ------------------------------------------------------------------------------


class Payloads:
    """The v3 Mail Send requests of one campaign: one per recipient with a body written in
    Patchwork, up to 1000 personalizations per request with a dynamic template."""

    def __init__(self, campaign: Campaign, shop: ShopSettings):
        self.campaign = campaign
        self.merge = MergeFields(campaign, shop)
        self.content = None if campaign.uses_template else CampaignContent.of(campaign, shop)
        self.utm = {
            "enable": True,
            "utm_source": "patchwork",
            "utm_medium": "email",
            "utm_campaign": campaign.name or "",
        }
        sender = {"email": campaign.from_email}
        if campaign.from_name:
            sender["name"] = campaign.from_name
        self.shared = {
            "from": sender,
            "categories": ["patchwork", f"campaign-{campaign.id}"],
            "custom_args": {"campaign_id": str(campaign.id)},
        }

    def build(self, recipients: list[Recipient]) -> Iterator[dict | ContentError]:
        """The requests, one at a time; with a body, the ContentError instead of the request
        of a recipient whose merge fields the template cannot render (a typo is caught when
        the campaign is saved, but ``{{ recommendations[0].title }}`` fails only for those
        without recommendations)."""
        fields = self.merge.for_batch(recipients)
        people = [self._personalization(r, f) for r, f in zip(recipients, fields, strict=True)]
        if self.content is None:
            for start in range(0, len(people), PERSONALIZATIONS_PER_REQUEST):
                yield {
                    **self.shared,
                    "template_id": self.campaign.template_id,
                    # SendGrid renders the template: its links get the UTM parameters there.
                    "tracking_settings": {"ganalytics": self.utm},
                    "personalizations": people[start : start + PERSONALIZATIONS_PER_REQUEST],
                }
            return
        for person, merge in zip(people, fields, strict=True):
            try:
                rendered = self.content.render(merge)
            except ContentError as exc:  # this recipient's fields break the template
                yield exc
                continue
            yield {
                **self.shared,
                "personalizations": [person],
                "subject": rendered.subject,
                "content": [
                    {"type": "text/plain", "value": rendered.text},
                    {"type": "text/html", "value": rendered.html},
                ],
            }

    def _personalization(self, recipient: Recipient, merge: dict) -> dict:
        to = {"email": recipient.email}
        if recipient.name:
            to["name"] = recipient.name
        person = {
            "to": [to],
            "headers": {
                "List-Unsubscribe": f"<{merge['unsubscribe_url']}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        }
        if recipient.id is not None:
            person["custom_args"] = {"recipient_id": str(recipient.id)}
        if self.content is None:
            person["dynamic_template_data"] = merge
        return person
