"""Order imports: Shopify's orders export and the generic CSV, through the CLI, the service
and the task handlers, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.imports.csvutil import DateParser, parse_cents, read_rows
from webapp.imports.records import LineRecord, OrderRecord
from webapp.imports.service import import_orders_file
from webapp.imports.writer import upsert_orders
from webapp.models import Customer, ErasedEmail, Order, OrderLine
from webapp.privacy import email_hash
from webapp.shop import get_shop

DATA = Path(__file__).parent / "data"
SHOPIFY = DATA / "shopify_orders.csv"
COUNTS = ("customers_created", "customers_updated", "orders_created", "orders_updated", "lines")


def run_json(runner, *args):
    result = runner.invoke(args=["import-orders", *map(str, args), "--json"])
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return result.exit_code, json.loads(lines[0])


def counts(payload: dict) -> dict:
    return {k: payload[k] for k in COUNTS}


def customer(email_norm: str) -> Customer:
    return db.session.scalars(select(Customer).where(Customer.email_norm == email_norm)).one()


def order(external_id: str) -> Order:
    return db.session.scalars(select(Order).where(Order.external_id == external_id)).one()


def write_csv(tmp_path: Path, text: str, name: str = "orders.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def set_timezone(name: str) -> None:
    get_shop().timezone = name
    db.session.commit()


# --- Shopify's export ----------------------------------------------------------------------


def test_shopify_export_gives_customers_orders_lines_cents_and_consent(app, runner):
    code, out = run_json(runner, SHOPIFY)

    assert code == 0
    assert out == {
        "customers_created": 3,
        "customers_updated": 0,
        "orders_created": 5,
        "orders_updated": 0,
        "lines": 8,
        "errors": [],
    }
    jane = customer("jane@example.com")  # "jane@..." and "JANE@Example.com " are one person
    assert (jane.first_name, jane.last_name, jane.city, jane.country) == (
        "Jane",
        "Doe",
        "Portland",
        "US",
    )
    assert jane.email == "JANE@Example.com"  # spelled as in her newest order, trimmed
    assert jane.accepts_marketing is True
    assert jane.consent_source == "shopify_csv"
    assert jane.consent_at == datetime(2024, 3, 18, 14, 5, 43, tzinfo=UTC)
    assert (jane.orders_count, jane.spent_cents) == (2, 5450 + 6890)
    assert jane.last_order_at == datetime(2024, 3, 18, 14, 5, 43, tzinfo=UTC)

    first = order("#1001")
    assert first.shopify_id == "5512345678901"
    assert first.placed_at == datetime(2024, 3, 5, 19, 23, 11, tzinfo=UTC)  # -0500 kept
    assert (first.total_cents, first.currency, first.tags) == (5450, "USD", "first-order")
    assert [(ln.position, ln.sku, ln.name, ln.quantity, ln.price_cents) for ln in first.lines] == [
        (0, "YARN-MER-OAT", "Merino Yarn - Oatmeal", 2, 1500),
        (1, "MARK-20", "Stitch Markers (pack of 20)", 1, 1500),
    ]
    assert [ln.sku for ln in order("#1003").lines] == ["YARN-MER-GRN", "NEEDLE-BAM-5", None]

    bob = customer("bob@example.com")
    assert bob.accepts_marketing is False and bob.consent_source == "shopify_csv"
    assert order("#1002").refunded_cents == 1000
    assert (bob.orders_count, bob.spent_cents) == (1, 2000)  # net of the refund

    carol = customer("carol@example.com")
    cancelled = order("#1005")
    assert cancelled.cancelled_at == datetime(2024, 4, 2, 16, 0, tzinfo=UTC)
    assert cancelled.refunded_cents == 2500
    assert (carol.orders_count, carol.spent_cents) == (0, 0)  # a cancelled order is no spend

    pos = order("#1004")  # a point-of-sale order without an email has no customer
    assert pos.customer_id is None and pos.source == "pos"
    assert db.session.scalar(select(func.count(Customer.id))) == 3


def test_importing_the_same_file_again_changes_nothing(app, runner):
    run_json(runner, SHOPIFY)
    before = db.session.execute(
        select(Customer.id, Customer.updated_at, Customer.spent_cents).order_by(Customer.id)
    ).all()
    line_ids = db.session.scalars(select(OrderLine.id).order_by(OrderLine.id)).all()

    code, out = run_json(runner, SHOPIFY)

    assert code == 0
    assert counts(out) == dict.fromkeys(COUNTS, 0)
    after = db.session.execute(
        select(Customer.id, Customer.updated_at, Customer.spent_cents).order_by(Customer.id)
    ).all()
    assert after == before
    assert db.session.scalars(select(OrderLine.id).order_by(OrderLine.id)).all() == line_ids


def broken_copy(tmp_path: Path) -> Path:
    """The sample export with a bad price on line 10 (after the quoted multi-line note of
    #1001, which spans lines 8-9) and a bad date in #1002 (line 7)."""
    text = SHOPIFY.read_text()
    text = text.replace("Stitch Markers (pack of 20),15.00", "Stitch Markers (pack of 20),fifteen")
    text = text.replace(",2024-03-10 08:00:00 -0500,3,", ",10/03/2024,3,")
    return write_csv(tmp_path, text)


def test_a_broken_row_reports_its_physical_line_and_imports_nothing(app, runner, tmp_path):
    code, out = run_json(runner, broken_copy(tmp_path))

    assert code == 1
    assert counts(out) == dict.fromkeys(COUNTS, 0)
    assert [e["line"] for e in out["errors"]] == [7, 10]
    assert "Created at '10/03/2024' is not a date" in out["errors"][0]["message"]
    assert "#1001" in out["errors"][1]["message"]
    assert db.session.scalar(select(func.count(Order.id))) == 0
    assert db.session.scalar(select(func.count(Customer.id))) == 0


def test_skip_bad_rows_imports_the_good_orders(app, runner, tmp_path):
    result = runner.invoke(
        args=["import-orders", str(broken_copy(tmp_path)), "--json", "--skip-bad-rows"]
    )

    assert result.exit_code == 0
    out = json.loads(result.output)
    assert len(out["errors"]) == 2
    assert out["orders_created"] == 3  # #1001 and #1002 are dropped whole
    assert sorted(db.session.scalars(select(Order.external_id))) == ["#1003", "#1004", "#1005"]


def test_human_output_is_a_summary_and_the_bad_rows(app, runner, tmp_path):
    result = runner.invoke(args=["import-orders", str(broken_copy(tmp_path))])

    assert result.exit_code == 1
    assert "Nothing imported: 2 bad row(s)" in result.output
    assert "line 10: order #1001" in result.output

    result = runner.invoke(args=["import-orders", str(SHOPIFY)])
    assert result.exit_code == 0
    assert "Orders: 5 created" in result.output


def test_rows_of_an_order_must_be_consecutive_and_appear_once(app, runner, tmp_path):
    lines = SHOPIFY.read_text().splitlines(keepends=True)
    # Move #1003's last line item (line 6) after #1002 (line 7).
    lines[5], lines[6] = lines[6], lines[5]
    code, out = run_json(runner, write_csv(tmp_path, "".join(lines)))

    assert code == 1
    assert out["errors"] == [
        {
            "line": 7,
            "message": "order #1003 appears again (first on line 4); the rows of one order "
            "must be consecutive and each order may appear only once",
        }
    ]


def test_json_prints_one_object_also_on_failure(app, runner, tmp_path):
    code, out = run_json(runner, tmp_path / "missing.csv")
    assert code == 1 and "Cannot read" in out["error"]
    # The usual shape too, so a script reads one kind of object: line 0 is the whole file.
    assert [out[k] for k in COUNTS] == [0] * 5
    assert out["errors"] == [{"line": 0, "message": out["error"]}]

    code, out = run_json(runner, write_csv(tmp_path, "a,b,c\n1,2,3\n"))
    assert code == 1 and "neither a Shopify orders export" in out["error"]

    code, out = run_json(runner, SHOPIFY, "--format", "xml")
    assert code == 1 and "--format" in out["error"]


def test_changed_orders_are_updated_and_their_lines_replaced(app, runner, tmp_path):
    run_json(runner, SHOPIFY)
    text = SHOPIFY.read_text()
    text = text.replace(
        ",0.00,Patchwork Crafts,0.00,,,,5512345678901",
        ",5.00,Patchwork Crafts,0.00,,,,5512345678901",
    )
    text = text.replace("Stitch Markers (pack of 20),15.00", "Stitch Markers (pack of 20),14.00")

    code, out = run_json(runner, write_csv(tmp_path, text))

    assert code == 0
    assert counts(out) == {
        "customers_created": 0,
        "customers_updated": 0,
        "orders_created": 0,
        "orders_updated": 1,
        "lines": 2,
    }
    first = order("#1001")
    assert first.refunded_cents == 500
    assert [ln.price_cents for ln in first.lines] == [1500, 1400]
    assert customer("jane@example.com").spent_cents == 5450 - 500 + 6890


# --- consent and privacy ---------------------------------------------------------------------


def test_an_import_never_overrides_a_later_unsubscribe(app, runner):
    db.session.add(
        Customer(
            email="Jane@Example.com",
            email_norm="jane@example.com",
            accepts_marketing=False,
            unsubscribed_at=datetime(2024, 3, 20, tzinfo=UTC),  # after both of Jane's orders
        )
    )
    db.session.commit()

    run_json(runner, SHOPIFY)

    jane = customer("jane@example.com")
    assert jane.accepts_marketing is False
    assert jane.consent_at is None
    assert jane.orders_count == 2


def test_newer_evidence_changes_consent_and_older_does_not(app):
    placed = datetime(2024, 5, 1, 12, tzinfo=UTC)

    def record(external_id: str, when: datetime, accepts: bool) -> OrderRecord:
        return OrderRecord(
            external_id=external_id,
            placed_at=when,
            total_cents=100,
            currency="USD",
            email="ann@example.com",
            accepts_marketing=accepts,
        )

    upsert_orders([record("A1", placed, True)], source="api")
    report = upsert_orders([record("A0", placed.replace(month=1), False)], source="api")
    ann = customer("ann@example.com")
    assert ann.accepts_marketing is True and ann.consent_at == placed
    assert report.customers_updated == 0 and report.orders_created == 1

    report = upsert_orders([record("A2", placed.replace(month=6), False)], source="webhook")
    db.session.refresh(ann)
    assert ann.accepts_marketing is False and ann.consent_source == "webhook"
    assert report.customers_updated == 1


def test_an_erased_email_stays_erased(app, runner):
    anonymous = Customer(erased_at=datetime(2024, 1, 1, tzinfo=UTC))
    db.session.add(anonymous)
    db.session.flush()
    db.session.add(
        ErasedEmail(email_hash=email_hash(" Jane@example.COM"), customer_id=anonymous.id)
    )
    db.session.commit()

    code, out = run_json(runner, SHOPIFY)

    assert code == 0 and out["customers_created"] == 2  # Bob and Carol, not Jane
    assert order("#1001").customer_id == anonymous.id
    assert order("#1003").customer_id == anonymous.id
    db.session.refresh(anonymous)
    assert anonymous.email is None and anonymous.email_norm is None
    assert anonymous.first_name is None and anonymous.city is None
    assert anonymous.accepts_marketing is False and anonymous.consent_at is None
    assert anonymous.orders_count == 2  # the shop's totals still count the orders
    assert not db.session.scalar(
        select(func.count(Customer.id)).where(func.lower(Customer.email).like("%jane%"))
    )


# --- the generic CSV --------------------------------------------------------------------------

GENERIC = """\
order_id,customer_id,email,placed_at,total,currency,refunded,cancelled_at,financial_status,accepts_marketing,first_name,last_name,city,country,sku,line_name,quantity,price
00042,00007,Mia@Example.com,2024-03-05,30.00,EUR,,,paid,yes,Mia,Rossi,Milano,IT,YARN-1,Wool,2,10.00
00042,00007,Mia@Example.com,2024-03-05,30.00,EUR,,,paid,yes,Mia,Rossi,Milano,IT,,Gift card,1,10.00
00043,00007,,2024-03-09 09:30,12.50,EUR,2.50,,partially_refunded,,,,,,,,,
00044,,mia@example.com,2024-03-10T10:00:00Z,5,EUR,,2024-03-11,voided,,,,,,PAINT-1,,,5
"""


def test_generic_csv_with_lines_and_string_ids(app, runner, tmp_path):
    code, out = run_json(runner, write_csv(tmp_path, GENERIC))

    assert code == 0, out
    assert counts(out) == {
        "customers_created": 1,
        "customers_updated": 0,
        "orders_created": 3,
        "orders_updated": 0,
        "lines": 3,
    }
    mia = db.session.scalars(select(Customer)).one()
    assert mia.external_id == "00007"  # ids are strings: the zeros stay
    # Matched trimmed and lower-cased; shown as spelled in her newest order.
    assert (mia.email, mia.email_norm) == ("mia@example.com", "mia@example.com")
    first = order("00042")
    assert (first.total_cents, first.currency) == (3000, "EUR")
    assert [(ln.sku, ln.name, ln.quantity, ln.price_cents) for ln in first.lines] == [
        ("YARN-1", "Wool", 2, 1000),
        (None, "Gift card", 1, 1000),
    ]
    assert order("00043").lines == [] and order("00043").refunded_cents == 250
    assert [(ln.sku, ln.name, ln.quantity) for ln in order("00044").lines] == [
        ("PAINT-1", "PAINT-1", 1)
    ]
    assert (mia.orders_count, mia.spent_cents) == (2, 3000 + 1000)


def test_dates_without_offset_are_shop_local_time(app, runner, tmp_path):
    set_timezone("America/New_York")

    code, out = run_json(runner, write_csv(tmp_path, GENERIC), "--format", "generic")

    assert code == 0, out
    assert order("00042").placed_at == datetime(2024, 3, 5, 5, 0, tzinfo=UTC)  # midnight EST
    assert order("00043").placed_at == datetime(2024, 3, 9, 14, 30, tzinfo=UTC)
    assert order("00044").placed_at == datetime(2024, 3, 10, 10, 0, tzinfo=UTC)  # 'Z' kept
    assert order("00044").cancelled_at == datetime(2024, 3, 11, 4, 0, tzinfo=UTC)  # EDT


def test_generic_rows_need_a_customer_and_valid_values(app, runner, tmp_path):
    text = (
        "order_id,customer_id,email,placed_at,total,quantity,price,line_name\n"
        "1,,,2024-03-05,10.00,1,10.00,A\n"
        "2,c1,,2024-03-05,1.005,1,10.00,A\n"
        "3,c1,,2024-03-05,10.00,-1,10.00,A\n"
        "4,c1,not-an-email,2024-03-05,10.00,1,10.00,A\n"
        "5,c1,,2024-03-05,10.00,1,10.00,A\n"
    )
    code, out = run_json(runner, write_csv(tmp_path, text))

    assert code == 1
    assert [e["line"] for e in out["errors"]] == [2, 3, 4, 5]
    messages = " | ".join(e["message"] for e in out["errors"])
    assert "needs a customer_id or an email" in messages
    assert "more than two decimals" in messages
    assert "quantity '-1'" in messages
    assert "not an email address" in messages
    assert db.session.scalar(select(func.count(Order.id))) == 0


# --- batches, dry runs and tasks ---------------------------------------------------------


def many_orders_csv(tmp_path: Path, orders: int = 130, customers: int = 20) -> Path:
    rows = ["order_id,email,placed_at,total,sku,line_name,quantity,price"]
    for n in range(orders):
        email = f"c{n % customers}@example.com"
        day = f"2024-01-{1 + n % 28:02d} 10:{n % 60:02d}"
        rows.append(f"O{n},{email},{day},20.00,S{n},Thing,1,10.00")
        rows.append(f"O{n},{email},{day},20.00,T{n},Other thing,1,10.00")
    return write_csv(tmp_path, "\n".join(rows) + "\n", "many.csv")


def test_a_dry_run_counts_what_the_import_then_does_and_writes_nothing(app, tmp_path):
    path = many_orders_csv(tmp_path)  # 130 orders: three batches of 50 in the test config

    preview = import_orders_file(str(path), dry_run=True)

    assert db.session.scalar(select(func.count(Order.id))) == 0
    assert db.session.scalar(select(func.count(Customer.id))) == 0
    real = import_orders_file(str(path))
    assert preview.as_dict() == real.as_dict()
    assert (real.customers_created, real.customers_updated) == (20, 0)
    assert (real.orders_created, real.lines) == (130, 260)
    totals = db.session.execute(
        select(func.sum(Customer.orders_count), func.sum(Customer.spent_cents))
    ).one()
    assert tuple(totals) == (130, 130 * 2000)
    again = import_orders_file(str(path), dry_run=True)
    assert [getattr(again, k) for k in COUNTS] == [0] * 5


def test_task_handlers_preview_then_import(app, tmp_path):
    from webapp.tasks import enqueue, run_pending

    path = shutil.copy(SHOPIFY, tmp_path / "upload.csv")
    preview = enqueue("import_orders_preview", {"path": str(path), "format": None})
    run_pending()
    db.session.refresh(preview)
    assert preview.status == "done", preview.error
    assert preview.result["orders_created"] == 5 and preview.result["bad_rows_total"] == 0
    assert preview.result["format"] == "shopify" and preview.result["imported"] is False
    assert db.session.scalar(select(func.count(Order.id))) == 0

    task = enqueue("import_orders", {"path": str(path), "format": "shopify"})
    run_pending()
    db.session.refresh(task)
    assert task.status == "done", task.error
    assert task.result["orders_created"] == 5 and task.result["imported"] is True
    assert task.progress_done == task.progress_total == 5
    assert db.session.scalar(select(func.count(Order.id))) == 5


def test_orders_match_by_shopify_id_too(app):
    placed = datetime(2024, 2, 1, tzinfo=UTC)
    upsert_orders(
        [
            OrderRecord(
                external_id="#2001",
                shopify_id="99",
                placed_at=placed,
                total_cents=500,
                currency="USD",
                lines=[LineRecord(position=0, name="Yarn", quantity=1, price_cents=500)],
            )
        ],
        source="shopify_webhook",
    )
    report = upsert_orders(
        [
            OrderRecord(
                external_id="#2001-renamed",
                shopify_id="99",
                placed_at=placed,
                total_cents=500,
                currency="USD",
                lines=[LineRecord(position=0, name="Yarn", quantity=1, price_cents=500)],
            )
        ],
        source="shopify_webhook",
    )
    assert (report.orders_created, report.orders_updated, report.lines) == (0, 1, 0)
    assert db.session.scalars(select(Order.external_id)).all() == ["#2001-renamed"]


# --- value parsers (no database) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cents"),
    [("12.50", 1250), ("12.5", 1250), ("12", 1200), (" 0.07 ", 7), ("-3.10", -310), (".5", 50)],
)
def test_money_is_exact_cents(text, cents):
    assert parse_cents(text) == cents


@pytest.mark.parametrize(
    "text", ["", "12,50", "$12", "1e3", "NaN", "1.234", "12.5.0", "١٢", "99999999999999999999"]
)
def test_bad_money_is_refused(text):
    with pytest.raises(ValueError):
        parse_cents(text)


def test_huge_numbers_are_bad_rows_with_their_line_not_a_failed_import(app, runner, tmp_path):
    path = write_csv(
        tmp_path,
        "order_id,email,placed_at,total,line_name,quantity,price\n"
        "A1,a@example.com,2024-01-02,10.00,Yarn,1,10.00\n"
        "A2,b@example.com,2024-01-02,99999999999999999999999,Yarn,1,10.00\n"
        "A3,c@example.com,2024-01-02,10.00,Yarn,99999999999999,10.00\n",
    )
    code, out = run_json(runner, path)
    assert code == 1
    assert [e["line"] for e in out["errors"]] == [3, 4]
    assert "too large" in out["errors"][0]["message"]
    assert db.session.scalar(select(func.count(Order.id))) == 0


def test_shopify_dates_and_shop_local_dates():
    parse = DateParser(ZoneInfo("Europe/Berlin"))
    assert parse("2024-03-05 14:23:11 -0500") == datetime(2024, 3, 5, 19, 23, 11, tzinfo=UTC)
    assert parse("2024-07-01") == datetime(2024, 6, 30, 22, 0, tzinfo=UTC)
    assert parse("2024-01-15 08:00") == datetime(2024, 1, 15, 7, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="is not a date"):
        parse("03/05/2024")


def test_records_start_on_their_physical_line(tmp_path):
    path = write_csv(tmp_path, 'a,b\n1,"two\nlines"\n\n3,4\r\n5,"x\r\ny"\n6,7\n')
    with open(path, newline="", encoding="utf-8") as handle:
        assert [line for line, _ in read_rows(handle)] == [1, 2, 5, 6, 8]


def test_totals_follow_cancellations_and_orders_moving_to_another_customer(app):
    placed = datetime(2024, 2, 1, tzinfo=UTC)

    def record(email: str, cancelled: datetime | None = None) -> OrderRecord:
        return OrderRecord(
            external_id="B1",
            placed_at=placed,
            total_cents=700,
            refunded_cents=200,
            currency="USD",
            email=email,
            cancelled_at=cancelled,
        )

    upsert_orders([record("ben@example.com")], source="api")
    ben = customer("ben@example.com")
    assert (ben.orders_count, ben.spent_cents, ben.last_order_at) == (1, 500, placed)

    upsert_orders([record("ben@example.com", cancelled=placed)], source="api")
    db.session.refresh(ben)
    assert (ben.orders_count, ben.spent_cents, ben.last_order_at) == (0, 0, None)

    report = upsert_orders([record("eve@example.com")], source="api")
    assert (report.customers_created, report.orders_updated) == (1, 1)
    db.session.refresh(ben)
    assert ben.orders_count == 0
    assert customer("eve@example.com").spent_cents == 500


def test_a_customer_created_concurrently_is_found_on_the_retry(app, monkeypatch):
    from webapp.imports import writer

    real_bulk_insert = writer.bulk_insert
    raced: list[str] = []

    def racing_bulk_insert(table, columns, rows):
        if table == "customers" and not raced:
            raced.append(table)  # another writer (the API) creates Kim first
            with db.engine.begin() as other:
                other.execute(
                    Customer.__table__.insert(),
                    {"email": "kim@example.com", "email_norm": "kim@example.com"},
                )
        return real_bulk_insert(table, columns, rows)

    monkeypatch.setattr(writer, "bulk_insert", racing_bulk_insert)
    report = upsert_orders(
        [
            OrderRecord(
                external_id="K1",
                placed_at=datetime(2024, 2, 1, tzinfo=UTC),
                total_cents=100,
                currency="USD",
                email="Kim@example.com",
            )
        ],
        source="api",
    )

    assert raced
    assert (report.customers_created, report.orders_created) == (0, 1)
    assert order("K1").customer_id == customer("kim@example.com").id


def customer_totals() -> dict[str, tuple]:
    rows = db.session.execute(
        select(
            Customer.email_norm, Customer.orders_count, Customer.spent_cents, Customer.last_order_at
        )
    )
    return {email: (n, spent, last) for email, n, spent, last in rows}


def expected_totals() -> dict[str, tuple]:
    """What every customer's totals must be, from their stored orders."""
    live = Order.cancelled_at.is_(None)
    rows = db.session.execute(
        select(
            Customer.email_norm,
            func.count(Order.id).filter(live),
            func.coalesce(func.sum(Order.total_cents - Order.refunded_cents).filter(live), 0),
            func.max(Order.placed_at).filter(live),
        )
        .outerjoin(Order, Order.customer_id == Customer.id)
        .group_by(Customer.id)
    )
    return {email: (n, spent, last) for email, n, spent, last in rows}


def test_totals_of_customers_whose_orders_span_batches(app, tmp_path):
    # 130 orders of 20 customers: every customer has orders in each of the three batches.
    rows = ["order_id,email,placed_at,total,refunded,cancelled_at,sku,line_name,quantity,price"]
    for n in range(130):
        cancelled = "2024-02-01" if n % 7 == 0 else ""
        rows.append(
            f"O{n},c{n % 20}@example.com,2024-01-{1 + n % 28:02d} 10:{n % 60:02d},"
            f"{n}.00,{n % 3}.00,{cancelled},S{n},Thing,1,{n}.00"
        )
    path = write_csv(tmp_path, "\n".join(rows) + "\n")

    report = import_orders_file(str(path))

    assert (report.customers_created, report.customers_updated) == (20, 0)
    assert customer_totals() == expected_totals()
    assert customer("c1@example.com").orders_count == 6  # orders 1, 21, ..., 121
    # Orders that move to another customer leave their old one's totals right too.
    moved = path.read_text().replace("O1,c1@example.com", "O1,c2@example.com")
    report = import_orders_file(str(write_csv(tmp_path, moved, "moved.csv")))
    assert (report.orders_updated, report.customers_updated) == (1, 0)
    assert customer("c1@example.com").orders_count == 5
    assert customer_totals() == expected_totals()


def test_an_interrupted_import_is_completed_by_running_it_again(app, tmp_path, monkeypatch):
    from webapp.imports.writer import OrderWriter

    path = many_orders_csv(tmp_path)  # 130 orders: three batches of 50 in the test config
    real_write = OrderWriter.write
    batches: list[int] = []

    def crash_on_the_second_batch(self, records):
        batches.append(len(records))
        if len(batches) == 2:
            raise KeyboardInterrupt
        real_write(self, records)

    monkeypatch.setattr(OrderWriter, "write", crash_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        import_orders_file(str(path))
    assert db.session.scalar(select(func.count(Order.id))) == 50
    monkeypatch.undo()

    report = import_orders_file(str(path))

    assert (report.orders_created, report.lines) == (80, 160)
    assert db.session.scalar(select(func.count(Order.id))) == 130
    assert customer_totals() == expected_totals()
    assert sum(n for n, _, _ in customer_totals().values()) == 130


def test_an_imported_order_links_the_survey_response_that_named_it_before(app):
    from tests.factories import add_survey
    from webapp.models import SurveyResponse
    from webapp.shop import get_shop
    from webapp.surveys.responses import Identity, sign_identity, start_response

    unsigned = Identity(order_ref="#1001")
    signed = Identity(order_ref="#1001", signature=sign_identity(get_shop().embed_secret, unsigned))
    start_response(db.session, add_survey(), get_shop(), identity=signed)
    db.session.commit()

    import_orders_file(str(SHOPIFY))

    response = db.session.scalar(select(SurveyResponse))
    order = db.session.scalar(select(Order).where(Order.external_id == "#1001"))
    assert (response.order_id, response.customer_id) == (order.id, order.customer_id)
