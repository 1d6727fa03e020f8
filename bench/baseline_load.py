"""The benchmark's baseline: the least work that loads a Shopify orders export into
Patchwork's customers, orders and order_lines tables.

Python's csv module reads the file; customers are deduplicated by email and orders by Name in
dicts; there is no validation, no categorising of lines, no upsert. SQLite: plain
``executemany`` in one transaction. PostgreSQL: ``COPY`` (orders and lines are spooled to
temporary files while reading, because customers, which carry totals known only at the end,
must be in before the orders that reference them).

    python bench/baseline_load.py DATABASE_URL FILE

The schema must exist (``patchwork init-db``). Prints one JSON object with the row counts.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import sys
import tempfile
from datetime import UTC, datetime

SOURCE = "shopify_csv"


def cents(value: str) -> int:
    if not value:
        return 0
    whole, _, minor = value.partition(".")
    return int(whole) * 100 + int((minor + "00")[:2]) * (-1 if whole.startswith("-") else 1)


def utc(value: str) -> datetime | None:
    """Shopify's "2024-03-05 14:23:11 -0500" as an aware UTC datetime."""
    if not value:
        return None
    iso = f"{value[:19]}{value[20:23]}:{value[23:]}"
    return datetime.fromisoformat(iso).astimezone(UTC)


def read(path: str, on_order, on_line, stamp) -> dict[str, list]:
    """Stream the file; call on_order(row) and on_line(row) with plain tuples, and return the
    customers (email_norm -> row as a list) with their totals. ``stamp`` turns an aware UTC
    datetime into what the database driver takes."""
    now = stamp(datetime.now(UTC))
    customers: dict[str, list] = {}
    order_ids: dict[str, int] = {}
    order_id = line_id = 0
    current = None
    position = 0
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        col = {name: i for i, name in enumerate(next(reader))}
        c_name, c_email, c_status = col["Name"], col["Email"], col["Financial Status"]
        c_created, c_total, c_refund = col["Created at"], col["Total"], col["Refunded Amount"]
        c_cancel, c_billing, c_city = col["Cancelled at"], col["Billing Name"], col["Billing City"]
        c_country, c_marketing = col["Billing Country"], col["Accepts Marketing"]
        c_id, c_source, c_tags, c_currency = col["Id"], col["Source"], col["Tags"], col["Currency"]
        c_qty, c_lname = col["Lineitem quantity"], col["Lineitem name"]
        c_price, c_sku = col["Lineitem price"], col["Lineitem sku"]
        for row in reader:
            name = row[c_name]
            if name != current:
                current = name
                position = 0
                if name in order_ids:
                    current = None
                    continue
                order_id += 1
                order_ids[name] = order_id
                placed = stamp(utc(row[c_created]))
                total = cents(row[c_total])
                refunded = cents(row[c_refund])
                cancelled = stamp(utc(row[c_cancel]))
                email = row[c_email]
                norm = email.strip().lower()
                customer = customers.get(norm)
                if customer is None:
                    first, _, last = row[c_billing].partition(" ")
                    accepts = row[c_marketing] == "yes"
                    customer = [
                        len(customers) + 1, email, norm, first, last, row[c_city],
                        row[c_country], accepts, SOURCE, placed, 0, 0, placed, now, now,
                    ]  # fmt: skip
                    customers[norm] = customer
                customer[10] += 1
                if cancelled is None:
                    customer[11] += total - refunded
                if placed > customer[12]:
                    customer[12] = placed
                on_order(
                    (
                        order_id, name, row[c_id] or None, customer[0], placed,
                        row[c_currency] or "USD", total, refunded, row[c_status] or None,
                        cancelled, row[c_source] or None, row[c_tags], now, now,
                    )
                )  # fmt: skip
            elif current is None:
                continue
            line_id += 1
            on_line(
                (
                    line_id, order_id, position, row[c_sku] or None, row[c_lname],
                    int(row[c_qty]), cents(row[c_price]),
                )
            )  # fmt: skip
            position += 1
    return customers


CUSTOMER_COLUMNS = (
    "id, email, email_norm, first_name, last_name, city, country, accepts_marketing, "
    "consent_source, consent_at, orders_count, spent_cents, last_order_at, created_at, updated_at"
)
ORDER_COLUMNS = (
    "id, external_id, shopify_id, customer_id, placed_at, currency, total_cents, "
    "refunded_cents, financial_status, cancelled_at, source, tags, created_at, updated_at"
)
LINE_COLUMNS = "id, order_id, position, sku, name, quantity, price_cents"


def _sqlite_stamp(value: datetime | None) -> str | None:
    """SQLAlchemy's storage format for a UTC timestamp on SQLite."""
    return None if value is None else value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _keep(value: datetime | None) -> datetime | None:
    return value


def load_sqlite(path: str, file: str) -> dict:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    cursor = connection.cursor()
    cursor.execute("BEGIN")
    orders: list[tuple] = []
    lines: list[tuple] = []
    counts = {"orders": 0, "lines": 0}

    def flush() -> None:
        cursor.executemany(f"INSERT INTO orders ({ORDER_COLUMNS}) VALUES ({_marks(14)})", orders)
        cursor.executemany(f"INSERT INTO order_lines ({LINE_COLUMNS}) VALUES ({_marks(7)})", lines)
        counts["orders"] += len(orders)
        counts["lines"] += len(lines)
        orders.clear()
        lines.clear()

    def on_order(row: tuple) -> None:
        orders.append(row)
        if len(orders) >= 10_000:
            flush()

    customers = read(file, on_order, lines.append, _sqlite_stamp)
    flush()
    cursor.executemany(
        f"INSERT INTO customers ({CUSTOMER_COLUMNS}) VALUES ({_marks(15)})",
        customers.values(),
    )
    cursor.execute("COMMIT")
    connection.close()
    return {"customers": len(customers), **counts}


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _copy_text(value) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat(" ")
    text = str(value)
    if any(c in text for c in "\\\t\n\r"):
        text = text.translate(_COPY_ESCAPES)
    return text


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def load_postgresql(url: str, file: str) -> dict:
    import psycopg

    counts = {"orders": 0, "lines": 0}
    with (
        tempfile.TemporaryFile("w+", encoding="utf-8") as order_spool,
        tempfile.TemporaryFile("w+", encoding="utf-8") as line_spool,
    ):

        def on_order(row: tuple) -> None:
            order_spool.write("\t".join(map(_copy_text, row)) + "\n")
            counts["orders"] += 1

        def on_line(row: tuple) -> None:
            line_spool.write("\t".join(map(_copy_text, row)) + "\n")
            counts["lines"] += 1

        customers = read(file, on_order, on_line, _keep)
        with psycopg.connect(url) as connection, connection.cursor() as cursor:
            with cursor.copy(f"COPY customers ({CUSTOMER_COLUMNS}) FROM STDIN") as copy:
                for customer in customers.values():
                    copy.write_row(customer)
            for table, columns, spool in (
                ("orders", ORDER_COLUMNS, order_spool),
                ("order_lines", LINE_COLUMNS, line_spool),
            ):
                spool.seek(0)
                with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    while block := spool.read(1 << 20):
                        copy.write(block)
            # Keep the id sequences usable after explicit ids, as an import would leave them.
            for table in ("customers", "orders", "order_lines"):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT coalesce(max(id), 1) FROM {table}))"
                )
    return {"customers": len(customers), **counts}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    url, file = argv[1], argv[2]
    if url.startswith("sqlite:///"):
        result = load_sqlite(url[len("sqlite:///") :], file)
    else:
        for prefix in ("postgresql+psycopg://", "postgres://"):
            if url.startswith(prefix):
                url = "postgresql://" + url[len(prefix) :]
        result = load_postgresql(url, file)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
