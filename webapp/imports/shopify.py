"""Shopify's orders export (Admin > Orders > Export), exactly as Shopify writes it.

One row per line item. The first row of an order carries the order's fields (Email,
Financial Status, Currency, Total, Created at, Billing ..., Id, Tags, Source); later rows of
the same order repeat ``Name`` (and a few other columns) and leave the rest blank, so the
order's fields are read from its first row only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import tzinfo

from webapp.imports.csvutil import (
    Columns,
    DateParser,
    check_email,
    group_orders,
    parse_bool,
    parse_cents,
    parse_optional_cents,
    parse_quantity,
    split_name,
)
from webapp.imports.records import LineRecord, OrderRecord, RowError

MAX_ID = 120


def parse_shopify(
    header: list[str],
    rows: Iterable[tuple[int, list[str]]],
    tz: tzinfo,
    currency: str,
) -> Iterator[OrderRecord | RowError]:
    """Each order of the export, or the errors of its bad rows (the order is then dropped)."""
    cols = Columns(header)
    c_name = cols["name"]
    parse_date = DateParser(tz)
    for key, group, problem in group_orders(rows, c_name, "Name"):
        if problem:
            yield RowError(group[0][0], problem)
            continue
        yield from _order(key, group, cols, parse_date, currency)


def _order(
    name: str,
    group: list[tuple[int, list[str]]],
    cols: Columns,
    parse_date: DateParser,
    default_currency: str,
) -> Iterator[OrderRecord | RowError]:
    errors: list[RowError] = []
    record: OrderRecord | None = None
    first_line = group[0][0]
    try:
        row = cols.fit(group[0][1])
        record = _order_fields(name, row, cols, parse_date, default_currency)
        record.line = first_line
    except ValueError as exc:
        errors.append(RowError(first_line, str(exc)))

    c_qty, c_lname = cols["lineitem_quantity"], cols["lineitem_name"]
    c_price, c_sku = cols["lineitem_price"], cols["lineitem_sku"]
    lines: list[LineRecord] = []
    for position, (line, row) in enumerate(group):
        if position == 0 and errors:
            continue  # the first row is bad already; one error per row
        try:
            if position:
                row = cols.fit(row)
            line_name = row[c_lname].strip()
            quantity, price, sku = row[c_qty], row[c_price], row[c_sku].strip()
            if not (line_name or quantity.strip() or price.strip() or sku):
                continue  # an order row without a line item
            if not line_name:
                raise ValueError("Lineitem name is empty")
            if len(sku) > MAX_ID:
                raise ValueError(f"Lineitem sku is longer than {MAX_ID} characters")
            lines.append(
                LineRecord(
                    position=len(lines),
                    name=line_name[:500],
                    quantity=parse_quantity(quantity),
                    price_cents=parse_cents(price, "Lineitem price"),
                    sku=sku or None,
                )
            )
        except ValueError as exc:
            errors.append(RowError(line, f"order {name}: {exc}"))
    if errors:
        yield from errors
        return
    assert record is not None
    record.lines = lines
    yield record


def _order_fields(
    name: str, row: list[str], cols: Columns, parse_date: DateParser, default_currency: str
) -> OrderRecord:
    if len(name) > MAX_ID:
        raise ValueError(f"Name is longer than {MAX_ID} characters")
    created = row[cols["created_at"]]
    if not created.strip():
        raise ValueError(f"order {name}: Created at is empty")
    total = row[cols["total"]]
    if not total.strip():
        raise ValueError(f"order {name}: Total is empty")
    currency = row[cols["currency"]].strip().upper() or default_currency
    if len(currency) != 3 or not currency.isalpha():
        raise ValueError(f"order {name}: Currency {currency!r} is not a 3-letter code")
    shopify_id = row[cols["id"]].strip() or None
    if shopify_id is not None and not (shopify_id.isascii() and shopify_id.isdigit()):
        raise ValueError(f"order {name}: Id {shopify_id!r} is not Shopify's numeric order id")
    first, last = split_name(row[cols["billing_name"]])
    refunded = parse_optional_cents(row[cols["refunded_amount"]], "Refunded Amount")
    if refunded < 0:
        raise ValueError(f"order {name}: Refunded Amount is negative")
    try:
        return OrderRecord(
            external_id=name,
            placed_at=parse_date(created, "Created at"),
            total_cents=parse_cents(total, "Total"),
            currency=currency,
            shopify_id=shopify_id,
            email=check_email(row[cols["email"]]),
            first_name=first[:120] if first else None,
            last_name=last[:120] if last else None,
            city=row[cols["billing_city"]].strip()[:120] or None,
            country=row[cols["billing_country"]].strip()[:120] or None,
            accepts_marketing=parse_bool(row[cols["accepts_marketing"]], "Accepts Marketing"),
            refunded_cents=refunded,
            financial_status=row[cols["financial_status"]].strip()[:40] or None,
            cancelled_at=parse_date.optional(row[cols["cancelled_at"]], "Cancelled at"),
            source=row[cols["source"]].strip()[:80] or None,
            tags=row[cols["tags"]].strip(),
        )
    except ValueError as exc:
        raise ValueError(f"order {name}: {exc}") from None
