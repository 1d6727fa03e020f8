"""Shopify's orders export (Admin > Orders > Export), exactly as Shopify writes it.

One row per line item. The first row of an order carries the order's fields (Email,
Financial Status, Currency, Total, Created at, Billing ..., Id, Tags, Source); later rows of
the same order repeat ``Name`` (and a few other columns) and leave the rest blank, so the
order's fields are read from its first row only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import tzinfo
from operator import itemgetter

from webapp.imports.csvutil import (
    MAX_ID,
    Columns,
    DateParser,
    check_email,
    group_orders,
    parse_bool,
    parse_cents,
    parse_quantity,
    sharer,
    split_name,
)
from webapp.imports.records import OrderRecord, RowError


def parse_shopify(
    header: list[str],
    rows: Iterable[tuple[int, list[str]]],
    tz: tzinfo,
    currency: str,
    seen: dict[str, int] | None = None,
) -> Iterator[OrderRecord | RowError]:
    """Each order of the export, or the errors of its bad rows (the order is then dropped)."""
    cols = Columns(header)
    parse_date = DateParser(tz)
    order_at = itemgetter(*cols.positions(*ORDER_COLUMNS))
    line_at = itemgetter(*cols.positions(*LINE_COLUMNS))
    fit = cols.fit
    share = sharer()
    # Rows as wide as a header that has every column need no fitting: the usual case.
    always_fit = not all(key in cols for key in (*ORDER_COLUMNS, *LINE_COLUMNS))
    width = cols.width
    for name, group, problem in group_orders(rows, cols["name"], "Name", seen):
        first_line = group[0][0]
        if problem:
            yield RowError(first_line, problem)
            continue
        errors: list[RowError] = []
        head: tuple | None = None
        lines: list[tuple] = []  # LineRecord's shape
        for index, (line, row) in enumerate(group):
            try:
                if always_fit or len(row) != width:
                    row = fit(row)
                if index == 0:
                    head = _order_fields(name, row, order_at, parse_date, currency, share)
            except ValueError as exc:
                # The first row's messages name the order already. One error per row.
                errors.append(RowError(line, f"order {name}: {exc}" if index else str(exc)))
                continue
            try:
                quantity, line_name, price, sku = line_at(row)
                line_name, sku = line_name.strip(), sku.strip()
                if not (line_name or quantity.strip() or price.strip() or sku):
                    continue  # an order row without a line item
                if not line_name:
                    raise ValueError("Lineitem name is empty")
                if len(sku) > MAX_ID:
                    raise ValueError(f"Lineitem sku is longer than {MAX_ID} characters")
                lines.append(
                    (
                        len(lines),
                        share(line_name[:500]),
                        parse_quantity(quantity),
                        parse_cents(price, "Lineitem price"),
                        share(sku) if sku else None,
                    )
                )
            except ValueError as exc:
                errors.append(RowError(line, f"order {name}: {exc}"))
        if errors:
            yield from errors
        else:
            yield OrderRecord(*head, lines, first_line)


LINE_COLUMNS = ("lineitem_quantity", "lineitem_name", "lineitem_price", "lineitem_sku")
ORDER_COLUMNS = (
    "created_at",
    "total",
    "currency",
    "id",
    "billing_name",
    "refunded_amount",
    "email",
    "billing_city",
    "billing_country",
    "accepts_marketing",
    "financial_status",
    "cancelled_at",
    "source",
    "tags",
)


def _order_fields(
    name: str,
    row: list[str],
    order_at: itemgetter,
    parse_date: DateParser,
    default_currency: str,
    share: Callable[[str], str],
) -> tuple:
    """The order's own fields, in OrderRecord's order up to ``lines``."""
    if len(name) > MAX_ID:
        raise ValueError(f"Name is longer than {MAX_ID} characters")
    (
        created,
        total,
        currency,
        shopify_id,
        billing_name,
        refunded,
        email,
        city,
        country,
        accepts,
        status,
        cancelled,
        source,
        tags,
    ) = order_at(row)
    if not created.strip():
        raise ValueError(f"order {name}: Created at is empty")
    if not total.strip():
        raise ValueError(f"order {name}: Total is empty")
    currency = currency.strip().upper() or default_currency
    if len(currency) != 3 or not currency.isalpha():
        raise ValueError(f"order {name}: Currency {currency!r} is not a 3-letter code")
    shopify_id = shopify_id.strip() or None
    if shopify_id is not None and not (shopify_id.isascii() and shopify_id.isdigit()):
        raise ValueError(f"order {name}: Id {shopify_id!r} is not Shopify's numeric order id")
    first, last = split_name(billing_name)
    try:
        refunded_cents = parse_cents(refunded, "Refunded Amount") if refunded.strip() else 0
        if refunded_cents < 0:
            raise ValueError("Refunded Amount is negative")
        return (
            name,
            parse_date(created, "Created at"),
            parse_cents(total, "Total"),
            share(currency),
            shopify_id,
            None,  # customer_external_id: Shopify's export has none
            check_email(email),
            first[:120] if first else None,
            last[:120] if last else None,
            city.strip()[:120] or None,
            share(country.strip()[:120]) or None,
            parse_bool(accepts, "Accepts Marketing"),
            refunded_cents,
            share(status.strip()[:40]) or None,
            parse_date.optional(cancelled, "Cancelled at") if cancelled else None,
            share(source.strip()[:80]) or None,
            share(tags.strip()),
        )
    except ValueError as exc:
        raise ValueError(f"order {name}: {exc}") from None
