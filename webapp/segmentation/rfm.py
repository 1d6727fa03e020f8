"""The owner's map from R and F scores to named RFM segments.

The map is a table of (R range, F range) -> name rows; the first row (by position) that
covers a cell names it. A refresh resolves the map into the 25 cells of the 5x5 grid once, so
the profiles SQL joins a 25-row table instead of evaluating ranges per customer.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.models import RfmSegmentMap

SCORES = range(1, 6)

# (name, R range, F range), issue 4's default map. It covers every cell exactly once.
DEFAULT_MAP: tuple[tuple[str, tuple[int, int], tuple[int, int]], ...] = (
    ("Hibernating", (1, 2), (1, 2)),
    ("At Risk", (1, 2), (3, 4)),
    ("Can't Lose Them", (1, 2), (5, 5)),
    ("About to Sleep", (3, 3), (1, 2)),
    ("Need Attention", (3, 3), (3, 3)),
    ("Loyal Customers", (3, 4), (4, 5)),
    ("Promising", (4, 4), (1, 1)),
    ("New Customers", (5, 5), (1, 1)),
    ("Potential Loyalists", (4, 5), (2, 3)),
    ("Champions", (5, 5), (4, 5)),
)


def segment_map(session: Session) -> list[RfmSegmentMap]:
    """The shop's map, seeded with the default the first time it is read."""
    rows = list(
        session.scalars(select(RfmSegmentMap).order_by(RfmSegmentMap.position, RfmSegmentMap.id))
    )
    if rows:
        return rows
    for position, (name, (r_min, r_max), (f_min, f_max)) in enumerate(DEFAULT_MAP):
        session.add(
            RfmSegmentMap(
                position=position, name=name, r_min=r_min, r_max=r_max, f_min=f_min, f_max=f_max
            )
        )
    session.commit()
    return segment_map(session)


def grid_names(rows: list[RfmSegmentMap]) -> dict[tuple[int, int], str]:
    """(R, F) -> segment name for every cell some row covers; the first row wins."""
    cells: dict[tuple[int, int], str] = {}
    for row in rows:
        for r in range(max(row.r_min, 1), min(row.r_max, 5) + 1):
            for f in range(max(row.f_min, 1), min(row.f_max, 5) + 1):
                cells.setdefault((r, f), row.name)
    return cells


def uncovered_cells(rows: list[RfmSegmentMap]) -> list[tuple[int, int]]:
    """Cells no row names: customers there get no RFM segment (the editor warns)."""
    named = grid_names(rows)
    return [(r, f) for r in SCORES for f in SCORES if (r, f) not in named]
