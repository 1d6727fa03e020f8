"""Pass 1 of an orders import: read the whole file, validate every order, spool the good ones.

A big file is checked in two halves at once, on two processes: this one reads the first
half while a helper process reads the second. Parsing is most of pass 1 and pure Python,
so the halves take half the time on two cores.

Where the second half starts is found from the file's bytes: an even number of quote
characters before a line break makes it the end of a record (RFC 4180), and the half
starts at the first record whose order key (Shopify's Name, the generic order_id) differs
from the one before, so no order is cut in two. Nothing here has to be trusted for the
result to be right: this process reads on from the start of the file as if alone, and
stops at the helper's first record only if it finds a record starting on that very line,
with another order than the one before it, and the helper saw no order this half saw too.
Otherwise (a stray quote the csv module reads literally, an order repeated across the
halves, the helper failing) it reads on to the end itself, and reports exactly what a
single reader would. The halves' line numbers are the file's own.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import IO, NamedTuple

from webapp.imports.csvutil import Columns, read_rows
from webapp.imports.matching import FileTotals
from webapp.imports.records import OrderRecord, RowError
from webapp.imports.spool import OrderSpool

# Below this size a helper process costs more than it saves.
PARALLEL_MIN_BYTES = 32 * 1024 * 1024
PROGRESS_EVERY = 5000  # orders between two progress reports
_CHUNK = 16 * 1024 * 1024
_WINDOW = 1024 * 1024  # how far past the middle a split is looked for

ParseFn = Callable[..., Iterator[OrderRecord | RowError]]


@dataclass
class Checked:
    """What pass 1 found in (a part of) a file."""

    orders: int = 0
    lines: int = 0
    errors: list[RowError] = field(default_factory=list)
    bad_rows_total: int = 0  # ``errors`` may hold only the first of them

    def add(self, other: Checked, max_errors: int) -> None:
        self.orders += other.orders
        self.lines += other.lines
        self.errors.extend(other.errors[: max(0, max_errors - len(self.errors))])
        self.bad_rows_total += other.bad_rows_total


class Split(NamedTuple):
    offset: int  # the byte at which the second half's first record starts
    line: int  # the physical line it starts on (the header is line 1)


def check_orders(
    items: Iterable[OrderRecord | RowError],
    spool: OrderSpool,
    totals: FileTotals | None,
    max_errors: int,
    progress: Callable[[int], None] | None = None,
) -> Checked:
    """Spool the good orders, count them, keep the errors (the first ``max_errors``)."""
    checked = Checked()
    for item in items:
        if isinstance(item, RowError):
            checked.bad_rows_total += 1
            if len(checked.errors) < max_errors:
                checked.errors.append(item)
            continue
        spool.add(item)
        if totals is not None:
            totals.add(item)
        checked.orders += 1
        checked.lines += len(item.lines)
        if progress is not None and checked.orders % PROGRESS_EVERY == 0:
            progress(checked.orders)
    return checked


class FileCheck:
    """Pass 1 of one file; afterwards, batches() hands its good orders to pass 2 in the
    file's order. Use in a with block: it owns the spools and the helper process."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.spool = OrderSpool(batch_size)
        self._tmpdir: str | None = None
        self._second: _SecondHalf | None = None
        self._second_spool: str | None = None

    def __enter__(self) -> FileCheck:
        return self

    def __exit__(self, *exc) -> None:
        if self._second is not None:
            self._second.stop()
        self.spool.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def run(
        self,
        path: str,
        handle: IO[str],
        rows: Iterator[tuple[int, list[str]]],
        header: list[str],
        parse: ParseFn,
        key: str,
        tz: tzinfo,
        currency: str,
        totals: FileTotals | None,
        max_errors: int,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> Checked:
        """Check the rest of ``rows`` (the header read already), in two halves if it pays."""
        size = os.path.getsize(path)
        key_column = Columns(header)[key]
        split = None
        if size >= PARALLEL_MIN_BYTES and _cpus() > 1:
            split = find_split(path, size, key_column)
        end = size
        seen: dict[str, int] = {}
        if split is not None:
            self._tmpdir = tempfile.mkdtemp(prefix="patchwork-import-")
            self._second_spool = os.path.join(self._tmpdir, "second-half")
            self._second = _SecondHalf(
                (path, split, header, parse, tz, currency, self.batch_size),
                (self._second_spool, totals is not None, max_errors),
            )
            rows = self._second.rows_until(rows, split.line, key_column, seen)
            end = split.offset

        def report(orders: int) -> None:
            if progress is not None:
                done = min(handle.buffer.tell(), end)
                progress(done * size // end, size, f"Checked {orders:,} orders")

        checked = check_orders(
            parse(header, rows, tz, currency, seen), self.spool, totals, max_errors, report
        )
        second = self._second.result if self._second is not None else None
        if second is None:
            self._second_spool = None
            return checked
        self._second.result = None  # its keys (a few dozen MB) are of no more use
        checked.add(second.checked, max_errors)
        if totals is not None and second.totals is not None:
            totals.merge(second.totals)
        return checked

    def batches(self) -> Iterator[list[OrderRecord]]:
        yield from self.spool.batches()
        if self._second_spool is not None:
            with OrderSpool(self.batch_size, self._second_spool) as second:
                yield from second.batches()


def find_split(path: str, size: int, key_column: int) -> Split | None:
    """Where a second half of the file could start, near its middle; None if nowhere
    (no record boundary between two orders within _WINDOW bytes, or line breaks that are
    not all \\n or \\r\\n, which the line count below would not match)."""
    middle = size // 2
    quotes = newlines = 0
    with open(path, "rb") as file:
        position = 0
        while position < middle:
            chunk = file.read(min(_CHUNK, middle - position))
            if not chunk:
                return None
            quotes += chunk.count(b'"')
            newlines += chunk.count(b"\n")
            if chunk.count(b"\r") != chunk.count(b"\r\n"):
                return None  # a lone \r (or \r\n cut by the chunk's end): do not guess
            position += len(chunk)
        window = file.read(_WINDOW)
    if window.count(b"\r") != window.count(b"\r\n"):
        return None
    # The first line break after the middle with an even number of quotes before it ends a
    # record; from there, whole records, each ended by such a line break.
    records: list[tuple[int, int, bytes]] = []  # (offset in window, line, record's bytes)
    start = None
    record_quotes = 0
    line = newlines + 1  # the line on which window[0] lies
    cursor = 0
    while (end := window.find(b"\n", cursor)) != -1:
        piece = window[cursor : end + 1]
        record_quotes += piece.count(b'"')
        cursor = end + 1
        line += 1
        if start is None:
            if (quotes + record_quotes) % 2 == 0:
                start, record_quotes = (cursor, line), 0
            continue
        if record_quotes % 2 == 0:
            records.append((start[0], start[1], window[start[0] : cursor]))
            start, record_quotes = (cursor, line), 0
            if len(records) >= 2 and _key(records[-1], key_column) != _key(records[-2], key_column):
                offset, line_no, _ = records[-1]
                return Split(middle + offset, line_no)
    return None


def _key(record: tuple[int, int, bytes], key_column: int) -> str | None:
    try:
        row = next(csv.reader(io.StringIO(record[2].decode("utf-8"), newline="")), [])
    except (UnicodeDecodeError, csv.Error):
        return None
    return _row_key(row, key_column)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _context() -> multiprocessing.context.BaseContext:
    """A process that runs only this thread forks (instant; the child only parses); one
    with others (the scheduler's task runner, a threaded server) starts a fresh
    interpreter, as forking a thread's locks is unsafe."""
    single = threading.active_count() == 1 and hasattr(os, "fork")
    return multiprocessing.get_context("fork" if single else "spawn")


@dataclass
class _HalfResult:
    checked: Checked
    totals: FileTotals | None
    keys: set[str]  # every order key the half met


class _SecondHalf:
    """The helper process checking the second half, and the first half's side of it."""

    def __init__(self, job: tuple, output: tuple):
        context = _context()
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_check_second_half, args=(send, job, output), daemon=True
        )
        self._process.start()
        send.close()  # ours; so that recv() ends if the helper dies
        self.result: _HalfResult | None = None

    def rows_until(
        self,
        rows: Iterator[tuple[int, list[str]]],
        line: int,
        key_column: int,
        seen: dict[str, int],
    ) -> Iterator[tuple[int, list[str]]]:
        """``rows`` up to the second half's first record, if the halves agree (see the
        module's docstring); otherwise all of them."""
        previous: list[str] | None = None
        for start, row in rows:
            if start >= line:
                break
            previous = row
            yield start, row
        else:
            self.stop()
            return
        key = _row_key(row, key_column)
        if start == line and previous is not None and key != _row_key(previous, key_column):
            result = self._wait()
            # ``seen`` holds the first half's orders but the last, which is still open.
            if result is not None and not (
                result.keys & seen.keys() or _row_key(previous, key_column) in result.keys
            ):
                self.result = result
                return
        self.stop()
        yield start, row
        yield from rows

    def _wait(self) -> _HalfResult | None:
        try:
            outcome = self._receive.recv()
        except (EOFError, OSError):
            outcome = None
        self._process.join()
        return outcome if isinstance(outcome, _HalfResult) else None

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._receive.close()


def _row_key(row: list[str], key_column: int) -> str:
    return row[key_column].strip() if key_column < len(row) else ""


def _check_second_half(send, job: tuple, output: tuple) -> None:
    """In the helper process: check the file from the split on, spool the good orders."""
    path, split, header, parse, tz, currency, batch_size = job
    spool_path, want_totals, max_errors = output
    try:
        totals = FileTotals() if want_totals else None
        seen: dict[str, int] = {}
        with open(path, "rb") as raw, OrderSpool(batch_size, spool_path) as spool:
            raw.seek(split.offset)
            handle = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            rows = read_rows(handle, first_line=split.line)
            items = parse(header, rows, tz, currency, seen)
            checked = check_orders(items, spool, totals, max_errors)
            spool.flush()
        result: object = _HalfResult(checked, totals, set(seen))
    except Exception as exc:  # the first half reads on alone; it reports any real error
        result = repr(exc)
    send.send(result)
    send.close()
