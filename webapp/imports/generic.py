"""A generic orders CSV, for shops that are not on Shopify.

Columns (header names are matched case-insensitively, spaces as underscores):
  order_id, customer_id and/or email, placed_at, total      required (one of customer_id/email)
  currency, refunded, cancelled_at, financial_status, accepts_marketing,
  first_name, last_name, city, country, source, tags         optional, per order
  sku, line_name (or product), quantity, price                optional, per order line

Several rows with the same order_id are the lines of one order; they must be consecutive.
The order's fields are read from its first row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import tzinfo

from webapp.imports.csvutil import (
    MAX_ID,
    Columns,
    DateParser,
    ImportFileError,
    check_email,
    group_orders,
    parse_bool,
    parse_cents,
    parse_optional_cents,
    parse_quantity,
)
from webapp.imports.records import LineRecord, OrderRecord, RowError

REQUIRED = ("order_id", "placed_at", "total")


def parse_generic(
    header: list[str],
    rows: Iterable[tuple[int, list[str]]],
    tz: tzinfo,
    currency: str,
    seen: dict[str, int] | None = None,
) -> Iterator[OrderRecord | RowError]:
    """Each order of the file, or the errors of its bad rows (the order is then dropped)."""
    cols = Columns(header)
    missing = [name for name in REQUIRED if name not in cols]
    if "customer_id" not in cols and "email" not in cols:
        missing.append("customer_id or email")
    if missing:
        raise ImportFileError("The generic orders CSV lacks the column(s): " + ", ".join(missing))
    if "line_name" not in cols and "product" in cols:
        cols.index["line_name"] = cols.index["product"]
    parse_date = DateParser(tz)
    for key, group, problem in group_orders(rows, cols["order_id"], "order_id", seen):
        if problem:
            yield RowError(group[0][0], problem)
            continue
        yield from _order(key, group, cols, parse_date, currency)


def _order(
    order_id: str,
    group: list[tuple[int, list[str]]],
    cols: Columns,
    parse_date: DateParser,
    default_currency: str,
) -> Iterator[OrderRecord | RowError]:
    errors: list[RowError] = []
    head: dict | None = None
    lines: list[LineRecord] = []
    c_sku, c_name = cols["sku"], cols["line_name"]
    c_qty, c_price = cols["quantity"], cols["price"]
    for position, (line, row) in enumerate(group):
        try:
            row = cols.fit(row)
            if position == 0:
                head = _order_fields(order_id, row, cols, parse_date, default_currency)
            sku, name = row[c_sku].strip(), row[c_name].strip()
            quantity, price = row[c_qty].strip(), row[c_price].strip()
            if not (sku or name or quantity or price):
                continue  # an order without line columns
            if not (name or sku):
                raise ValueError("the line has neither line_name nor sku")
            if not price:
                raise ValueError("the line's price is empty")
            if len(sku) > MAX_ID:
                raise ValueError(f"sku is longer than {MAX_ID} characters")
            lines.append(
                LineRecord(
                    position=len(lines),
                    name=(name or sku)[:500],
                    quantity=parse_quantity(quantity) if quantity else 1,
                    price_cents=parse_cents(price, "price"),
                    sku=sku or None,
                )
            )
        except ValueError as exc:
            errors.append(RowError(line, f"order {order_id}: {exc}"))
    if errors:
        yield from errors
        return
    assert head is not None
    yield OrderRecord(**head, lines=lines, line=group[0][0])


def _order_fields(
    order_id: str, row: list[str], cols: Columns, parse_date: DateParser, default_currency: str
) -> dict:
    """The order's own fields, as OrderRecord's keyword arguments."""
    if len(order_id) > MAX_ID:
        raise ValueError(f"order_id is longer than {MAX_ID} characters")
    customer_id = row[cols["customer_id"]].strip() or None
    email = check_email(row[cols["email"]])
    if customer_id is None and email is None:
        raise ValueError("needs a customer_id or an email")
    if customer_id and len(customer_id) > MAX_ID:
        raise ValueError(f"customer_id is longer than {MAX_ID} characters")
    placed = row[cols["placed_at"]]
    if not placed.strip():
        raise ValueError("placed_at is empty")
    total = row[cols["total"]]
    if not total.strip():
        raise ValueError("total is empty")
    currency = row[cols["currency"]].strip().upper() or default_currency
    if len(currency) != 3 or not currency.isalpha():
        raise ValueError(f"currency {currency!r} is not a 3-letter code")
    refunded = parse_optional_cents(row[cols["refunded"]], "refunded")
    if refunded < 0:
        raise ValueError("refunded is negative")
    return dict(
        external_id=order_id,
        placed_at=parse_date(placed, "placed_at"),
        total_cents=parse_cents(total, "total"),
        currency=currency,
        customer_external_id=customer_id,
        email=email,
        first_name=row[cols["first_name"]].strip()[:120] or None,
        last_name=row[cols["last_name"]].strip()[:120] or None,
        city=row[cols["city"]].strip()[:120] or None,
        country=row[cols["country"]].strip()[:120] or None,
        accepts_marketing=parse_bool(row[cols["accepts_marketing"]], "accepts_marketing"),
        refunded_cents=refunded,
        financial_status=row[cols["financial_status"]].strip()[:40] or None,
        cancelled_at=parse_date.optional(row[cols["cancelled_at"]], "cancelled_at"),
        source=row[cols["source"]].strip()[:80] or None,
        tags=row[cols["tags"]].strip(),
    )
