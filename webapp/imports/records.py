"""The normalised shapes every order source produces (CSV files, the JSON API, webhooks),
and the report every import returns. One writer (webapp.imports.writer) stores them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import NamedTuple


# Named tuples rather than dataclasses: a million-line import builds, spools (as plain
# tuples) and reads back one per line, and tuples are the cheapest to do all three with.
class LineRecord(NamedTuple):
    """One order line. The writer reads lines by position, so a plain tuple in this order
    is as good (the CSV parsers build those)."""

    position: int  # 0-based position of the line within its order
    name: str
    quantity: int
    price_cents: int  # unit price, minor units
    sku: str | None = None


class OrderRecord(NamedTuple):
    external_id: str  # the shop's order id; for Shopify its Name ("#1001")
    placed_at: datetime  # timezone-aware, UTC
    total_cents: int  # as charged: shipping and tax included
    currency: str
    shopify_id: str | None = None  # Shopify's numeric Id, kept and matched too
    customer_external_id: str | None = None
    email: str | None = None  # as the shop wrote it; matched trimmed and lower-cased
    first_name: str | None = None
    last_name: str | None = None
    city: str | None = None
    country: str | None = None
    accepts_marketing: bool | None = None  # None: the source says nothing about consent
    refunded_cents: int = 0
    financial_status: str | None = None
    cancelled_at: datetime | None = None
    source: str | None = None
    tags: str = ""
    lines: list[LineRecord] = []  # never mutated: sources build each record whole
    line: int = 0  # physical line (header = 1) on which the record starts, for CSV sources


@dataclass(slots=True)
class RowError:
    line: int  # physical line on which the bad record starts; the header is line 1
    message: str


@dataclass
class ImportReport:
    """Counts of what changed. Rows that change nothing count in none of these."""

    customers_created: int = 0
    customers_updated: int = 0
    orders_created: int = 0
    orders_updated: int = 0
    lines: int = 0  # order lines created
    errors: list[RowError] = field(default_factory=list)
    # How many bad rows the file had; ``errors`` may hold only the first of them.
    bad_rows_total: int = 0

    def as_dict(self) -> dict:
        return asdict(self)
