"""`patchwork import-orders FILE`: the command-line face of webapp.imports.service."""

from __future__ import annotations

import sys

import click

from webapp.cli import CommandError, emit_json, json_errors, needs_database
from webapp.imports.records import ImportReport, RowError

# The command line lists every bad row, within reason.
MAX_CLI_ERRORS = 100_000


@click.command("import-orders")
@click.argument("file")
@click.option(
    "--format",
    "fmt",
    default=None,
    metavar="shopify|generic",
    help="The file's format; by default its header decides.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--skip-bad-rows", is_flag=True, help="Import the good rows of a file that has bad ones."
)
@json_errors
@needs_database
def import_orders_command(file: str, fmt: str | None, as_json: bool, skip_bad_rows: bool) -> None:
    """Import an orders CSV: Shopify's orders export or a generic orders CSV.

    The whole file is checked first: with bad rows nothing is imported (exit code 1)
    unless --skip-bad-rows is given. Importing the same file again changes nothing.
    """
    from webapp.imports.csvutil import ImportFileError
    from webapp.imports.service import import_orders_file

    if fmt is not None and fmt not in ("shopify", "generic"):
        raise CommandError(f"--format must be shopify or generic, not {fmt!r}")
    try:
        report = import_orders_file(
            file, fmt=fmt, skip_bad_rows=skip_bad_rows, max_errors=MAX_CLI_ERRORS
        )
    except ImportFileError as exc:
        if not as_json:
            raise CommandError(str(exc)) from None
        # The same object as ever, so scripts read one shape: line 0 is the file as a whole.
        emit_json(_summary(ImportReport(errors=[RowError(0, str(exc))])) | {"error": str(exc)})
        sys.exit(1)
    refused = bool(report.bad_rows_total) and not skip_bad_rows
    if as_json:
        emit_json(_summary(report))
    else:
        if refused:
            click.echo(
                f"Nothing imported: {report.bad_rows_total} bad row(s). Fix them, or import "
                "only the good rows with --skip-bad-rows."
            )
        else:
            click.echo(
                f"Customers: {report.customers_created} created, {report.customers_updated} "
                f"updated. Orders: {report.orders_created} created, {report.orders_updated} "
                f"updated. Lines: {report.lines} created."
                + (f" Skipped {report.bad_rows_total} bad row(s)." if report.bad_rows_total else "")
            )
        for error in report.errors:
            click.echo(f"line {error.line}: {error.message}", err=True)
        if len(report.errors) < report.bad_rows_total:
            click.echo(f"... and {report.bad_rows_total - len(report.errors)} more", err=True)
    if refused:
        sys.exit(1)


def _summary(report: ImportReport) -> dict:
    return {
        "customers_created": report.customers_created,
        "customers_updated": report.customers_updated,
        "orders_created": report.orders_created,
        "orders_updated": report.orders_updated,
        "lines": report.lines,
        "errors": [{"line": e.line, "message": e.message} for e in report.errors],
    }
