"""Refresh runs in the browser: the list, a run's page, and "Refresh now" with its progress."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import csrf_from
from tests.factories import add_customer, add_order
from tests.test_refresh import AS_OF, small_shop
from webapp import tasks
from webapp.extensions import db
from webapp.models import RefreshRun, Segment, SegmentRunStat, Task
from webapp.runs import duration_words
from webapp.segmentation import refresh
from webapp.segmentation.refresh import refresh_lock, run_refresh


def text_of(response) -> str:
    text = " ".join(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)).split())
    for loose, tight in ((" :", ":"), (" ,", ","), ("( ", "("), (" )", ")")):
        text = text.replace(loose, tight)
    return text


def press_refresh_now(client, page: str = "/"):
    return client.post("/refresh/", data={"csrf_token": csrf_from(client.get(page))})


def refresh_tasks() -> list[Task]:
    return list(db.session.scalars(select(Task).where(Task.kind == "refresh").order_by(Task.id)))


def poll(client, task: Task):
    """What the progress component's htmx request gets back."""
    return client.get(
        f"/refresh/tasks/{task.id}",
        headers={"HX-Request": "true", "HX-Target": f"task-{task.id}-progress"},
    )


# --- pure helpers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ms, words",
    [
        (None, ""),
        (80, "0.1 s"),
        (12_345, "12.3 s"),
        (125_000, "2 min 5 s"),
        (7_380_000, "2 h 3 min"),
    ],
)
def test_durations_read_like_a_clock(ms, words):
    assert duration_words(ms) == words


# --- the list ------------------------------------------------------------------------------


def test_runs_need_a_login(client):
    assert client.get("/refresh/").status_code == 302
    assert client.post("/refresh/").status_code in (302, 400)
    assert refresh_tasks() == []


def test_the_list_shows_every_run_with_its_status(owner_client):
    small_shop()
    done = run_refresh(as_of=AS_OF, trigger="cli")
    failed = RefreshRun(
        trigger="schedule", as_of=AS_OF, status="failed", error="RuntimeError: disk full"
    )
    running = RefreshRun(trigger="browser", as_of=AS_OF, status="running", step="RFM scores")
    db.session.add_all([failed, running])
    db.session.commit()
    text = text_of(owner_client.get("/refresh/"))
    assert f"#{done.id} live" in text
    assert "command line 2025-06-30 done" in text
    assert f"{duration_words(done.duration_ms)} 3" in text  # its duration, then 3 customers
    assert "schedule 2025-06-30 failed: RuntimeError: disk full" in text
    assert "Refresh now button 2025-06-30 running: RFM scores" in text


def test_the_list_pages_through_many_runs(owner_client):
    db.session.add_all(
        RefreshRun(trigger="cli", as_of=AS_OF, status="done", counts={"customers": i})
        for i in range(55)
    )
    db.session.commit()
    first = owner_client.get("/refresh/").get_data(as_text=True)
    assert first.count('href="/refresh/') >= 50 and "#55" in first and "#5<" not in first
    older = re.search(r'href="(/refresh/\?before=\d+)"', first).group(1)
    second = owner_client.get(older).get_data(as_text=True)
    assert "#5<" in second and "#1<" in second and "#6<" not in second
    assert "Older runs" not in second and "Newest runs" in second
    assert owner_client.get("/refresh/?before=x").status_code == 200
    assert owner_client.get("/refresh/?before=99999999999").status_code == 200


def test_with_no_run_the_list_says_so_and_offers_the_button(owner_client):
    text = text_of(owner_client.get("/refresh/"))
    assert "No refresh has run yet" in text and "Refresh now" in text


# --- one run -------------------------------------------------------------------------------


def test_a_run_shows_its_counts(owner_client):
    small_shop()
    run = run_refresh(as_of=AS_OF)
    response = owner_client.get(f"/refresh/{run.id}")
    assert response.status_code == 200
    text = text_of(response)
    assert f"Refresh run #{run.id}" in text and "live: the app uses this run" in text
    assert "Customers 3 (2 with orders)" in text
    assert "prospect 1" in text and "active 1" in text and "churned 1" in text
    assert "The first finished run: there is nothing to compare with." in text
    assert "Segments" not in re.findall(r"<h2>([^<]+)</h2>", response.get_data(as_text=True))


def test_a_run_shows_the_movement_since_the_previous_run_biggest_first(owner_client):
    ada, bob, cy = small_shop()
    first = run_refresh(as_of=AS_OF)
    for i in range(5):  # Bob comes back and buys a lot
        add_order(bob, f"#B{i + 2}", 90000, placed_at=datetime(2025, 6, 25, tzinfo=UTC))
    add_customer("Dee", email="dee@example.com")  # new since, no orders
    second = run_refresh(as_of=AS_OF)
    html = owner_client.get(f"/refresh/{second.id}").get_data(as_text=True)
    moved = html[html.index('class="movement"') : html.index("</table>", html.index("movement"))]
    rows = [
        [cell.strip() for cell in re.findall(r"<td[^>]*>([^<]*)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", moved, re.S)
    ]
    expected = sorted(
        (
            (
                m["from"] or ("(new customer)" if m["new"] else "(no segment)"),
                m["to"] or "(no segment)",
                m["customers"],
            )
            for m in second.movement
            if m["from"] != m["to"] or m["new"]
        ),
        key=lambda m: (-m[2], m[0], m[1]),
    )
    assert [tuple(r[:2]) + (int(r[2]),) for r in rows if r] == expected
    assert any(r[0] == "Hibernating" for r in rows if r)  # Bob's move
    assert f"since run #{first.id}" in html
    assert ["(new customer)", "(no segment)", 1] in [r[:2] + [int(r[2])] for r in rows if r]
    stayed = sum(m["customers"] for m in second.movement if m["from"] == m["to"] and not m["new"])
    assert f"{stayed} customers kept their segment (or are still without one)" in html


def test_a_run_shows_segment_joins_and_leaves_once_there_are_any(owner_client):
    small_shop()
    run = run_refresh(as_of=AS_OF)
    knitters = Segment(name="Knitters", rules={"all": []})
    lapsed = Segment(name="Lapsed", rules={"all": []})
    db.session.add_all([knitters, lapsed])
    db.session.flush()
    db.session.add_all(
        [
            SegmentRunStat(run_id=run.id, segment_id=knitters.id, members=40, joined=7, left=2),
            SegmentRunStat(run_id=run.id, segment_id=lapsed.id, members=3),
        ]
    )
    db.session.commit()
    text = text_of(owner_client.get(f"/refresh/{run.id}"))
    assert "Segment Members Joined Left Knitters 40 7 2 Lapsed 3 — —" in text


def test_a_failed_run_shows_its_error(owner_client, monkeypatch):
    small_shop()
    good = run_refresh(as_of=AS_OF)
    monkeypatch.setattr(refresh, "_movement", lambda *a: 1 / 0)
    with pytest.raises(refresh.RefreshFailed):
        run_refresh(as_of=AS_OF)
    failed = db.session.scalar(select(RefreshRun).where(RefreshRun.status == "failed"))
    text = text_of(owner_client.get(f"/refresh/{failed.id}"))
    assert "This run failed: ZeroDivisionError: division by zero" in text
    assert f"run #{good.id}" in text_of(owner_client.get("/"))


def test_a_running_run_polls_its_own_page(owner_client):
    run = RefreshRun(trigger="cli", as_of=AS_OF, status="running", step="traits")
    db.session.add(run)
    db.session.commit()
    html = owner_client.get(f"/refresh/{run.id}").get_data(as_text=True)
    assert 'hx-trigger="every 2s"' in html and "running: traits" in html


def test_unknown_runs_and_tasks_are_not_found(owner_client):
    other = tasks.enqueue("import_orders", {})
    assert owner_client.get("/refresh/999").status_code == 404
    assert owner_client.get("/refresh/tasks/999").status_code == 404
    assert owner_client.get(f"/refresh/tasks/{other.id}").status_code == 404
    assert owner_client.get("/refresh/99999999999").status_code == 404


# --- Refresh now -----------------------------------------------------------------------------


def test_refresh_now_queues_one_task_and_shows_its_progress(owner_client):
    small_shop()
    response = press_refresh_now(owner_client)
    (task,) = refresh_tasks()
    assert response.status_code == 303
    assert response.headers["Location"] == f"/refresh/tasks/{task.id}"
    # A run of the scheduler's refresh job: its lock, and a manual: key in its ledger.
    assert task.params["trigger"] == "browser" and task.params["job"] == "refresh"
    assert task.key.startswith("manual:") and task.status == "queued"
    page = owner_client.get(response.headers["Location"])
    assert "Waiting to start" in text_of(page)
    assert f'hx-get="/refresh/tasks/{task.id}"' in page.get_data(as_text=True)


def test_refresh_now_twice_makes_one_task(owner_client):
    small_shop()
    first = press_refresh_now(owner_client)
    second = press_refresh_now(owner_client, page="/refresh/")
    assert first.headers["Location"] == second.headers["Location"]
    assert len(refresh_tasks()) == 1
    follow = owner_client.get(second.headers["Location"])
    assert "A refresh is already under way" in text_of(follow)
    home = text_of(owner_client.get("/"))
    assert "A refresh is queued. Follow its progress" in home


def test_after_a_finished_refresh_the_button_queues_a_new_one(owner_client):
    small_shop()
    press_refresh_now(owner_client)
    tasks.run_pending()
    press_refresh_now(owner_client)
    first, second = refresh_tasks()
    assert (first.status, second.status) == ("done", "queued")


def test_progress_polls_then_ends_with_a_link_to_the_finished_run(owner_client):
    small_shop()
    press_refresh_now(owner_client)
    (task,) = refresh_tasks()
    assert 'hx-trigger="every 1s"' in poll(owner_client, task).get_data(as_text=True)
    assert tasks.run_pending() == 1
    run = db.session.scalar(select(RefreshRun))
    answer = poll(owner_client, task)
    html = answer.get_data(as_text=True)
    assert "hx-trigger" not in html and "<html" not in html  # the outcome ends the polling
    assert "The refresh has finished: 3 customers as of" in text_of(answer)
    assert f'href="/refresh/{run.id}"' in html
    assert run.trigger == "browser" and run.status == "done"


def test_progress_shows_the_runs_step_while_it_runs(owner_client):
    task = tasks.enqueue("refresh", {"trigger": "browser"})
    now = datetime.now(UTC)
    task.status, task.started_at = "running", now
    task.progress_done, task.progress_total, task.message = 4, 10, "RFM scores"
    earlier = RefreshRun(
        trigger="browser", as_of=AS_OF, status="done", started_at=now - timedelta(hours=1)
    )
    run = RefreshRun(
        trigger="browser", as_of=AS_OF, status="running", step="RFM scores", started_at=now
    )
    db.session.add_all([earlier, run])
    db.session.commit()
    text = text_of(poll(owner_client, task))
    assert f"Run #{run.id}, as of 2025-06-30: RFM scores · step 5 of 10" in text


def test_a_failed_refresh_shows_its_error_not_a_server_error(owner_client, monkeypatch):
    small_shop()
    run_refresh(as_of=AS_OF)
    monkeypatch.setattr(refresh, "_movement", lambda *a: 1 / 0)
    press_refresh_now(owner_client)
    tasks.run_pending()
    (task,) = refresh_tasks()
    failed = db.session.scalar(select(RefreshRun).where(RefreshRun.status == "failed"))
    response = owner_client.get(f"/refresh/tasks/{task.id}")
    assert response.status_code == 200
    text = text_of(response)
    assert (
        f"The refresh did not run through: Refresh run {failed.id} failed "
        "(previous results kept): ZeroDivisionError: division by zero"
    ) in text
    assert f"See run #{failed.id}, recorded as failed" in text
    assert "Refresh now" in text


def test_a_refresh_while_another_runs_says_so(owner_client):
    small_shop()
    press_refresh_now(owner_client)
    with refresh_lock(db.engine):  # say, `patchwork refresh` on the command line
        tasks.run_pending()
    (task,) = refresh_tasks()
    response = poll(owner_client, task)
    assert response.status_code == 200
    text = text_of(response)
    assert "Another refresh is running; try again when it has finished." in text
    assert "RefreshBusy" not in text
    assert db.session.scalar(select(func.count()).select_from(RefreshRun)) == 0


def test_refresh_now_needs_the_csrf_token(owner_client):
    assert owner_client.post("/refresh/").status_code == 400
    assert refresh_tasks() == []
