"""Segments: rule trees checked, compiled to one statement, computed by refresh runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from tests.factories import add_customer, add_order, add_survey
from webapp.extensions import db
from webapp.models import (
    AnswerChoice,
    RefreshRun,
    Segment,
    SegmentMember,
    SegmentRunStat,
    SurveyAnswer,
    SurveyResponse,
)
from webapp.segmentation import segments
from webapp.segmentation.refresh import current_run_id, run_refresh
from webapp.segmentation.rules import RulesError, describe, validate

AS_OF = date(2025, 6, 30)


def at(month: int, day: int, year: int = 2025) -> datetime:
    return datetime(year, month, day, 12, tzinfo=UTC)


def shop():
    """Ada knits, often and lately, from the UK on her phone; Bob painted once, long ago;
    Cy never ordered; Di is erased."""
    ada = add_customer(
        "Ada", email="ada@example.com", country="United Kingdom", city="Leeds",
        accepts_marketing=True,
    )  # fmt: skip
    bob = add_customer("Bob", email="bob@example.com", country="France", accepts_marketing=True)
    cy = add_customer("Cy", email="cy@example.com", country="united kingdom")
    di = add_customer("Di", email=None, erased_at=at(1, 1))
    yarn = [("Merino", "Y1", 2, 1250, "yarn")]
    for i, when in enumerate((at(3, 1), at(5, 10), at(6, 20))):
        add_order(ada, f"#A{i}", 2500, lines=yarn, placed_at=when)
    add_order(bob, "#B1", 9000, lines=[("Oils", "P1", 1, 9000, "paint")], placed_at=at(1, 5, 2024))
    add_order(di, "#D1", 1000, placed_at=at(6, 1))
    return ada, bob, cy, di


def answer(customer, survey, question: str, option: str, when: datetime, device="mobile"):
    response = SurveyResponse(
        public_id=uuid.uuid4().hex,
        survey_id=survey.id,
        customer_id=customer.id,
        device=device,
        shown_at=when,
    )
    db.session.add(response)
    db.session.flush()
    row = SurveyAnswer(
        response_id=response.id, survey_id=survey.id, question_id=question, answered_at=when
    )
    db.session.add(row)
    db.session.flush()
    db.session.add(
        AnswerChoice(answer_id=row.id, option_id=option, survey_id=survey.id, question_id=question)
    )
    db.session.commit()


def cond(field: str, op: str, value=None, **extra) -> dict:
    return {"field": field, "op": op, "value": value, **extra}


def members_of(tree: dict) -> set[str]:
    scope = segments.live_scope(db.session)
    got = segments.live_count(db.session, validate(tree), scope, sample=100)
    assert got.members == len(got.sample)
    return {c.first_name for c in got.sample}


def everyone(*rules: dict, match: str = "all") -> dict:
    return {"match": match, "rules": list(rules)}


# --- checking trees --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ([], 'A group matches "all" or "any"'),
        ({"match": "some", "rules": []}, 'A group matches "all" or "any"'),
        (everyone(cond("nope", "eq", 1)), "Rule 1: Unknown field 'nope'"),
        (everyone(cond("frequency", "like", 1)), "Rule 1: Number of orders: the operator"),
        (everyone(cond("frequency", "ge", "two")), "'two' is not a whole number"),
        (everyone(cond("monetary", "ge", "1.234")), "at most 2 decimals"),
        (everyone(cond("r", "between", [4, 2])), "must not exceed"),
        (everyone(everyone(cond("lifecycle", "in", ["zombie"]))), "Rule 1.1: Lifecycle"),
        (everyone(cond("trait", "in", ["knitting"])), "choose a dimension"),
        (everyone(cond("category", "has", None, category="yarn", within_days=0)), "between 1"),
        (everyone(cond("answer", "answered", ["x"], question_id="q")), "choose a survey"),
        (everyone(cond("behaviour", "is", "ghost")), "choose one of"),
        (everyone(*[cond("frequency", "ge", 1)] * 51), "at most 50 conditions"),
        (everyone(everyone(everyone(everyone(everyone())))), "nest at most 4"),
    ],
)
def test_bad_trees_are_refused_with_the_rule_at_fault(tree, message):
    with pytest.raises(RulesError) as caught:
        validate(tree)
    assert message in str(caught.value)


def test_valid_trees_are_cleaned_and_read_in_words():
    tree = validate(
        everyone(
            cond("monetary", "ge", "12.50"),
            cond("country", "in", [" France ", "france"]),
            everyone(
                cond("category", "has", None, category=" Yarn ", min_orders="2", within_days=90),
                cond("behaviour", "is", "vip"),
                match="any",
            ),
        )
        | {"junk": "dropped"}
    )
    assert tree["rules"][0]["value"] == 1250
    assert tree["rules"][1]["value"] == ["france"]
    assert tree["rules"][2]["rules"][0] == {
        "field": "category", "op": "has", "category": "yarn", "min_orders": 2, "within_days": 90,
    }  # fmt: skip
    assert "junk" not in tree
    assert describe(tree) == (
        "(Total spend at least 12.50 and Country is france and "
        "(bought from yarn at least 2 times, last within 90 days or is a VIP (top 20% of revenue)))"
    )


# --- the compiler, one field kind at a time --------------------------------------------------


def test_profile_fields_and_groups(app):
    shop()
    run_refresh(as_of=AS_OF)
    assert members_of(everyone()) == {"Ada", "Bob", "Cy"}  # the erased are in no segment
    assert members_of(everyone(match="any")) == set()
    assert members_of(everyone(cond("frequency", "ge", 2))) == {"Ada"}
    assert members_of(everyone(cond("recency_days", "gt", 30))) == {"Bob"}  # prospects: no
    assert members_of(everyone(cond("monetary", "between", ["75", "90.00"]))) == {"Ada", "Bob"}
    assert members_of(everyone(cond("lifecycle", "in", ["prospect", "churned"]))) == {"Bob", "Cy"}
    assert members_of(everyone(cond("rfm_segment", "not_in", ["Champions"]))) >= {"Cy"}
    assert members_of(
        everyone(cond("frequency", "ge", 3), cond("country", "in", ["France"]), match="any")
    ) == {"Ada", "Bob"}
    assert members_of(everyone(cond("country", "in", ["United Kingdom"]))) == {"Ada", "Cy"}
    assert members_of(everyone(cond("city", "not_in", ["leeds"]))) == {"Bob", "Cy"}
    assert members_of(everyone(cond("consent", "is"))) == {"Ada", "Bob"}
    assert members_of(everyone(cond("consent", "is_not"))) == {"Cy"}


def test_traits_categories_answers_and_devices(app):
    ada, bob, cy, _ = shop()
    survey = add_survey()
    answer(ada, survey, "craft", "knitting", at(6, 25))
    answer(cy, survey, "craft", "knitting", at(1, 2), device="desktop")
    answer(bob, survey, "craft", "painting", at(7, 5))  # after the as-of day: not yet
    run_refresh(as_of=AS_OF)
    assert members_of(everyone(cond("trait", "in", ["knitting"], dimension="craft"))) == {"Ada"}
    assert members_of(everyone(cond("trait", "in", ["unknown"], dimension="craft"))) == {"Cy"}
    assert members_of(everyone(cond("trait", "not_in", ["knitting"], dimension="craft"))) == {
        "Bob",
        "Cy",
    }
    bought = cond("category", "has", None, category="yarn")
    assert members_of(everyone(bought)) == {"Ada"}
    assert members_of(everyone({**bought, "min_orders": 4})) == set()
    assert members_of(everyone(cond("category", "has", None, category="paint"))) == {"Bob"}
    assert (
        members_of(everyone(cond("category", "has", None, category="paint", within_days=90)))
        == set()
    )
    assert members_of(everyone(cond("category", "has_not", None, category="yarn"))) == {"Bob", "Cy"}
    said = cond("answer", "answered", ["knitting"], survey_id=survey.id, question_id="craft")
    assert members_of(everyone(said)) == {"Ada", "Cy"}
    assert members_of(everyone({**said, "within_days": 30})) == {"Ada"}
    assert members_of(everyone({**said, "value": ["painting"]})) == set()  # answered later
    assert members_of(everyone({**said, "op": "not_answered"})) == {"Bob"}
    assert members_of(everyone(cond("device", "in", ["mobile"]))) == {"Ada", "Bob"}
    assert members_of(everyone(cond("device", "not_in", ["mobile"]))) == {"Cy"}


# --- refresh runs ----------------------------------------------------------------------------


def test_a_run_computes_members_figures_movement_and_overlaps(app):
    ada, bob, cy, _ = shop()
    knitters = segments.create_segment(
        db.session, "Knitters", everyone(cond("category", "has", None, category="yarn"))
    )
    buyers = segments.create_segment(db.session, "Buyers", everyone(cond("frequency", "ge", 1)))
    db.session.commit()
    first = run_refresh(as_of=AS_OF)
    stat = db.session.get(SegmentRunStat, (first.id, knitters.id))
    assert (stat.members, stat.sendable, stat.with_orders, stat.orders) == (1, 1, 1, 3)
    assert (stat.revenue_cents, stat.repeat_customers, stat.joined, stat.left) == (
        7500,
        1,
        None,
        None,
    )
    assert stat.overlaps == {str(buyers.id): 1}
    assert first.counts["segments"] == {str(knitters.id): 1, str(buyers.id): 2}
    figures = segments.figures(db.session, buyers.id, first)
    # Shares are of the whole shop, the erased customer's anonymised orders included.
    assert figures.share == 2 / 4 and figures.revenue_share == pytest.approx(16500 / 17500)
    assert (figures.aov_cents, figures.clv_cents, figures.repeat_rate) == (4125, 8250, 0.5)
    assert segments.warnings(db.session, figures)[0].startswith("Only 2 members")
    knit = segments.figures(db.session, knitters.id, first)
    assert any(
        "100% of its members are also in Buyers" in w for w in segments.warnings(db.session, knit)
    )

    add_order(cy, "#C1", 500, lines=[("Aran", "Y2", 1, 500, "yarn")], placed_at=at(6, 29))
    second = run_refresh(as_of=AS_OF)
    stat = db.session.get(SegmentRunStat, (second.id, knitters.id))
    assert (stat.members, stat.joined, stat.left) == (2, 1, 0)
    assert [n for _, n in segments.history(db.session, knitters.id)] == [1, 2]
    assert [s.name for s in segments.customer_segments(db.session, cy.id, second.id)] == [
        "Buyers",
        "Knitters",
    ]


def test_memberships_swap_in_with_the_run_and_a_bad_tree_is_skipped(app):
    shop()
    good = segments.create_segment(db.session, "Good", everyone(cond("frequency", "ge", 1)))
    bad = segments.create_segment(db.session, "Bad", everyone())
    db.session.commit()
    bad.rules = {"match": "all", "rules": [{"field": "gone"}]}  # e.g. a field removed later
    db.session.commit()
    run = run_refresh(as_of=AS_OF)
    assert run.counts["segments_skipped"] == ["Bad"]
    live = select(func.count()).where(SegmentMember.run_id == run.id)
    assert db.session.scalar(live.where(SegmentMember.segment_id == good.id)) == 2
    assert db.session.scalar(live.where(SegmentMember.segment_id == bad.id)) == 0


def test_explain_says_which_conditions_hold_for_a_customer(app):
    ada, bob, _, _ = shop()
    segment = segments.create_segment(
        db.session,
        "Loyal knitters",
        everyone(
            cond("frequency", "ge", 2),
            everyone(
                cond("country", "in", ["france"]),
                cond("behaviour", "is", "class_taker"),
                match="any",
            ),
        ),
    )
    db.session.commit()
    run_refresh(as_of=AS_OF)
    scope = segments.live_scope(db.session)
    why = segments.explain(db.session, segment, bob.id, scope)
    assert [(r.depth, r.text, r.met) for r in why] == [
        (0, "All of these", False),
        (1, "Number of orders at least 2 orders", False),
        (1, "Any of these", True),
        (2, "Country is france", True),
        (2, "is a class taker", False),
    ]
    ada_why = segments.explain(db.session, segment, ada.id, scope)
    assert [r.met for r in ada_why] == [False, True, False, False, False]


def test_templates_install_once_and_all_compile(app):
    shop()
    added = segments.install_templates(db.session)
    names = {s.name for s in added}
    assert {"Beginners", "Knitters", "Painters", "Champions", "At Risk", "Gift buyers"} <= names
    assert len(added) >= 20  # one per craft of the default categories, and the classics
    assert segments.install_templates(db.session) == []
    run = run_refresh(as_of=AS_OF)
    assert "segments_skipped" not in run.counts
    assert len(run.counts["segments"]) == len(added)
    knitters = db.session.scalars(select(Segment).where(Segment.name == "Knitters")).one()
    assert run.counts["segments"][str(knitters.id)] == 1


def test_deleting_a_segment_deletes_what_was_computed_for_it(app):
    shop()
    segment = segments.create_segment(db.session, "All", everyone())
    db.session.commit()
    run_refresh(as_of=AS_OF)
    segments.delete_segment(db.session, segment)
    assert db.session.scalar(select(func.count()).select_from(SegmentMember)) == 0
    assert db.session.scalar(select(func.count()).select_from(SegmentRunStat)) == 0


# A refresh in its own process that stops, as if stuck, once the new run's memberships are
# written and just before the swap: the test kills it there.
PAUSING_REFRESH = """
import sys, time
from pathlib import Path
from datetime import date
from webapp import create_app
from webapp.segmentation import refresh, segments

real = segments.stage_members

def stage_then_hang(conn, run_id, *args):
    skipped = real(conn, run_id, *args)
    Path(sys.argv[2]).write_text(str(run_id))
    time.sleep(600)
    return skipped

segments.stage_members = stage_then_hang
app = create_app("test", {"DATABASE_URL": sys.argv[1]})
with app.app_context():
    refresh.run_refresh(as_of=date(2025, 6, 30))
"""


def test_killing_a_refresh_mid_run_leaves_the_previous_segments_intact(app, tmp_path):
    ada, bob, cy, _ = shop()
    buyers = segments.create_segment(db.session, "Buyers", everyone(cond("frequency", "ge", 1)))
    db.session.commit()
    first = run_refresh(as_of=AS_OF)
    add_order(cy, "#C1", 500, placed_at=at(6, 29))  # the next run would add Cy
    marker = tmp_path / "staged"
    process = subprocess.Popen(
        [sys.executable, "-c", PAUSING_REFRESH, app.config["DATABASE_URL"], str(marker)],
        cwd=os.getcwd(),
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None, "the refresh process ended early"
            assert time.monotonic() < deadline, "the refresh never got to the segments"
            time.sleep(0.05)
        killed_id = int(marker.read_text())
        # Its memberships are written: Cy is in Buyers under the killed run...
        assert db.session.get(SegmentMember, (killed_id, buyers.id, cy.id)) is not None
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    db.session.expire_all()
    # ...but readers still see the previous run, whose members are untouched.
    assert current_run_id() == first.id
    scope = segments.live_scope(db.session)
    assert scope.run_id == first.id
    assert [s.name for s in segments.customer_segments(db.session, cy.id, first.id)] == []
    assert {c.first_name for c in segments.member_page(db.session, buyers.id, first.id, None)} == {
        "Ada",
        "Bob",
    }
    assert db.session.get(RefreshRun, killed_id).status == "running"

    # The next run records the killed one as failed, drops its rows, and swaps in.
    second = run_refresh(as_of=AS_OF)
    assert db.session.get(RefreshRun, killed_id).status == "failed"
    left = select(func.count()).where(SegmentMember.run_id == killed_id)
    assert db.session.scalar(left) == 0
    assert [s.name for s in segments.customer_segments(db.session, cy.id, second.id)] == ["Buyers"]
