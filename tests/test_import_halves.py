"""Pass 1 of an orders import in two halves (webapp.imports.checking): whatever the file,
the halves find exactly what one reader finds, and where they cannot agree, this process
reads on alone."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.imports import checking
from webapp.imports.csvutil import ImportFileError, open_text, read_rows
from webapp.imports.matching import FileTotals
from webapp.imports.records import OrderRecord
from webapp.imports.service import FORMATS, import_orders_file
from webapp.models import Customer, Order

TZ = ZoneInfo("Europe/Paris")
HEADER = "order_id,email,placed_at,total,sku,line_name,quantity,price,tags"


def orders_csv(tmp_path: Path, orders: int = 400, customers: int = 60, extra=None) -> Path:
    """A generic orders CSV; two lines per order, a quoted field spanning lines now and
    then. ``extra(n)`` may return rows to write in place of order n's."""
    rows = [HEADER]
    for n in range(orders):
        custom = extra(n) if extra else None
        if custom is not None:
            rows.extend(custom)
            continue
        email = f"c{n % customers}@example.com"
        day = f"2024-{1 + n % 12:02d}-{1 + n % 28:02d} 10:{n % 60:02d}"
        tags = '"gift,\nwrapped ""nicely"""' if n % 7 == 0 else "plain"
        rows.append(f"O{n},{email},{day},{20 + n % 5}.00,S{n},Thing,1,10.00,{tags}")
        rows.append(f"O{n},{email},{day},{20 + n % 5}.00,T{n},Other,2,5.00,{tags}")
    path = tmp_path / "orders.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def check(path: Path, max_errors: int = 1000):
    """Pass 1 of the file: (what it found, its good orders, the customers' totals, whether
    the halves agreed)."""
    parse, key = FORMATS["generic"]
    totals = FileTotals()
    with open_text(str(path)) as handle, checking.FileCheck(50) as file_check:
        rows = read_rows(handle)
        header = next(rows)[1]
        checked = file_check.run(
            str(path), handle, rows, header, parse, key, TZ, "EUR", totals, max_errors
        )
        records = [r for batch in file_check.batches() for r in batch]
        return checked, records, vars(totals), file_check._second_spool is not None


@pytest.fixture
def halves(monkeypatch):
    """Every file is split, on any machine."""
    monkeypatch.setattr(checking, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(checking, "_cpus", lambda: 2)


def line_of(path: Path, text: bytes) -> int:
    data = path.read_bytes()
    return data[: data.index(text)].count(b"\n") + 1


def same_as_one_reader(path: Path, monkeypatch, agreed: bool | None = True):
    with monkeypatch.context() as serial:
        serial.setattr(checking, "PARALLEL_MIN_BYTES", 1 << 60)
        alone = check(path)
    split = check(path)
    if agreed is not None:
        assert split[3] is agreed
    assert split[:3] == alone[:3]
    return split[0]


def test_the_halves_find_what_one_reader_finds(tmp_path, halves, monkeypatch):
    path = orders_csv(tmp_path)

    checked = same_as_one_reader(path, monkeypatch)

    assert (checked.orders, checked.lines, checked.errors) == (400, 800, [])


def test_bad_rows_in_either_half_keep_the_file_s_line_numbers(tmp_path, halves, monkeypatch):
    def bad(n):
        if n in (5, 390):
            return [f"O{n},c@example.com,yesterday,20.00,S,Thing,1,10.00,x"]
        return None

    path = orders_csv(tmp_path, extra=bad)

    checked = same_as_one_reader(path, monkeypatch)

    assert [e.line for e in checked.errors] == [line_of(path, b"O5,c@"), line_of(path, b"O390,c@")]
    assert checked.bad_rows_total == 2


def test_an_order_in_both_halves_is_reported_as_one_reader_reports_it(
    tmp_path, halves, monkeypatch
):
    again = ["O3,c@example.com,2024-05-05,20.00,S,Thing,1,10.00,x"]

    path = orders_csv(tmp_path, extra=lambda n: again if n == 350 else None)

    checked = same_as_one_reader(path, monkeypatch, agreed=False)

    assert len(checked.errors) == 1
    assert checked.errors[0].line == line_of(path, b"O3,c@")
    first = line_of(path, b"O3,")
    assert f"order O3 appears again (first on line {first})" in checked.errors[0].message


@pytest.mark.parametrize("where", ["inside an order", "inside a quoted field"])
def test_a_wrong_split_is_noticed_and_read_alone(tmp_path, halves, monkeypatch, where):
    path = orders_csv(tmp_path)
    data = path.read_bytes()
    if where == "inside an order":  # the second line of order O200
        offset = data.index(b"\nO200,", data.index(b"\nO200,") + 1) + 1
    else:  # the second line of the multi-line tags on O203's last row (O204 follows)
        offset = data.index(b"wrapped", data.index(b"\nO203,", data.index(b"\nO203,") + 1))
        offset = data.rindex(b"\n", 0, offset) + 1
    line = data[:offset].count(b"\n") + 1
    monkeypatch.setattr(checking, "find_split", lambda *a: checking.Split(offset, line))

    same_as_one_reader(path, monkeypatch, agreed=False)


def test_stray_quotes_never_change_what_is_read(tmp_path, halves, monkeypatch):
    """A quote inside an unquoted field is a literal to the csv module but throws the
    quote count off; wherever the split then lands, the result is one reader's."""
    rng = random.Random(7)
    for attempt in range(6):
        stray = set(rng.sample(range(400), 3))

        def with_stray(n, stray=stray):
            if n in stray:
                return [f'O{n},s@example.com,2024-02-02,20.00,S{n},5" ruler,1,10.00,x']
            return None

        folder = tmp_path / str(attempt)
        folder.mkdir()
        same_as_one_reader(orders_csv(folder, extra=with_stray), monkeypatch, agreed=None)


def test_a_file_the_helper_cannot_read_fails_as_for_one_reader(tmp_path, halves):
    path = orders_csv(tmp_path)
    data = path.read_bytes()
    cut = data.index(b"\nO300,") + 1
    path.write_bytes(data[:cut] + b"O300,x@example.com,2024-01-01,\xff\xfe,S,T,1,1,x\n")

    with pytest.raises(ImportFileError, match="not UTF-8"):
        check(path)


def test_a_threaded_process_starts_a_fresh_interpreter(tmp_path, halves, monkeypatch):
    monkeypatch.setattr(checking, "_context", lambda: checking.multiprocessing.get_context("spawn"))

    checked = same_as_one_reader(orders_csv(tmp_path), monkeypatch)

    assert checked.orders == 400


def test_file_totals_of_two_halves_add_up():
    def record(email, cents, day, cancelled=None):
        placed = datetime(2024, 1, day, tzinfo=UTC)
        return OrderRecord("x", placed, cents, "EUR", email=email, cancelled_at=cancelled)

    first, second = FileTotals(), FileTotals()
    first.add(record("a@x.org", 1000, 3))
    second.add(record("A@x.org ", 500, 2))
    second.add(record("a@x.org", 700, 9, cancelled=datetime(2024, 1, 10, tzinfo=UTC)))
    second.add(record("b@x.org", 200, 1))

    first.merge(second)

    assert first.get(None, "a@x.org") == (2, 1500, datetime(2024, 1, 3, tzinfo=UTC))
    assert first.get(None, "b@x.org") == (1, 200, datetime(2024, 1, 1, tzinfo=UTC))


def test_an_import_in_halves_writes_every_order_once(app, tmp_path, halves):
    path = orders_csv(tmp_path)

    report = import_orders_file(str(path))

    assert (report.orders_created, report.lines, report.customers_created) == (400, 800, 60)
    assert report.customers_updated == 0  # inserted with their totals over both halves
    assert db.session.scalar(select(func.count(Order.id))) == 400
    totals = db.session.execute(
        select(func.sum(Customer.orders_count), func.sum(Customer.spent_cents))
    ).one()
    assert tuple(totals) == (400, sum((20 + n % 5) * 100 for n in range(400)))
    again = import_orders_file(str(path))
    assert (again.orders_created, again.orders_updated, again.customers_updated) == (0, 0, 0)
