"""Refresh runs: recorded, swapped in atomically, never overlapping; the CLI and export."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from tests.factories import add_customer, add_order
from webapp import tasks
from webapp.extensions import db
from webapp.models import (
    CustomerCategoryStat,
    CustomerProfile,
    CustomerTrait,
    RefreshRun,
    RfmSegmentMap,
    Task,
)
from webapp.segmentation import refresh
from webapp.segmentation.refresh import (
    RefreshBusy,
    RefreshFailed,
    current_run_id,
    refresh_lock,
    run_refresh,
)

AS_OF = date(2025, 6, 30)


def small_shop():
    """Ada buys yarn often and lately; Bob once, long ago; Cy never."""
    ada = add_customer("Ada", email="Ada@Example.com", external_id="00042")
    bob = add_customer("Bob", email="bob@example.com", external_id="7")
    cy = add_customer("Cy", email="cy@example.com")
    yarn = [("Merino", "Y1", 2, 1250, "yarn")]
    for i, (month, day) in enumerate(((3, 1), (5, 10), (6, 20))):
        placed_at = datetime(2025, month, day, tzinfo=UTC)
        add_order(ada, f"#A{i}", 12345, lines=yarn, placed_at=placed_at)
    add_order(bob, "#B1", 1000, placed_at=datetime(2024, 1, 5, tzinfo=UTC))
    return ada, bob, cy


def rows_of(model, run_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(model.run_id == run_id))


def profile(run_id: int, customer) -> CustomerProfile:
    return db.session.get(CustomerProfile, (run_id, customer.id))


def test_a_run_is_recorded_with_its_counts(app):
    small_shop()
    run = run_refresh(as_of=AS_OF, trigger="cli")
    assert (run.status, run.trigger, run.as_of, run.error) == ("done", "cli", AS_OF, None)
    assert run.finished_at is not None and run.duration_ms >= 0
    assert run.counts["customers"] == 3 and run.counts["with_orders"] == 2
    assert run.counts["lifecycle"] == {"active": 1, "churned": 1, "prospect": 1}
    assert sum(map(sum, run.counts["rfm_grid"])) == 2
    assert run.movement is None  # nothing to compare with yet
    assert current_run_id() == run.id


def test_the_next_run_records_movement_and_keeps_only_two_runs_of_rows(app):
    ada, bob, cy = small_shop()
    first = run_refresh(as_of=AS_OF)
    before = profile(first.id, bob).rfm_segment
    for i in range(5):  # Bob comes back and buys a lot
        add_order(bob, f"#B{i + 2}", 90000, placed_at=datetime(2025, 6, 25, tzinfo=UTC))
    second = run_refresh(as_of=AS_OF)
    after = profile(second.id, bob).rfm_segment
    assert before != after
    assert {"from": before, "to": after, "customers": 1, "new": False} in second.movement
    assert sum(m["customers"] for m in second.movement) == 3
    assert second.previous_run_id == first.id
    third = run_refresh(as_of=AS_OF)
    assert rows_of(CustomerProfile, first.id) == 0  # older than the previous: purged
    assert rows_of(CustomerProfile, second.id) == 3
    assert rows_of(CustomerProfile, third.id) == 3


def fail(*args, **kwargs):
    raise RuntimeError("disk full")


@pytest.mark.parametrize("where", ["while staging", "after copying"])
def test_a_failed_run_leaves_the_previous_results_live_and_is_recorded(app, monkeypatch, where):
    ada, bob, cy = small_shop()
    good = run_refresh(as_of=AS_OF)
    kept = profile(good.id, ada).monetary_cents
    add_order(cy, "#C1", 5000, placed_at=datetime(2025, 6, 29, tzinfo=UTC))
    if where == "while staging":
        steps = list(refresh.STEPS)
        steps.insert(4, ("boom", fail))
        monkeypatch.setattr(refresh, "STEPS", tuple(steps))
    else:
        monkeypatch.setattr(refresh, "_movement", fail)
    with pytest.raises(RefreshFailed, match="disk full"):
        run_refresh(as_of=AS_OF)
    failed = db.session.scalars(select(RefreshRun).order_by(RefreshRun.id.desc())).first()
    assert (failed.status, failed.error) == ("failed", "RuntimeError: disk full")
    assert current_run_id() == good.id
    assert profile(good.id, ada).monetary_cents == kept
    assert profile(good.id, cy).lifecycle == "prospect"
    for model in (CustomerProfile, CustomerCategoryStat, CustomerTrait):
        assert rows_of(model, failed.id) == 0


def test_a_killed_run_changes_nothing_readers_see_and_is_marked_failed_by_the_next(app):
    ada, bob, cy = small_shop()
    good = run_refresh(as_of=AS_OF)
    # What a process killed while copying leaves behind: its run still "running", and part
    # of its rows.
    killed = RefreshRun(trigger="cli", as_of=AS_OF, status="running")
    db.session.add(killed)
    db.session.flush()
    db.session.add(
        CustomerProfile(run_id=killed.id, customer_id=ada.id, frequency=99, lifecycle="active")
    )
    db.session.commit()
    assert current_run_id() == good.id
    assert profile(good.id, ada).frequency == 3
    after = run_refresh(as_of=AS_OF)
    db.session.refresh(killed)
    assert killed.status == "failed" and "interrupted" in killed.error
    assert rows_of(CustomerProfile, killed.id) == 0
    assert current_run_id() == after.id
    assert profile(after.id, ada).frequency == 3


def test_answers_are_written_while_a_run_computes(app, monkeypatch):
    """Staging never holds the database's write lock (SQLite has only one)."""
    ada, bob, cy = small_shop()
    waited = []

    def write_meanwhile(conn, ctx):
        started = time.perf_counter()
        add_order(cy, "#C-meanwhile", 4200, placed_at=datetime(2025, 6, 29, tzinfo=UTC))
        waited.append(time.perf_counter() - started)

    steps = list(refresh.STEPS)
    steps.insert(6, ("someone answers", write_meanwhile))
    monkeypatch.setattr(refresh, "STEPS", tuple(steps))
    run = run_refresh(as_of=AS_OF)
    assert run.status == "done"
    assert waited and waited[0] < 2


def test_two_runs_never_overlap(app, runner):
    small_shop()
    with refresh_lock(db.engine):
        with pytest.raises(RefreshBusy):
            run_refresh(as_of=AS_OF)
        result = runner.invoke(args=["refresh", "--json"])
    assert result.exit_code == 1
    assert "Another refresh is running" in json.loads(result.output)["error"]
    assert db.session.scalar(select(func.count()).select_from(RefreshRun)) == 0
    assert run_refresh(as_of=AS_OF).status == "done"  # the lock is free again


def test_the_owners_rfm_map_names_the_segments(app):
    ada, bob, cy = small_shop()
    run_refresh(as_of=AS_OF)
    for row in db.session.scalars(select(RfmSegmentMap)):
        row.name = f"{row.name} (renamed)"
    db.session.commit()
    run = run_refresh(as_of=AS_OF)
    assert profile(run.id, ada).rfm_segment.endswith("(renamed)")


def invoke_json(runner, *args) -> tuple[int, dict]:
    result = runner.invoke(args=[*args, "--json"])
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return result.exit_code, json.loads(lines[0])


def test_refresh_command_prints_one_json_object(app, runner):
    small_shop()
    code, payload = invoke_json(runner, "refresh", "--as-of", "2025-06-30")
    assert code == 0
    assert payload["status"] == "done" and payload["as_of"] == "2025-06-30"
    assert payload["counts"]["customers"] == 3


def test_refresh_command_refuses_a_bad_date_in_json(app, runner):
    code, payload = invoke_json(runner, "refresh", "--as-of", "30/06/2025")
    assert code == 1
    assert "--as-of must be a date" in payload["error"]


def test_refresh_command_without_json_summarises(app, runner):
    small_shop()
    result = runner.invoke(args=["refresh", "--as-of", "2025-06-30"])
    assert result.exit_code == 0
    assert "Refreshed 3 customers (2 with orders) as of 2025-06-30" in result.output


def test_export_profiles_writes_csv_with_the_issues_columns(app, runner):
    ada, bob, cy = small_shop()
    run_refresh(as_of=AS_OF)
    result = runner.invoke(args=["export-profiles"])
    assert result.exit_code == 0
    rows = {row["email"]: row for row in csv.DictReader(io.StringIO(result.output))}
    assert set(rows) == {"Ada@Example.com", "bob@example.com", "cy@example.com"}
    a, c = rows["Ada@Example.com"], rows["cy@example.com"]
    assert (a["customer_id"], a["monetary"], a["frequency"], a["recency_days"]) == (
        "00042",
        "370.35",
        "3",
        "10",
    )
    assert a["trait_craft"] == "knitting" and a["trait_skill"] == "unknown"
    assert a["rfm_segment"] and a["lifecycle"] == "active"
    assert (c["r"], c["f"], c["m"], c["monetary"], c["lifecycle"]) == (
        "",
        "",
        "",
        "0.00",
        "prospect",
    )
    for column in ("recency_days", "r", "f", "m", "rfm_segment", "lifecycle"):
        assert column in a


def test_export_profiles_as_json_to_a_file(app, runner, tmp_path):
    small_shop()
    run_refresh(as_of=AS_OF)
    out = tmp_path / "profiles.json"
    result = runner.invoke(args=["export-profiles", "--format", "json", "--output", str(out)])
    assert result.exit_code == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 3
    ada = next(r for r in rows if r["customer_id"] == "00042")
    assert (ada["monetary"], ada["frequency"], ada["r"], ada["trait_craft"]) == (
        "370.35",
        3,
        ada["r"],
        "knitting",
    )
    cy = next(r for r in rows if r["email"] == "cy@example.com")
    assert (cy["r"], cy["f"], cy["m"], cy["recency_days"]) == (None, None, None, None)


def test_export_before_any_refresh_says_what_to_do(app, runner):
    result = runner.invoke(args=["export-profiles"])
    assert result.exit_code == 1
    assert "run `patchwork refresh` first" in result.output


def test_a_queued_refresh_task_runs_and_reports_its_run(app):
    small_shop()
    task = tasks.enqueue("refresh", {"as_of": "2025-06-30"})
    assert tasks.run_pending() == 1
    task = db.session.get(Task, task.id, populate_existing=True)
    assert task.status == "done", task.error
    run = db.session.get(RefreshRun, task.result["run_id"])
    assert (run.status, run.trigger, run.as_of) == ("done", "browser", AS_OF)
    assert task.progress_done == task.progress_total > 0
