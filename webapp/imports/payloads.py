"""JSON orders -> OrderRecord: the `POST /api/orders` body and Shopify's order webhooks.

Every value is checked before anything is written; problems come back as FieldErrors that
name the order (its index in the request) and the field, so a caller can fix them all at once.

Rules of the API body (documented on the Settings page too):
- `order_id` and `customer_id` are strings. Numbers are refused, not stringified, because an id
  like "00042" would silently become "42" in most clients' JSON encoders.
- Amounts (`total`, `refunded`, line `price`) are decimal strings ("12.50") or JSON numbers, kept
  exactly (JSON numbers are parsed as Decimal, never float); more than 2 decimal places is an
  error, not a rounding.
- `placed_at` / `cancelled_at` are ISO 8601. A date alone is that day in the shop's time zone;
  a time without an offset is shop-local time.
- Unknown fields are errors, so a typo ("placedAt") never passes silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from webapp.imports.csvutil import MAX_CENTS, MAX_ID, DateParser
from webapp.imports.csvutil import parse_cents as csv_parse_cents
from webapp.imports.records import LineRecord, OrderRecord

MAX_ORDERS_PER_CALL = 1000
MAX_NAME_LENGTH = 120
MAX_LINE_NAME_LENGTH = 500
MAX_EMAIL_LENGTH = 320

ORDER_FIELDS = {
    "order_id",
    "customer_id",
    "email",
    "placed_at",
    "total",
    "currency",
    "refunded",
    "cancelled_at",
    "financial_status",
    "accepts_marketing",
    "first_name",
    "last_name",
    "city",
    "country",
    "lines",
}
LINE_FIELDS = {"sku", "name", "quantity", "price"}

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


@dataclass(frozen=True, slots=True)
class FieldError:
    index: int  # position of the order in the request's "orders" list
    field: str  # "total", "lines[2].price"
    message: str

    def as_dict(self) -> dict:
        return {"index": self.index, "field": self.field, "message": self.message}


class PayloadError(ValueError):
    """A value that cannot be used; the message says why, for the sender."""


# --- values ------------------------------------------------------------------------------


def parse_cents(value: object, what: str = "amount") -> int:
    """An exact amount in minor units from a decimal string or a JSON number (int/Decimal).

    Strings go through the CSV importers' parser, so every source accepts the same amounts.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise PayloadError('must be a decimal string like "12.50" or a number')
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise PayloadError(f"{value} is not an amount")
        text = format(value, "f")  # 1E+3 -> "1000": plain digits for the shared parser
    else:
        text = str(value)
    try:
        cents = csv_parse_cents(text, what)
    except ValueError as exc:
        raise PayloadError(str(exc)) from None
    if abs(cents) >= MAX_CENTS:
        raise PayloadError(f"{what} {text} is too large")
    return cents


def parse_timestamp(value: object, tz: ZoneInfo | tzinfo, what: str = "date") -> datetime:
    """ISO 8601 -> aware UTC. A date alone is that day in ``tz``; no offset means ``tz``."""
    if not isinstance(value, str) or not value.strip():
        raise PayloadError('must be an ISO 8601 date or time like "2024-05-01T14:30:00Z"')
    try:
        return DateParser(tz)(value, what)
    except ValueError as exc:
        raise PayloadError(str(exc)) from None


def _text(value: object, max_length: int, *, required: bool = False) -> str | None:
    """A trimmed string; numbers are refused so that ids keep their leading zeros."""
    if value is None:
        if required:
            raise PayloadError("is required")
        return None
    if not isinstance(value, str):
        raise PayloadError(f"must be a string, not {_json_type(value)}")
    text = value.strip()
    if not text:
        if required:
            raise PayloadError("must not be empty")
        return None
    if len(text) > max_length:
        raise PayloadError(f"is longer than {max_length} characters")
    if "\x00" in text:
        raise PayloadError("must not contain NUL characters")
    return text


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, Decimal)):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _email(value: object) -> str | None:
    email = _text(value, MAX_EMAIL_LENGTH)
    if email is not None and not _EMAIL.match(email):
        raise PayloadError(f"{email!r} is not an email address")
    return email


def _currency(value: object, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or not _CURRENCY.match(value.strip().upper()):
        raise PayloadError('must be a 3-letter ISO 4217 code like "EUR"')
    return value.strip().upper()


def _quantity(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise PayloadError("must be a whole number")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise PayloadError(f"{value!r} is not a whole number") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise PayloadError(f"{value} is not a whole number")
    if number < 0 or number > 1_000_000:
        raise PayloadError(f"{value} is not a quantity between 0 and 1,000,000")
    return int(number)


# --- the JSON API ------------------------------------------------------------------------


class _Collector:
    """Collects every error of one order, so the sender sees them all in one answer."""

    def __init__(self, index: int, errors: list[FieldError]):
        self.index = index
        self.errors = errors
        self.failed = False

    def get(self, field: str, parse, *args, **kwargs):
        try:
            return parse(*args, **kwargs)
        except PayloadError as exc:
            self.fail(field, str(exc))
            return None

    def has_error(self, *fields: str) -> bool:
        return any(e.index == self.index and e.field in fields for e in self.errors)

    def fail(self, field: str, message: str) -> None:
        self.failed = True
        self.errors.append(FieldError(self.index, field, message))


def parse_api_orders(
    orders: list, tz: ZoneInfo, default_currency: str
) -> tuple[list[OrderRecord], list[FieldError]]:
    """Validate every order of an API call. Records are only usable if errors is empty."""
    records: list[OrderRecord] = []
    errors: list[FieldError] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(orders):
        record = _parse_api_order(index, raw, tz, default_currency, errors)
        if record is None:
            continue
        if record.external_id in first_index:
            errors.append(
                FieldError(
                    index,
                    "order_id",
                    f"{record.external_id!r} is also order {first_index[record.external_id]} "
                    "of this request; send each order once",
                )
            )
            continue
        first_index[record.external_id] = index
        records.append(record)
    return records, errors


def _parse_api_order(
    index: int, raw: object, tz: ZoneInfo, default_currency: str, errors: list[FieldError]
) -> OrderRecord | None:
    c = _Collector(index, errors)
    if not isinstance(raw, dict):
        c.fail("", f"each order must be an object, not {_json_type(raw)}")
        return None
    for key in sorted(set(raw) - ORDER_FIELDS):
        c.fail(key, "is not a known field")

    order_id = c.get("order_id", _text, raw.get("order_id"), MAX_ID, required=True)
    customer_id = c.get("customer_id", _text, raw.get("customer_id"), MAX_ID)
    email = c.get("email", _email, raw.get("email"))
    if customer_id is None and email is None and not c.has_error("customer_id", "email"):
        c.fail("customer_id", "give customer_id or email, so the order belongs to a customer")
    placed_at = c.get("placed_at", parse_timestamp, raw.get("placed_at"), tz, "placed_at")
    total = None
    if "total" not in raw:
        c.fail("total", "is required")
    else:
        total = c.get("total", parse_cents, raw["total"], "total")
        if total is not None and total < 0:
            c.fail("total", "must not be negative")
    refunded = 0
    if raw.get("refunded") is not None:
        refunded = c.get("refunded", parse_cents, raw["refunded"], "refunded")
        if refunded is not None and refunded < 0:
            c.fail("refunded", "must not be negative")
        elif refunded is not None and total is not None and refunded > total:
            c.fail("refunded", "is more than the order's total")
    cancelled_at = None
    if raw.get("cancelled_at") is not None:
        cancelled_at = c.get(
            "cancelled_at", parse_timestamp, raw["cancelled_at"], tz, "cancelled_at"
        )
    currency = c.get("currency", _currency, raw.get("currency"), default_currency)
    financial_status = c.get("financial_status", _text, raw.get("financial_status"), 40)
    accepts_marketing = raw.get("accepts_marketing")
    if accepts_marketing is not None and not isinstance(accepts_marketing, bool):
        c.fail("accepts_marketing", "must be true, false or null")
    names = {
        key: c.get(key, _text, raw.get(key), MAX_NAME_LENGTH)
        for key in ("first_name", "last_name", "city", "country")
    }
    lines = _parse_api_lines(c, raw.get("lines"))
    if c.failed:
        return None
    return OrderRecord(
        external_id=order_id,
        placed_at=placed_at,
        total_cents=total,
        currency=currency,
        customer_external_id=customer_id,
        email=email,
        accepts_marketing=accepts_marketing,
        refunded_cents=refunded,
        financial_status=financial_status.lower() if financial_status else None,
        cancelled_at=cancelled_at,
        lines=lines,
        **names,
    )


def _parse_api_lines(c: _Collector, raw_lines: object) -> list[LineRecord]:
    if raw_lines is None:
        return []
    if not isinstance(raw_lines, list):
        c.fail("lines", f"must be a list, not {_json_type(raw_lines)}")
        return []
    lines = []
    for position, raw in enumerate(raw_lines):
        where = f"lines[{position}]"
        if not isinstance(raw, dict):
            c.fail(where, f"must be an object, not {_json_type(raw)}")
            continue
        for key in sorted(set(raw) - LINE_FIELDS):
            c.fail(f"{where}.{key}", "is not a known field")
        name = c.get(f"{where}.name", _text, raw.get("name"), MAX_LINE_NAME_LENGTH, required=True)
        sku = c.get(f"{where}.sku", _text, raw.get("sku"), MAX_ID)
        quantity = price = None
        if "quantity" not in raw:
            c.fail(f"{where}.quantity", "is required")
        else:
            quantity = c.get(f"{where}.quantity", _quantity, raw["quantity"])
        if "price" not in raw:
            c.fail(f"{where}.price", "is required")
        else:
            price = c.get(f"{where}.price", parse_cents, raw["price"], "price")
            if price is not None and price < 0:
                c.fail(f"{where}.price", "must not be negative")
        if not c.failed:
            lines.append(LineRecord(position, name, quantity, price, sku))
    return lines


# --- Shopify's order webhooks ------------------------------------------------------------

_UNSUBSCRIBED_STATES = {"not_subscribed", "unsubscribed", "redacted", "invalid"}


def parse_shopify_order(payload: object) -> OrderRecord:
    """Shopify's Order JSON (orders/create, orders/updated) -> OrderRecord.

    The external id is the order's Name ("#1001"), as in Shopify's CSV export, so that a
    webhook and a later CSV import of the same order meet on one row.
    """
    if not isinstance(payload, dict):
        raise PayloadError("the body must be a Shopify order object")
    where = "order"
    try:
        where = "name"
        name = _text(payload.get("name"), MAX_ID, required=True)
        where = "id"
        shopify_id = _shopify_id(payload.get("id"), required=True)
        where = "created_at"
        placed_at = parse_timestamp(payload.get("created_at") or payload.get("processed_at"), UTC)
        where = "total_price"
        total = parse_cents(payload.get("total_price"))
        where = "currency"
        currency = _currency(payload.get("currency"), "")
        if not currency:
            raise PayloadError("is required")
        where = "cancelled_at"
        cancelled_at = (
            parse_timestamp(payload["cancelled_at"], UTC) if payload.get("cancelled_at") else None
        )
        where = "refunds"
        refunded = _shopify_refunded(payload.get("refunds"))
        where = "customer"
        customer = payload.get("customer") or {}
        if not isinstance(customer, dict):
            raise PayloadError("must be an object")
        customer_id = _shopify_id(customer.get("id"))
        where = "email"
        email = _email(
            payload.get("email") or payload.get("contact_email") or customer.get("email")
        )
        where = "customer"
        first_name = _text(customer.get("first_name"), MAX_NAME_LENGTH)
        last_name = _text(customer.get("last_name"), MAX_NAME_LENGTH)
        where = "billing_address"
        address = payload.get("billing_address") or payload.get("shipping_address") or {}
        if not isinstance(address, dict):
            raise PayloadError("must be an object")
        city = _text(address.get("city"), MAX_NAME_LENGTH)
        country = _text(address.get("country"), MAX_NAME_LENGTH)
        first_name = first_name or _text(address.get("first_name"), MAX_NAME_LENGTH)
        last_name = last_name or _text(address.get("last_name"), MAX_NAME_LENGTH)
        where = "customer.email_marketing_consent"
        accepts_marketing = _shopify_consent(payload, customer)
        where = "financial_status"
        financial_status = _text(payload.get("financial_status"), 40)
        where = "tags"
        tags = _text(payload.get("tags"), 10_000) or ""
        where = "source_name"
        source = _text(payload.get("source_name"), 80)
        where = "line_items"
        lines = _shopify_lines(payload.get("line_items"))
    except PayloadError as exc:
        raise PayloadError(f"{where}: {exc}") from None
    return OrderRecord(
        external_id=name,
        placed_at=placed_at,
        total_cents=total,
        currency=currency,
        shopify_id=shopify_id,
        customer_external_id=customer_id,
        email=email,
        first_name=first_name,
        last_name=last_name,
        city=city,
        country=country,
        accepts_marketing=accepts_marketing,
        refunded_cents=refunded,
        financial_status=financial_status,
        cancelled_at=cancelled_at,
        source=source,
        tags=tags,
        lines=lines,
    )


def _shopify_id(value: object, *, required: bool = False) -> str | None:
    # Shopify ids are JSON integers; a string of digits is accepted for hand-made payloads.
    if value is None:
        if required:
            raise PayloadError("is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise PayloadError(f"must be a number, not {_json_type(value)}")
    text = str(value).strip()
    if not text.isdigit():
        raise PayloadError(f"{value!r} is not a Shopify id")
    return text


def _shopify_refunded(refunds: object) -> int:
    """Money actually given back: successful refund transactions of every refund."""
    if refunds is None:
        return 0
    if not isinstance(refunds, list):
        raise PayloadError("must be a list")
    total = 0
    for refund in refunds:
        if not isinstance(refund, dict):
            raise PayloadError("each refund must be an object")
        transactions = refund.get("transactions") or []
        if not isinstance(transactions, list):
            raise PayloadError("transactions must be a list")
        for transaction in transactions:
            if not isinstance(transaction, dict):
                raise PayloadError("each transaction must be an object")
            if transaction.get("kind") != "refund":
                continue
            if transaction.get("status") not in (None, "success"):
                continue
            total += parse_cents(transaction.get("amount"))
    return total


def _shopify_consent(payload: dict, customer: dict) -> bool | None:
    """Newer API versions send email_marketing_consent; older ones accepts_marketing."""
    consent = customer.get("email_marketing_consent")
    if isinstance(consent, dict) and consent.get("state"):
        state = str(consent["state"]).lower()
        if state == "subscribed":
            return True
        if state in _UNSUBSCRIBED_STATES:
            return False
        return None  # "pending": a double opt-in that is not confirmed yet says nothing
    for value in (customer.get("accepts_marketing"), payload.get("buyer_accepts_marketing")):
        if isinstance(value, bool):
            return value
    return None


def _shopify_lines(items: object) -> list[LineRecord]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise PayloadError("must be a list")
    lines = []
    for position, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise PayloadError("must be an object")
            name = _text(item.get("name") or item.get("title"), MAX_LINE_NAME_LENGTH)
            if name is None:
                raise PayloadError("name: is required")
            lines.append(
                LineRecord(
                    position=position,
                    name=name,
                    quantity=_quantity(item.get("quantity")),
                    price_cents=parse_cents(item.get("price")),
                    sku=_text(item.get("sku"), MAX_ID),
                )
            )
        except PayloadError as exc:
            raise PayloadError(f"[{position}] {exc}") from None
    return lines
