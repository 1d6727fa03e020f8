"""Importing an orders CSV: validate the whole file, then write it in short batches.

Pass 1 (webapp.imports.checking) reads the file once, parses and validates every order,
and spools the normalised records to a temporary file (webapp.imports.spool), a big file
in two halves at once; nothing is written while it runs, so a file with bad rows imports
nothing. Pass 2 reads the spool back and
hands batch after batch to the one writer, each batch its own short transaction, so other
writers (survey answers, the API) are never blocked for long. Memory stays flat whatever
the file's size. An import that is interrupted is completed by running it again: the
writer's upserts are idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo

from flask import current_app

from webapp.imports.checking import FileCheck
from webapp.imports.csvutil import ImportFileError, detect_format, open_text, read_rows
from webapp.imports.generic import parse_generic
from webapp.imports.matching import FileTotals
from webapp.imports.records import ImportReport
from webapp.imports.shopify import parse_shopify
from webapp.imports.writer import OrderWriter
from webapp.tasks import handler

# Each format's parser, and the column that tells its orders apart.
FORMATS = {"shopify": (parse_shopify, "name"), "generic": (parse_generic, "order_id")}
MAX_STORED_ERRORS = 1000

ProgressFn = Callable[..., None]


def import_orders_file(
    path: str,
    fmt: str | None = None,
    skip_bad_rows: bool = False,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
    max_errors: int = MAX_STORED_ERRORS,
) -> ImportReport:
    """Import (or with dry_run, preview) an orders CSV; see run_import."""
    return run_import(path, fmt, skip_bad_rows, dry_run, progress, max_errors)[0]


def run_import(
    path: str,
    fmt: str | None = None,
    skip_bad_rows: bool = False,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
    max_errors: int = MAX_STORED_ERRORS,
    tz: tzinfo | None = None,
    currency: str | None = None,
) -> tuple[ImportReport, dict]:
    """The report, and facts about the file for the preview page: its format, how many
    good orders and lines it holds, and whether anything was written.

    With bad rows and neither skip_bad_rows nor dry_run nothing is written. Raises
    ImportFileError when the file as a whole cannot be read (missing, unknown header, ...).
    """
    if tz is None or currency is None:
        from webapp.shop import get_shop, shop_timezone

        tz = tz or shop_timezone()
        currency = currency or get_shop().currency
    if fmt is not None and fmt not in FORMATS:
        raise ImportFileError(f"Unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
    try:
        handle = open_text(path)
    except OSError as exc:
        raise ImportFileError(f"Cannot read {path}: {exc.strerror or exc}") from None
    report = ImportReport()
    batch_size = current_app.config["IMPORT_BATCH_SIZE"]
    info = {"format": fmt, "orders_in_file": 0, "lines_in_file": 0, "imported": False}
    with handle, FileCheck(batch_size) as check:
        rows = read_rows(handle)
        first = next(rows, None)
        if first is None:
            raise ImportFileError("The file is empty.")
        header = first[1]
        fmt = fmt or detect_format(header)
        info["format"] = fmt
        parse, key = FORMATS[fmt]

        # Pass 1: validate everything, spool the good orders.
        file_totals = None if dry_run else FileTotals()
        checked = check.run(
            path, handle, rows, header, parse, key, tz, currency, file_totals, max_errors, progress
        )
        report.errors, report.bad_rows_total = checked.errors, checked.bad_rows_total
        orders = info["orders_in_file"] = checked.orders
        info["lines_in_file"] = checked.lines
        if report.bad_rows_total and not (skip_bad_rows or dry_run):
            return report, info

        # Pass 2: write (or count) in short transactions.
        writer = OrderWriter(
            f"{fmt}_csv",
            report=report,
            dry_run=dry_run,
            relaxed_commit=True,
            file_totals=file_totals,
        )
        done = 0
        if progress is not None:
            progress(0, orders, "Previewing orders" if dry_run else "Writing orders")
        for batch in check.batches():
            writer.write(batch)
            done += len(batch)
            if progress is not None:
                progress(done, orders, f"{'Previewed' if dry_run else 'Wrote'} {done:,} orders")
        if not dry_run:
            if progress is not None:
                progress(orders, orders, "Updating customer totals")
            writer.finish(batch_size)
            link_survey_responses()
        info["imported"] = not dry_run
    return report, info


def link_survey_responses() -> None:
    """Survey responses that named an order not imported yet are linked now it is here."""
    from webapp.extensions import db
    from webapp.shop import get_shop
    from webapp.surveys.responses import link_pending_responses

    if link_pending_responses(db.session, get_shop()):
        db.session.commit()


def _task_result(report: ImportReport, info: dict) -> dict:
    return report.as_dict() | info


@handler("import_orders_preview")
def preview_task(task, progress) -> dict:
    """Dry run of an uploaded file, for the preview page. params: path, format."""
    params = task.params
    report, info = run_import(params["path"], params.get("format"), dry_run=True, progress=progress)
    return _task_result(report, info)


@handler("import_orders")
def import_task(task, progress) -> dict:
    """Import an uploaded file. params: path, format, skip_bad_rows. With bad rows and no
    skip_bad_rows the result says imported: false and nothing is written."""
    params = task.params
    report, info = run_import(
        params["path"],
        params.get("format"),
        skip_bad_rows=bool(params.get("skip_bad_rows")),
        progress=progress,
    )
    return _task_result(report, info)
