"""Uploaded CSV files waiting for their preview and import, and the tasks that read them.

A browser import is two tasks on one uploaded file: a dry run (the preview) and, once the
owner confirms, the import itself. The file lives in UPLOAD_DIR under a random name until
the import has run or the owner cancels.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import IO

from werkzeug.datastructures import FileStorage

# The handlers of the import kinds register themselves when imported: wherever the import
# pages are served, the runner can run what they queue.
from webapp.imports import products, service  # noqa: F401
from webapp.models import Task
from webapp.tasks import Progress, handler

PREVIEW_KINDS = {"orders": "import_orders_preview", "products": "import_products_preview"}
IMPORT_KINDS = {"orders": "import_orders", "products": "import_products"}
ALL_KINDS = (*PREVIEW_KINDS.values(), *IMPORT_KINDS.values())
# Whether the importer can leave a file's bad rows out; a products file imports only whole.
IMPORTS_GOOD_ROWS = {"orders": True, "products": False}

# Enough to see the header row of any real export, small enough to read in the request.
SNIFF_BYTES = 64 * 1024
# Binary formats owners upload by mistake instead of exporting CSV.
BINARY_SIGNATURES = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0", b"%PDF", b"\x1f\x8b")


class NotACsv(ValueError):
    """The upload is not something the CSV importers can read; the message says why."""


def check_csv(stream: IO[bytes]) -> None:
    """Look at the start of an uploaded file (then rewind it); raise NotACsv if it is no CSV.

    Only the start is read: the rows themselves are validated by the preview task.
    """
    head = stream.read(SNIFF_BYTES)
    stream.seek(0)
    if not head.strip():
        raise NotACsv("The file is empty.")
    if head.startswith(BINARY_SIGNATURES) or b"\x00" in head:
        raise NotACsv(
            "This is not a CSV file (it looks like a spreadsheet or another binary file). "
            "Export the data as CSV and upload that."
        )
    header = head.removeprefix(b"\xef\xbb\xbf").lstrip().splitlines()[0]
    if b"," not in header:
        raise NotACsv(
            "This does not look like a CSV file: its first line should be the header row, "
            "with column names separated by commas."
        )


def save_upload(upload: FileStorage, upload_dir: str | Path) -> tuple[str, Path]:
    """Stream the upload to disk under a fresh id; returns (upload_id, path)."""
    directory = Path(upload_dir)
    directory.mkdir(parents=True, exist_ok=True)
    upload_id = uuid.uuid4().hex
    path = directory / f"{upload_id}.csv"
    upload.save(path)
    return upload_id, path


def delete_upload(path: str | Path, upload_dir: str | Path) -> None:
    """Remove an uploaded file; only ever inside the upload directory."""
    path = Path(path).resolve()
    if path.parent == Path(upload_dir).resolve():
        path.unlink(missing_ok=True)


def is_preview(task: Task) -> bool:
    return task.kind in PREVIEW_KINDS.values()


def what_of(task: Task) -> str:
    """What the task's file holds: "orders" or "products"."""
    kinds = PREVIEW_KINDS if is_preview(task) else IMPORT_KINDS
    return next(what for what, kind in kinds.items() if kind == task.kind)


def bad_rows_total(result: dict | None) -> int:
    """How many bad rows a report found, also when it lists only the first ones."""
    if not result:
        return 0
    return max(result.get("bad_rows_total") or 0, len(result.get("errors") or []))


@handler("import_products_preview")
def preview_products(task: Task, progress: Progress) -> dict:
    """The products dry run: what importing the file would change, and its bad rows."""
    return products.import_products_file(
        task.params["path"], fmt=task.params.get("format"), dry_run=True
    )
