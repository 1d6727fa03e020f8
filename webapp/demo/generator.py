"""A deterministic synthetic craft shop, written as Shopify's own CSV exports.

Used by `patchwork demo` and by the import benchmark in bench/. The same seed and scale give
byte-identical files. Order rows are streamed to disk: a million line items never sit in
memory; what is kept is one small record per customer and one integer per order.

Realism the later features rely on: every customer has a preferred craft (most of their
spend goes there) and a skill level (beginners buy starter kits, experts premium goods);
orders peak in Q4 and yarn sells in autumn and winter; most customers buy once or twice,
some come back for years, some lapse, and a few spend very large amounts; a few orders are
refunded or cancelled; consent to marketing varies, and some customers type their email
with different capitals on a later order.
"""

from __future__ import annotations

import csv
import functools
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from faker import Faker

from webapp.demo.catalogue import (
    CRAFT_CATEGORIES,
    LEGACY_ITEMS,
    Product,
    Variant,
    build_catalogue,
)

# Shopify's orders export header, in Shopify's order.
ORDER_COLUMNS: tuple[str, ...] = (
    "Name", "Email", "Financial Status", "Paid at", "Fulfillment Status", "Fulfilled at",
    "Accepts Marketing", "Currency", "Subtotal", "Shipping", "Taxes", "Total", "Discount Code",
    "Discount Amount", "Shipping Method", "Created at", "Lineitem quantity", "Lineitem name",
    "Lineitem price", "Lineitem compare at price", "Lineitem sku", "Lineitem requires shipping",
    "Lineitem taxable", "Lineitem fulfillment status", "Billing Name", "Billing Street",
    "Billing Address1", "Billing Address2", "Billing Company", "Billing City", "Billing Zip",
    "Billing Province", "Billing Country", "Billing Phone", "Shipping Name", "Shipping Street",
    "Shipping Address1", "Shipping Address2", "Shipping Company", "Shipping City",
    "Shipping Zip", "Shipping Province", "Shipping Country", "Shipping Phone", "Notes",
    "Note Attributes", "Cancelled at", "Payment Method", "Payment Reference",
    "Refunded Amount", "Vendor", "Outstanding Balance", "Employee", "Location", "Device ID",
    "Id", "Tags", "Risk Level", "Source", "Lineitem discount", "Tax 1 Name", "Tax 1 Value",
    "Tax 2 Name", "Tax 2 Value", "Tax 3 Name", "Tax 3 Value", "Tax 4 Name", "Tax 4 Value",
    "Tax 5 Name", "Tax 5 Value", "Phone", "Receipt Number", "Duties", "Billing Province Name",
    "Shipping Province Name", "Payment ID", "Payment Terms Name", "Next Payment Due At",
    "Payment References",
)  # fmt: skip

_COLUMN_INDEX = {column: index for index, column in enumerate(ORDER_COLUMNS)}

# Columns Shopify repeats on every row of a multi-line order; the rest stay blank after the
# order's first row.
LINE_COLUMNS: frozenset[str] = frozenset(
    {"Name", "Email", "Created at", "Vendor"}
    | {c for c in ORDER_COLUMNS if c.startswith("Lineitem ")}
)

# Shopify's products export header, in Shopify's order.
PRODUCT_COLUMNS: tuple[str, ...] = (
    "Handle", "Title", "Body (HTML)", "Vendor", "Product Category", "Type", "Tags",
    "Published", "Option1 Name", "Option1 Value", "Option2 Name", "Option2 Value",
    "Option3 Name", "Option3 Value", "Variant SKU", "Variant Grams", "Variant Inventory Tracker",
    "Variant Inventory Qty", "Variant Inventory Policy", "Variant Fulfillment Service",
    "Variant Price", "Variant Compare At Price", "Variant Requires Shipping", "Variant Taxable",
    "Variant Barcode", "Image Src", "Image Position", "Image Alt Text", "Gift Card",
    "SEO Title", "SEO Description", "Variant Image", "Variant Weight Unit", "Variant Tax Code",
    "Cost per item", "Status",
)  # fmt: skip

SHOPIFY_TIME = "%Y-%m-%d %H:%M:%S %z"  # "2024-03-05 14:23:11 -0500"
DEMO_TIMEZONE = "America/New_York"

CRAFT_WEIGHTS = {
    "knitting": 26,
    "painting": 20,
    "sewing": 14,
    "scrapbooking": 12,
    "embroidery": 10,
    "pottery": 9,
    "jewellery": 9,
}
SKILLS = ("beginner", "intermediate", "expert")
SKILL_WEIGHTS = (40, 42, 18)
# Tier probabilities (starter, standard, premium) by skill.
TIER_MIX = {
    "beginner": (60, 35, 5),
    "intermediate": (15, 65, 20),
    "expert": (5, 45, 50),
}
# Month weights (Jan..Dec): Q4 gifting peak, quiet summer.
MONTH_WEIGHT = (0.8, 0.75, 0.85, 0.85, 0.8, 0.72, 0.72, 0.82, 0.95, 1.1, 1.5, 1.75)
# Knitters buy yarn when it turns cold; painters a little more in spring and summer.
CRAFT_SEASON = {
    "knitting": (1.3, 1.2, 1.0, 0.8, 0.6, 0.5, 0.5, 0.7, 1.1, 1.4, 1.5, 1.4),
    "painting": (0.9, 0.9, 1.1, 1.2, 1.2, 1.1, 1.1, 1.0, 0.9, 0.9, 1.0, 1.0),
}
# Shop-local hour weights: evenings are busy, nights are quiet.
HOUR_WEIGHT = (
    0.25, 0.15, 0.1, 0.08, 0.08, 0.12, 0.3, 0.5, 0.7, 0.85, 0.9, 0.95,
    1.0, 1.0, 0.95, 0.9, 0.9, 1.0, 1.15, 1.3, 1.4, 1.3, 0.9, 0.5,
)  # fmt: skip
_HOUR_CUMULATIVE = list(itertools.accumulate(HOUR_WEIGHT))
_PEAK_DAY = max(MONTH_WEIGHT) * max(max(s) for s in CRAFT_SEASON.values())

US_STATES = (
    ("NY", "New York", 12), ("CA", "California", 14), ("TX", "Texas", 9),
    ("FL", "Florida", 8), ("PA", "Pennsylvania", 6), ("IL", "Illinois", 5),
    ("OH", "Ohio", 5), ("MA", "Massachusetts", 5), ("WA", "Washington", 5),
    ("OR", "Oregon", 4), ("CO", "Colorado", 4), ("NC", "North Carolina", 4),
    ("MI", "Michigan", 4), ("MN", "Minnesota", 3), ("VT", "Vermont", 2), ("ME", "Maine", 2),
    ("NJ", "New Jersey", 4), ("VA", "Virginia", 3), ("GA", "Georgia", 3),
)  # fmt: skip
CA_PROVINCES = (("ON", "Ontario", 5), ("BC", "British Columbia", 3), ("QC", "Quebec", 2))
COUNTRIES = (("US", "en_US", 85), ("CA", "en_CA", 8), ("GB", "en_GB", 7))
EMAIL_DOMAINS = (
    ("gmail.com", 42), ("yahoo.com", 12), ("outlook.com", 10), ("icloud.com", 10),
    ("hotmail.com", 8), ("aol.com", 3), ("protonmail.com", 3), ("comcast.net", 3),
)  # fmt: skip
NOTES = ("Gift wrap please!", "Please leave by the side door.", "Birthday present for my mum")
STAFF = ("Maya Okafor", "Tom Lindqvist")
TAX_RATE_BP = 700  # 7.00 % sales tax, in basis points
FREE_SHIPPING_CENTS = 7500
SHIPPING_CENTS = 695


@dataclass(frozen=True)
class Scale:
    """How big a shop to make. ``lines`` is approximate (basket sizes are random)."""

    customers: int
    orders: int
    lines: int
    years: int = 3

    @classmethod
    def for_lines(cls, lines: int) -> Scale:
        """The benchmark's proportions: 1M lines -> 400k orders, 150k customers."""
        return cls(customers=max(1, lines * 3 // 20), orders=max(1, lines * 2 // 5), lines=lines)

    @classmethod
    def for_customers(cls, customers: int) -> Scale:
        """The demo's proportions: 3,000 customers -> about 8,000 orders, 20,000 lines."""
        return cls(customers=customers, orders=customers * 8 // 3, lines=customers * 20 // 3)


@dataclass(slots=True)
class Customer:
    first_name: str
    last_name: str
    email: str
    email_variant: str | None  # the same address in other capitals, typed on a later order
    phone: str
    address: tuple[str, str, str, str, str, str, str]  # a1, a2, city, zip, prov, prov name, cc
    company: str
    craft: str
    skill: int  # index into SKILLS
    whale: bool
    accepts_marketing: bool
    consent_flips_at: int  # from this order on, the checkbox is the other way; -1: never


# --- pools of realistic values, drawn once from Faker ---------------------------------------


class _Pools:
    """Names and addresses drawn from Faker once, then combined by the seeded RNG: Faker per
    customer would make a million-line file take minutes."""

    def __init__(self, seed: int, size: int):
        self.first: dict[str, list[str]] = {}
        self.last: dict[str, list[str]] = {}
        self.addresses: dict[str, list[tuple[str, str, str, str, str, str, str]]] = {}
        for country, locale, _ in COUNTRIES:
            fake = Faker(locale)
            fake.seed_instance(seed)
            self.first[country] = sorted({_ascii(fake.first_name()) for _ in range(size)})
            self.last[country] = sorted({_ascii(fake.last_name()) for _ in range(size)})
            self.addresses[country] = [self._address(fake, country) for _ in range(size)]
        fake = Faker("en_US")
        fake.seed_instance(seed)
        self.companies = [fake.company() for _ in range(100)]

    @staticmethod
    def _address(fake: Faker, country: str) -> tuple[str, str, str, str, str, str, str]:
        address2 = fake.secondary_address() if fake.random.random() < 0.2 else ""
        if country == "US":
            code, name, _ = fake.random.choices(US_STATES, [w for *_, w in US_STATES])[0]
            postcode = fake.zipcode_in_state(code)
        elif country == "CA":
            code, name, _ = fake.random.choices(CA_PROVINCES, [w for *_, w in CA_PROVINCES])[0]
            postcode = fake.postcode_in_province(code)
        else:
            code, name, postcode = "", "", fake.postcode()
        return (fake.street_address(), address2, fake.city(), postcode, code, name, country)


@functools.lru_cache(maxsize=4)
def _pools(seed: int, size: int) -> _Pools:
    return _Pools(seed, size)


def _ascii(text: str) -> str:
    return "".join(c for c in text if c.isascii() and (c.isalpha() or c in "-' ")) or "Alex"


# --- the shop -------------------------------------------------------------------------------


class SyntheticShop:
    """A seeded shop: call ``write_products`` and ``write_orders``; same seed, same files."""

    def __init__(
        self,
        scale: Scale,
        seed: int = 42,
        end: date | None = None,
        timezone: str = DEMO_TIMEZONE,
        now: datetime | None = None,
    ):
        self.scale = scale
        self.seed = seed
        self.tz = ZoneInfo(timezone)
        self.end = end or date(2025, 12, 31)
        end_dt = datetime.combine(self.end + timedelta(days=1), time(), self.tz)
        if now is not None:
            end_dt = min(end_dt, now)
        self.end_ts = int(end_dt.timestamp())
        start = self.end.replace(year=self.end.year - scale.years) + timedelta(days=1)
        self.start_ts = int(datetime.combine(start, time(), self.tz).timestamp())
        self.products = build_catalogue()
        self.variants: dict[str, dict[str, list[Variant]]] = {}  # category -> tier -> variants
        for product in self.products:
            by_tier = self.variants.setdefault(product.category, {})
            by_tier.setdefault(product.tier, []).extend(product.variants)
        self.categories = [c for c in self.variants if c != "classes"]

    # products ---------------------------------------------------------------------------

    def write_products(self, path: str | Path) -> int:
        """Shopify's products export: one row per variant; a product's later variant rows
        repeat only the Handle. Returns the number of variants (SKUs) written."""
        count = 0
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(PRODUCT_COLUMNS)
            for product in self.products:
                for position, variant in enumerate(product.variants):
                    writer.writerow(self._product_row(product, variant, position))
                    count += 1
        return count

    @staticmethod
    def _product_row(product: Product, variant: Variant, position: int) -> list[str]:
        first = position == 0
        row = dict.fromkeys(PRODUCT_COLUMNS, "")
        row.update(
            {
                "Handle": product.handle,
                "Option1 Value": variant.option or ("Default Title" if first else ""),
                "Variant SKU": variant.sku,
                "Variant Grams": "0" if not variant.requires_shipping else "250",
                "Variant Inventory Tracker": "shopify",
                "Variant Inventory Qty": "40",
                "Variant Inventory Policy": "deny",
                "Variant Fulfillment Service": "manual",
                "Variant Price": _money(variant.price_cents),
                "Variant Compare At Price": _money(variant.compare_at_cents),
                "Variant Requires Shipping": _bool(variant.requires_shipping),
                "Variant Taxable": "true",
                "Variant Weight Unit": "kg",
                "Cost per item": _money(variant.price_cents * 9 // 20),
            }
        )
        if first:
            row.update(
                {
                    "Title": product.title,
                    "Body (HTML)": product.body_html,
                    "Vendor": product.vendor,
                    "Product Category": "Arts & Entertainment > Hobbies & Creative Arts",
                    "Type": product.category.title(),
                    "Tags": product.tags,
                    "Published": "true",
                    "Option1 Name": product.option_name or "Title",
                    "Image Position": "",
                    "Gift Card": "false",
                    "Status": "active",
                }
            )
        return [row[c] for c in PRODUCT_COLUMNS]

    # customers and when they order ------------------------------------------------------

    def _customers(self, rng: random.Random, pools: _Pools) -> list[Customer]:
        crafts, craft_w = zip(*CRAFT_WEIGHTS.items(), strict=True)
        countries = [c for c, _, _ in COUNTRIES]
        country_w = [w for *_, w in COUNTRIES]
        domains = [d for d, _ in EMAIL_DOMAINS]
        domain_w = [w for _, w in EMAIL_DOMAINS]
        seen: set[str] = set()
        customers = []
        for index in range(self.scale.customers):
            country = rng.choices(countries, country_w)[0]
            first = rng.choice(pools.first[country])
            last = rng.choice(pools.last[country])
            local = _email_local(rng, first, last)
            email = f"{local}@{rng.choices(domains, domain_w)[0]}"
            if email in seen:
                email = f"{local}{index}@{rng.choices(domains, domain_w)[0]}"
            seen.add(email)
            variant = None
            if rng.random() < 0.04:
                name, _, domain = email.partition("@")
                variant = f"{name.title()}@{domain.title()}"
            accepts = rng.random() < 0.55
            customers.append(
                Customer(
                    first_name=first,
                    last_name=last,
                    email=email,
                    email_variant=variant,
                    phone=_phone(rng, country),
                    address=rng.choice(pools.addresses[country]),
                    company=rng.choice(pools.companies) if rng.random() < 0.04 else "",
                    craft=rng.choices(crafts, craft_w)[0],
                    skill=rng.choices(range(3), SKILL_WEIGHTS)[0],
                    whale=rng.random() < 0.006,
                    accepts_marketing=accepts,
                    consent_flips_at=rng.randint(1, 4) if rng.random() < 0.06 else -1,
                )
            )
        return customers

    def _order_counts(self, rng: random.Random, customers: list[Customer]) -> list[int]:
        """Everyone orders once; the remaining orders go to repeat buyers by a heavy-tailed
        appetite, so most customers buy once or twice and a few buy dozens of times."""
        weights = []
        for customer in customers:
            if customer.whale:
                weights.append(25.0)
            elif rng.random() < 0.5:
                weights.append(0.0)  # a one-time buyer
            else:
                weights.append(rng.lognormvariate(0.0, 0.8))
        counts = [1] * len(customers)
        extra = self.scale.orders - len(customers)
        if extra > 0 and any(weights):
            cumulative = []
            total = 0.0
            for w in weights:
                total += w
                cumulative.append(total)
            for index in rng.choices(range(len(customers)), cum_weights=cumulative, k=extra):
                counts[index] += 1
        return counts

    def _moment(self, rng: random.Random, low: float, high: float, craft: str) -> int:
        """A time in [low, high) drawn with the shop's seasonality and busy hours."""
        first_day = datetime.fromtimestamp(low, self.tz).date().toordinal()
        last_day = datetime.fromtimestamp(max(low, high - 1), self.tz).date().toordinal()
        craft_season = CRAFT_SEASON.get(craft)
        for _ in range(100):
            day = date.fromordinal(rng.randint(first_day, last_day))
            weight = MONTH_WEIGHT[day.month - 1]
            if craft_season:
                weight *= craft_season[day.month - 1]
            if rng.random() * _PEAK_DAY < weight:
                break
        hour = rng.choices(range(24), cum_weights=_HOUR_CUMULATIVE)[0]
        moment = datetime.combine(day, time(hour, rng.randrange(60), rng.randrange(60)), self.tz)
        return int(min(max(moment.timestamp(), low), high - 1))

    def _schedule(
        self, rng: random.Random, customers: list[Customer], counts: list[int]
    ) -> list[int]:
        """Every order as one integer, ``(seconds since start) << 22 | customer index``,
        sorted: the whole schedule of a million-line file costs a few MB."""
        span = self.end_ts - self.start_ts
        day = 86400
        keys = []
        for index, (customer, count) in enumerate(zip(customers, counts, strict=True)):
            if customer.whale:
                # Big spenders are old regulars: they joined in the shop's first year.
                joined = self.start_ts + span * 0.3 * rng.random()
            else:
                # The shop grows: more customers join in later years.
                joined = self.start_ts + span * (1 - rng.random() ** 0.8)
            first = self._moment(rng, joined, min(joined + 30 * day, self.end_ts), customer.craft)
            last = self.end_ts
            stop = self.end_ts - 200 * day
            if count > 1 and not customer.whale and rng.random() < 0.3 and stop - first > 60 * day:
                # A lapsed buyer: their orders stop at least 200 days before the end.
                last = int(rng.uniform(first + 60 * day, stop))
            keys.append(((first - self.start_ts) << 22) | index)
            for _ in range(count - 1):
                ts = self._moment(rng, min(first + 3600, last - 1), last, customer.craft)
                keys.append(((ts - self.start_ts) << 22) | index)
        keys.sort()
        return keys

    # orders -----------------------------------------------------------------------------

    def write_orders(self, path: str | Path, newest_first: bool = True) -> dict[str, int]:
        """Shopify's orders export, one row per line item; newest order first, as Shopify
        lists them. Returns counts: customers, orders, lines, rows."""
        rng = random.Random(self.seed)
        pools = self._pools = _pools(self.seed, min(600, max(60, self.scale.customers // 5)))
        customers = self._customers(rng, pools)
        counts = self._order_counts(rng, customers)
        keys = self._schedule(rng, customers, counts)
        del counts
        # Each order's position in its customer's history, computed oldest first.
        seen = [0] * len(customers)
        nth = []
        for key in keys:
            index = key & 0x3FFFFF
            nth.append(seen[index])
            seen[index] += 1
        del seen
        order_numbers = range(len(keys))
        if newest_first:
            order_numbers = reversed(order_numbers)
        lines = rows = 0
        mean_lines = max(1.0, self.scale.lines / max(1, self.scale.orders))
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(ORDER_COLUMNS)
            for seq in order_numbers:
                key = keys[seq]
                customer = customers[key & 0x3FFFFF]
                placed = self.start_ts + (key >> 22)
                order_rows = self._order_rows(rng, seq, placed, customer, nth[seq], mean_lines)
                writer.writerows(order_rows)
                lines += len(order_rows)
                rows += len(order_rows)
        return {"customers": len(customers), "orders": len(keys), "lines": lines, "rows": rows}

    def _basket(
        self, rng: random.Random, customer: Customer, nth: int, mean_lines: float
    ) -> list[tuple[Variant | None, str, str, int, int]]:
        """(variant or None, sku, name, quantity, unit price) for each line of one order."""
        count = 1
        stay = 1 - 1 / mean_lines  # geometric basket size with the asked mean
        while count < 12 and rng.random() < stay:
            count += 1
        if customer.whale:
            count += rng.randint(0, 3)
        # Beginners grow: after a few orders they buy like the next skill level.
        skill = SKILLS[min(2, customer.skill + (1 if nth >= 4 else 0))]
        basket = []
        skus = set()
        for _ in range(count):
            roll = rng.random()
            if roll < 0.015:
                sku, name, price = rng.choice(LEGACY_ITEMS)
                basket.append((None, sku, name, 1, price))
                continue
            if roll < 0.035:
                category = "classes"
            elif roll < 0.76:
                category = rng.choice(CRAFT_CATEGORIES[customer.craft])
            else:
                category = rng.choice(self.categories)
            tier = rng.choices(("starter", "standard", "premium"), TIER_MIX[skill])[0]
            options = self.variants[category].get(tier) or self.variants[category]["standard"]
            variant = rng.choice(options)
            if variant.sku in skus:
                variant = rng.choice(options)  # one more try keeps baskets near their size
                if variant.sku in skus:
                    continue
            skus.add(variant.sku)
            quantity = 1
            if category == "yarn" and tier != "starter":
                quantity = rng.choice((1, 2, 3, 4, 5, 6, 8, 10))
            elif rng.random() < 0.15:
                quantity = rng.choice((2, 2, 3, 4))
            if customer.whale and rng.random() < 0.4:
                quantity *= rng.choice((2, 3, 5))
            basket.append((variant, variant.sku, variant.line_name, quantity, variant.price_cents))
        return basket

    def _order_rows(
        self,
        rng: random.Random,
        seq: int,
        placed: int,
        customer: Customer,
        nth: int,
        mean_lines: float,
    ) -> list[list[str]]:
        basket = self._basket(rng, customer, nth, mean_lines)
        created = datetime.fromtimestamp(placed, self.tz)
        items = sum(q * p for _, _, _, q, p in basket)
        ships = any(v is None or v.requires_shipping for v, *_ in basket)

        discount_code, discount = "", 0
        roll = rng.random()
        if nth == 0 and roll < 0.12:
            discount_code, discount = "WELCOME10", items // 10
        elif created.month in (11, 12) and roll < 0.18:
            discount_code, discount = "HOLIDAY15", items * 15 // 100
        elif roll < 0.04 and items >= 3000:
            discount_code, discount = "CRAFTY5", 500
        subtotal = items - discount
        shipping = SHIPPING_CENTS if ships and subtotal < FREE_SHIPPING_CENTS else 0
        taxes = (subtotal * TAX_RATE_BP + 5000) // 10000
        total = subtotal + shipping + taxes

        source = rng.choices(
            ("web", "pos", "shopify_draft_order", "iphone", "android"), (82, 8, 3, 4, 3)
        )[0]
        status, refunded, cancelled_at = "paid", 0, ""
        roll = rng.random()
        if roll < 0.012:
            status, refunded = "refunded", total
            cancelled_at = _stamp(created + timedelta(hours=rng.randint(1, 30)))
        elif roll < 0.027:
            status, refunded = "refunded", total
        elif roll < 0.05 and len(basket) > 1:
            _, _, _, quantity, price = basket[-1]
            status, refunded = "partially_refunded", min(total, quantity * price)
        elif roll < 0.06 and placed > self.end_ts - 5 * 86400:
            status = "pending"
        is_recent = placed > self.end_ts - 2 * 86400
        fulfilled = not cancelled_at and not is_recent and source != "pos"
        fulfilled = fulfilled or (source == "pos" and not cancelled_at)
        consent = customer.accepts_marketing
        if 0 <= customer.consent_flips_at <= nth:
            consent = not consent
        email = customer.email
        if customer.email_variant and nth > 0 and rng.random() < 0.5:
            email = customer.email_variant

        name = f"#{1001 + seq}"
        order_id = str(5_100_000_000_000 + seq * 1009 + rng.randint(0, 999))
        gift = rng.random() < 0.07
        ship_name = f"{customer.first_name} {customer.last_name}"
        ship_address = customer.address
        if gift:
            # A present sent to someone else.
            country = customer.address[6]
            ship_name = f"{rng.choice(self._pools.first[country])} {customer.last_name}"
            ship_address = rng.choice(self._pools.addresses[country])
        a1, a2, city, postcode, province, province_name, country = customer.address
        s1, s2, s_city, s_zip, s_prov, s_prov_name, s_country = ship_address
        payment = (
            "Cash"
            if source == "pos"
            else rng.choices(("Shopify Payments", "PayPal Express Checkout"), (80, 20))[0]
        )
        reference = f"c{order_id[-11:]}.1"
        first_row = {
            "Name": name,
            "Email": email,
            "Financial Status": status,
            "Paid at": "" if status == "pending" else _stamp(created + timedelta(seconds=3)),
            "Fulfillment Status": "fulfilled" if fulfilled else "unfulfilled",
            "Fulfilled at": _stamp(created + timedelta(days=rng.randint(1, 4)))
            if fulfilled and source != "pos"
            else (_stamp(created) if fulfilled else ""),
            "Accepts Marketing": "yes" if consent else "no",
            "Currency": "USD",
            "Subtotal": _money(subtotal),
            "Shipping": _money(shipping),
            "Taxes": _money(taxes),
            "Total": _money(total),
            "Discount Code": discount_code,
            "Discount Amount": _money(discount),
            "Shipping Method": ("Free Shipping" if not shipping else "Standard Shipping")
            if ships and source != "pos"
            else "",
            "Created at": _stamp(created),
            "Billing Name": f"{customer.first_name} {customer.last_name}",
            "Billing Street": f"{a1}, {a2}" if a2 else a1,
            "Billing Address1": a1,
            "Billing Address2": a2,
            "Billing Company": customer.company,
            "Billing City": city,
            "Billing Zip": postcode,
            "Billing Province": province,
            "Billing Country": country,
            "Billing Phone": customer.phone,
            "Shipping Name": ship_name if ships else "",
            "Shipping Street": (f"{s1}, {s2}" if s2 else s1) if ships else "",
            "Shipping Address1": s1 if ships else "",
            "Shipping Address2": s2 if ships else "",
            "Shipping City": s_city if ships else "",
            "Shipping Zip": s_zip if ships else "",
            "Shipping Province": s_prov if ships else "",
            "Shipping Country": s_country if ships else "",
            "Shipping Phone": customer.phone if ships else "",
            "Notes": rng.choice(NOTES) if gift or rng.random() < 0.01 else "",
            "Cancelled at": cancelled_at,
            "Payment Method": payment,
            "Payment Reference": reference,
            "Refunded Amount": _money(refunded),
            "Outstanding Balance": "0.00",
            "Employee": rng.choice(STAFF) if source == "pos" else "",
            "Location": "Loop & Daub Studio" if source == "pos" else "",
            "Device ID": "1" if source == "pos" else "",
            "Id": order_id,
            "Tags": ", ".join(t for t, on in (("gift", gift), ("wholesale", customer.whale)) if on),
            "Risk Level": "Medium" if rng.random() < 0.02 else "Low",
            "Source": source,
            "Tax 1 Name": "Sales Tax 7%",
            "Tax 1 Value": _money(taxes),
            "Phone": "",
            "Billing Province Name": province_name,
            "Shipping Province Name": s_prov_name if ships else "",
            "Payment ID": reference,
            "Payment References": reference,
        }
        rows = []
        for position, (variant, sku, line_name, quantity, price) in enumerate(basket):
            line = {
                "Name": name,
                "Email": email,
                "Created at": first_row["Created at"],
                "Lineitem quantity": str(quantity),
                "Lineitem name": line_name,
                "Lineitem price": _money(price),
                "Lineitem compare at price": _money(variant.compare_at_cents) if variant else "",
                "Lineitem sku": sku,
                "Lineitem requires shipping": _bool(variant is None or variant.requires_shipping),
                "Lineitem taxable": "true",
                "Lineitem fulfillment status": "fulfilled" if fulfilled else "pending",
                "Vendor": variant.vendor if variant else "Loop & Daub Craft Supply",
                "Lineitem discount": "0.00",
            }
            row = [""] * len(ORDER_COLUMNS)
            for column, value in first_row.items() if position == 0 else ():
                row[_COLUMN_INDEX[column]] = value
            for column, value in line.items():
                row[_COLUMN_INDEX[column]] = value
            rows.append(row)
        return rows


def _money(cents: int | None) -> str:
    if cents is None:
        return ""
    return f"{cents // 100}.{cents % 100:02d}"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _stamp(moment: datetime) -> str:
    return moment.strftime(SHOPIFY_TIME)


def _phone(rng: random.Random, country: str) -> str:
    if rng.random() < 0.6:
        return ""  # most shoppers leave the phone out
    if country == "GB":
        return f"+447{rng.randint(100000000, 999999999)}"
    return f"+1{rng.randint(201, 989)}{rng.randint(2000000, 9999999)}"


def _email_local(rng: random.Random, first: str, last: str) -> str:
    first = first.lower().replace(" ", "").replace("'", "")
    last = last.lower().replace(" ", "").replace("'", "")
    style = rng.random()
    if style < 0.4:
        return f"{first}.{last}"
    if style < 0.6:
        return f"{first}{last}{rng.randint(1, 99)}"
    if style < 0.8:
        return f"{first[0]}{last}"
    return f"{first}_{last}{rng.randint(1960, 2005)}"


def read_orders(path: str | Path) -> Iterator[dict[str, str]]:
    """The rows of an orders file (for tests and the benchmark's baseline)."""
    with open(path, newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle)
