"""`patchwork refresh` and `patchwork export-profiles`."""

from __future__ import annotations

from datetime import date

import click

from webapp.cli import CommandError, emit_json, json_errors, needs_database


def parse_as_of(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--as-of must be a date like 2025-06-30, not {text!r}") from None


def run_summary(run) -> dict:
    return {
        "run_id": run.id,
        "status": run.status,
        "trigger": run.trigger,
        "as_of": run.as_of.isoformat(),
        "duration_ms": run.duration_ms,
        "counts": run.counts,
        "movement": run.movement,
        "error": run.error,
    }


@click.command("refresh")
@click.option("--as-of", "as_of", metavar="YYYY-MM-DD", help="Default: today in the shop's zone.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@json_errors
@needs_database
def refresh_command(as_of: str | None, as_json: bool) -> None:
    """Recompute every customer's profile (RFM, lifecycle, traits, behaviours).

    Orders placed after the as-of day are ignored. The previous results stay live until the
    run has finished; a failed run leaves them in place. Two runs never overlap.
    """
    from webapp.extensions import db
    from webapp.models import RefreshRun
    from webapp.segmentation.refresh import RefreshBusy, run_refresh

    day = parse_as_of(as_of)
    try:
        run = run_refresh(as_of=day, trigger="cli")
    except RefreshBusy as exc:
        raise CommandError(str(exc)) from None
    except Exception as exc:
        db.session.rollback()
        failed = db.session.scalar(
            db.select(RefreshRun)
            .where(RefreshRun.status == "failed")
            .order_by(RefreshRun.id.desc())
        )
        where = f" (run {failed.id}, recorded as failed)" if failed else ""
        raise CommandError(f"The refresh failed{where}: {exc}") from exc
    if as_json:
        emit_json(run_summary(run))
        return
    counts = run.counts or {}
    click.echo(
        f"Refreshed {counts.get('customers', 0)} customers "
        f"({counts.get('with_orders', 0)} with orders) as of {run.as_of} "
        f"in {run.duration_ms / 1000:.1f} s (run {run.id})."
    )
    for name, n in sorted((counts.get("rfm_segments") or {}).items(), key=lambda kv: -kv[1]):
        click.echo(f"  {name or '(no segment)'}: {n}")


@click.command("export-profiles")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option("--output", type=click.Path(dir_okay=False, writable=True), help="Default: stdout.")
@needs_database
def export_profiles_command(fmt: str, output: str | None) -> None:
    """Write the current refresh's profiles, one row per customer."""
    from webapp.extensions import db
    from webapp.segmentation.export import profile_rows, write_csv, write_json
    from webapp.segmentation.refresh import current_run_id

    run_id = current_run_id()
    if run_id is None:
        raise CommandError("No refresh has finished yet: run `patchwork refresh` first.")
    columns, rows = profile_rows(db.session, run_id)
    # "-" is stdout, which click.open_file leaves open.
    with click.open_file(output or "-", "w", encoding="utf-8") as handle:
        count = write_csv(handle, columns, rows) if fmt == "csv" else write_json(handle, rows)
    if output:
        click.echo(f"Wrote {count} customers to {output}.", err=True)
