"""The browser's import flow: upload -> preview -> confirm -> progress -> result.

Nothing here reads the rows of a file: the request only stores the upload and queues a
task; the task page shows its progress and then what the file holds or what changed.
"""

from __future__ import annotations

from pathlib import Path

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from sqlalchemy import select
from wtforms import SelectField
from wtforms.fields import SelectChoice

from webapp.extensions import db, htmx
from webapp.imports import bp
from webapp.imports.uploads import (
    ALL_KINDS,
    IMPORT_KINDS,
    IMPORTS_GOOD_ROWS,
    PREVIEW_KINDS,
    NotACsv,
    bad_rows_total,
    check_csv,
    delete_upload,
    is_preview,
    save_upload,
    what_of,
)
from webapp.models import Task
from webapp.tasks import enqueue

HISTORY_SIZE = 50
BAD_ROWS_SHOWN = 1000
# Errors the importers raise for the owner to read: shown without the exception's name.
OWNER_FACING_ERRORS = ("ImportFileError: ", "ProductFileError: ")


class UploadForm(FlaskForm):
    file = FileField(
        "CSV file",
        validators=[FileRequired("Choose the CSV file to upload.")],
        render_kw={"accept": ".csv,text/csv"},
    )
    what = SelectField(
        "The file holds",
        choices=[SelectChoice("orders", "Orders"), SelectChoice("products", "Products")],
    )
    format = SelectField(
        "Format",
        choices=[
            SelectChoice("auto", "Recognise from the header row"),
            SelectChoice("shopify", "Shopify export"),
            SelectChoice("generic", "Generic CSV"),
        ],
    )


@bp.route("/", methods=["GET", "POST"])
def index():
    form = UploadForm()
    if form.validate_on_submit():
        try:
            check_csv(form.file.data.stream)
        except NotACsv as exc:
            form.file.errors.append(str(exc))
        else:
            remove_imported_files()
            upload_id, path = save_upload(form.file.data, current_app.config["UPLOAD_DIR"])
            params = {
                "path": str(path),
                "format": None if form.format.data == "auto" else form.format.data,
                "upload_id": upload_id,
                "filename": Path(form.file.data.filename or "upload.csv").name,
                "what": form.what.data,
            }
            task = enqueue(PREVIEW_KINDS[form.what.data], params, key=f"preview:{upload_id}")
            return redirect(url_for("imports.task", task_id=task.id), 303)
    history = db.session.scalars(
        select(Task).where(Task.kind.in_(ALL_KINDS)).order_by(Task.id.desc()).limit(HISTORY_SIZE)
    ).all()
    return render_template("imports/index.html", form=form, history=history)


def remove_imported_files() -> None:
    """Delete the files of finished imports; a running one may still need its file."""
    finished = db.session.scalars(
        select(Task)
        .where(Task.kind.in_(IMPORT_KINDS.values()), Task.status == "done")
        .order_by(Task.id.desc())
        .limit(HISTORY_SIZE)
    )
    for task in finished:
        delete_upload(task.params["path"], current_app.config["UPLOAD_DIR"])


def import_task_or_404(task_id: int) -> Task:
    task = db.session.get(Task, task_id)
    if task is None or task.kind not in ALL_KINDS:
        abort(404)
    return task


def import_of(preview: Task) -> Task | None:
    """The import the owner started from this preview, if any."""
    key = f"import:{preview.params.get('upload_id')}"
    return db.session.scalar(select(Task).where(Task.key == key))


@bp.route("/<int:task_id>")
def task(task_id: int):
    task = import_task_or_404(task_id)
    result = task.result or {}
    context = {
        "task": task,
        "what": what_of(task),
        "preview": is_preview(task),
        "result": result,
        "bad_rows": (result.get("errors") or [])[:BAD_ROWS_SHOWN],
        "bad_rows_total": bad_rows_total(result),
        "started_import": import_of(task) if is_preview(task) else None,
        "cancelled": bool(task.params.get("cancelled")),
        "imports_good_rows": IMPORTS_GOOD_ROWS[what_of(task)],
        "poll_url": url_for("imports.task", task_id=task.id),
        "error": owner_facing(task.error),
    }
    # The progress component polls this URL: answer with it while the task runs, then with
    # the outcome, which replaces it and so ends the polling.
    if htmx and htmx.target == f"task-{task.id}-progress":
        return render_template("imports/_task_body.html", **context)
    return render_template("imports/task.html", **context)


def owner_facing(error: str | None) -> str | None:
    for prefix in OWNER_FACING_ERRORS:
        if error and error.startswith(prefix):
            return error.removeprefix(prefix)
    return error


@bp.post("/<int:task_id>/confirm")
def confirm(task_id: int):
    preview = import_task_or_404(task_id)
    back = redirect(url_for("imports.task", task_id=preview.id), 303)
    if not is_preview(preview) or preview.status != "done":
        flash("Only a finished preview can be imported.", "error")
        return back
    if (started := import_of(preview)) is not None:
        return redirect(url_for("imports.task", task_id=started.id), 303)
    if preview.params.get("cancelled") or not Path(preview.params["path"]).exists():
        flash("This upload was cancelled. Upload the file again to import it.", "error")
        return redirect(url_for("imports.index"), 303)
    skip_bad_rows = request.form.get("skip_bad_rows") == "1"
    if bad_rows_total(preview.result) and not skip_bad_rows:
        flash("This file has bad rows: choose to import only the good rows.", "error")
        return back
    if skip_bad_rows and not IMPORTS_GOOD_ROWS[what_of(preview)]:
        flash("A products file imports only when every row is good.", "error")
        return back
    params = {**preview.params, "skip_bad_rows": skip_bad_rows, "preview_task_id": preview.id}
    # The key makes a second submit (a double click, a resent form) find the same import.
    task = enqueue(
        IMPORT_KINDS[what_of(preview)], params, key=f"import:{preview.params['upload_id']}"
    )
    return redirect(url_for("imports.task", task_id=task.id), 303)


@bp.post("/<int:task_id>/cancel")
def cancel(task_id: int):
    preview = import_task_or_404(task_id)
    if not is_preview(preview) or not preview.finished:
        flash("Only a finished preview can be cancelled.", "error")
        return redirect(url_for("imports.task", task_id=preview.id), 303)
    if (started := import_of(preview)) is not None:
        flash("This file is being imported already.", "error")
        return redirect(url_for("imports.task", task_id=started.id), 303)
    delete_upload(preview.params["path"], current_app.config["UPLOAD_DIR"])
    preview.params = {**preview.params, "cancelled": True}
    db.session.commit()
    flash(f"Cancelled: nothing from {preview.params.get('filename')} was imported.", "success")
    return redirect(url_for("imports.index"), 303)
