"""Segments: templates, live counts for the builder, memberships computed by a refresh run,
their figures, and the "why" of one customer.

Everything goes through the compiler (webapp.segmentation.compiler): a tree becomes one SQL
statement, whether it counts members as the owner types, lists a sample, explains one
customer or writes a run's memberships.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, case, delete, func, insert, literal, select, text
from sqlalchemy.orm import Session

from webapp.models import (
    Customer,
    CustomerProfile,
    RefreshRun,
    Segment,
    SegmentMember,
    SegmentRunStat,
    ShopSettings,
)
from webapp.segmentation import compiler
from webapp.segmentation.rules import Names, RulesError, describe, validate, walk

SAMPLE_SIZE = 10
SMALL_MEMBERS = 50  # fewer members than this, or
SMALL_SHARE = 0.01  # under this share of customers, is over-segmentation
OVERLAP_SHARE = 0.9  # so is a segment this much inside another


# --- templates -------------------------------------------------------------------------------

CRAFT_PEOPLE = {
    "knitting": "Knitters",
    "crochet": "Crocheters",
    "sewing": "Sewists",
    "quilting": "Quilters",
    "weaving": "Weavers",
    "embroidery": "Embroiderers",
    "painting": "Painters",
    "scrapbooking": "Scrapbookers",
    "pottery": "Potters",
    "jewellery": "Jewellery makers",
}


@dataclass(frozen=True)
class Template:
    key: str
    name: str
    description: str
    rules: dict


def _all(*rules: dict) -> dict:
    return {"match": "all", "rules": list(rules)}


def _trait(dimension: str, *values: str) -> dict:
    return {"field": "trait", "op": "in", "dimension": dimension, "value": list(values)}


def templates(crafts: Iterable[str]) -> list[Template]:
    """What shops actually run: one per craft in the shop's vocabulary, and the classics."""
    stock = [
        Template(
            "beginners",
            "Beginners",
            "Customers whose skill is beginner, said or seen in starter-kit purchases.",
            _all(_trait("skill", "beginner")),
        ),
        Template(
            "experienced",
            "Experienced crafters",
            "Customers whose skill is experienced, said or seen in premium purchases.",
            _all(_trait("skill", "experienced")),
        ),
    ]
    for craft in crafts:
        people = CRAFT_PEOPLE.get(craft, f"{craft.capitalize()} crafters")
        stock.append(
            Template(
                f"craft-{craft}",
                people,
                f"Customers whose craft is {craft}.",
                _all(_trait("craft", craft)),
            )
        )
    field = {"field": "lifecycle", "op": "in", "value": ["lapsed"]}
    rfm = {"field": "rfm_segment", "op": "in"}
    stock += [
        Template("lapsed", "Lapsed customers", "No order within the churn window.", _all(field)),
        Template(
            "vip",
            "VIP / high spenders",
            "The top customers who together make 20% of revenue.",
            _all({"field": "behaviour", "op": "is", "value": "vip"}),
        ),
        Template(
            "abandoners-shipping",
            "Cart abandoners put off by shipping cost",
            "Left in the last 30 days saying shipping cost stopped them; no order since.",
            _all(
                {"field": "behaviour", "op": "is", "value": "cart_abandoner"},
                {"field": "objection", "op": "in", "value": ["shipping_cost"]},
            ),
        ),
        Template(
            "gift-buyers",
            "Gift buyers",
            "Customers who buy as gifts.",
            _all(_trait("occasion", "gift")),
        ),
        Template(
            "champions", "Champions", "Recent and frequent.", _all({**rfm, "value": ["Champions"]})
        ),
        Template(
            "at-risk",
            "At Risk",
            "Used to buy often, not lately.",
            _all({**rfm, "value": ["At Risk", "Can't Lose Them"]}),
        ),
        Template(
            "class-takers",
            "Class takers",
            "Bought a class.",
            _all({"field": "behaviour", "op": "is", "value": "class_taker"}),
        ),
        Template(
            "seasonal",
            "Seasonal shoppers",
            "Most orders in the same quarter, across two years or more.",
            _all({"field": "behaviour", "op": "is", "value": "seasonal"}),
        ),
    ]
    return stock


def shop_templates(session: Session) -> list[Template]:
    from webapp.catalog import crafts_in_use

    return templates(crafts_in_use(session))


def create_segment(
    session: Session, name: str, rules: object, description: str = "", template: str | None = None
) -> Segment:
    """A new segment (not committed); RulesError for a bad tree."""
    segment = Segment(
        name=name.strip(), description=description, rules=validate(rules), template=template
    )
    session.add(segment)
    return segment


def install_templates(session: Session) -> list[Segment]:
    """Every template the shop has not got yet, as a segment (committed)."""
    have = set(session.scalars(select(Segment.name)))
    added = [
        create_segment(session, t.name, t.rules, t.description, t.key)
        for t in shop_templates(session)
        if t.name not in have
    ]
    session.commit()
    return added


# --- live: the builder, segment pages, the why -------------------------------------------


def live_scope(session: Session) -> compiler.Scope | None:
    """The current run's results, "within N days" counted back from its as-of day; None
    before the first refresh."""
    run = session.scalars(
        select(RefreshRun).where(RefreshRun.status == "done").order_by(RefreshRun.id.desc())
    ).first()
    if run is None:
        return None
    shop = session.get(ShopSettings, 1)
    return compiler.Scope(run.id, run.as_of, ZoneInfo(shop.timezone))


@dataclass(frozen=True)
class LiveCount:
    members: int
    sendable: int
    sample: list[Customer]


def live_count(session: Session, tree: dict, scope: compiler.Scope, sample: int = SAMPLE_SIZE):
    """Members and sendable members of a valid tree now, and a sample of members."""
    members, can_send = session.execute(compiler.counts(tree, scope)).one()
    ids = list(
        session.scalars(
            compiler.members(tree, scope).order_by(compiler.P.customer_id).limit(sample)
        )
    )
    customers = session.scalars(select(Customer).where(Customer.id.in_(ids))).all()
    by_id = {c.id: c for c in customers}
    return LiveCount(int(members), int(can_send), [by_id[i] for i in ids if i in by_id])


@dataclass(frozen=True)
class Reason:
    depth: int
    text: str
    met: bool
    group: bool


def explain(
    session: Session,
    segment: Segment,
    customer_id: int,
    scope: compiler.Scope,
    names: Names | None = None,
) -> list[Reason]:
    """Each group and condition of the segment, in order, and whether it holds for the
    customer as of the current run (empty when the customer has no profile in it)."""
    tree = validate(segment.rules)
    row = session.execute(compiler.explain(tree, scope, customer_id)).first()
    if row is None:
        return []
    reasons = []
    for (path, node), met in zip(walk(tree), row, strict=True):
        group = "match" in node
        text_ = (
            f"{'All' if node['match'] == 'all' else 'Any'} of these"
            if group
            else describe(node, names)
        )
        depth = 0 if not path else path.count(".") + 1
        reasons.append(Reason(depth, text_, bool(met), group))
    return reasons


def customer_segments(session: Session, customer_id: int, run_id: int) -> list[Segment]:
    """The segments a customer is in as of a run, by name."""
    return list(
        session.scalars(
            select(Segment)
            .join(SegmentMember, SegmentMember.segment_id == Segment.id)
            .where(SegmentMember.run_id == run_id, SegmentMember.customer_id == customer_id)
            .order_by(Segment.name)
        )
    )


@dataclass(frozen=True)
class Figures:
    """A segment's figures at a run, with the ratios the segment page shows."""

    stat: SegmentRunStat
    customers: int  # every customer at the run
    revenue_cents: int  # every customer's spend at the run

    @property
    def share(self) -> float:
        return self.stat.members / self.customers if self.customers else 0.0

    @property
    def revenue_share(self) -> float:
        return self.stat.revenue_cents / self.revenue_cents if self.revenue_cents else 0.0

    @property
    def aov_cents(self) -> int | None:
        return self.stat.revenue_cents // self.stat.orders if self.stat.orders else None

    @property
    def orders_per_customer(self) -> float | None:
        return self.stat.orders / self.stat.with_orders if self.stat.with_orders else None

    @property
    def repeat_rate(self) -> float | None:
        return self.stat.repeat_customers / self.stat.with_orders if self.stat.with_orders else None

    @property
    def clv_cents(self) -> int | None:
        """Historic customer lifetime value: spend so far per member with orders."""
        return self.stat.revenue_cents // self.stat.with_orders if self.stat.with_orders else None


def figures(session: Session, segment_id: int, run: RefreshRun) -> Figures | None:
    stat = session.get(SegmentRunStat, (run.id, segment_id))
    if stat is None:
        return None
    counts = run.counts or {}
    return Figures(stat, counts.get("customers", 0), counts.get("revenue_cents", 0))


def history(session: Session, segment_id: int, limit: int = 40) -> list[tuple[RefreshRun, int]]:
    """(run, members) for the segment's last runs, oldest first: the size chart."""
    rows = session.execute(
        select(RefreshRun, SegmentRunStat.members)
        .join(SegmentRunStat, SegmentRunStat.run_id == RefreshRun.id)
        .where(SegmentRunStat.segment_id == segment_id, RefreshRun.status == "done")
        .order_by(RefreshRun.id.desc())
        .limit(limit)
    ).all()
    return [(run, members) for run, members in reversed(rows)]


def warnings(session: Session, figures_: Figures, names: dict[int, str] | None = None) -> list[str]:
    """Over-segmentation: too small, or nearly the same people as another segment.
    `names` (segment id -> name) spares a query per segment when listing many."""
    stat = figures_.stat
    notes = []
    if stat.members < SMALL_MEMBERS:
        notes.append(
            f"Only {stat.members} members: fewer than {SMALL_MEMBERS} is too few to learn "
            "from a campaign."
        )
    elif figures_.share < SMALL_SHARE:
        notes.append(
            f"Under {SMALL_SHARE:.0%} of customers ({figures_.share:.2%}): consider a broader rule."
        )
    if stat.members:
        if names is None:
            names = dict(session.execute(select(Segment.id, Segment.name)).all())
        for other, shared in sorted((stat.overlaps or {}).items()):
            name = names.get(int(other))
            if name and shared >= OVERLAP_SHARE * stat.members:
                notes.append(
                    f"{shared / stat.members:.0%} of its members are also in {name}: "
                    "the two may be one segment."
                )
    return notes


# --- a refresh run's memberships ----------------------------------------------------------


def stage_members(
    conn: Connection, run_id: int, as_of: date, tz: ZoneInfo, previous: int | None, chunk: int
) -> list[str]:
    """Write every segment's members under `run_id`, a chunk of customers per transaction,
    then the segments' figures. Returns the names of segments skipped because their rules no
    longer compile, so that one bad tree never fails the run."""
    scope = compiler.Scope(run_id, as_of, tz)
    low, high = conn.execute(
        text("SELECT MIN(customer_id), MAX(customer_id) FROM customer_profiles WHERE run_id = :r"),
        {"r": run_id},
    ).one()
    durations: dict[int, int] = {}
    skipped: list[str] = []
    for segment_id, name, rules in conn.execute(select(Segment.id, Segment.name, Segment.rules)):
        try:
            tree = validate(rules)
        except RulesError:
            skipped.append(name)
            continue
        started = time.perf_counter()
        if low is not None:
            condition = compiler.condition(tree, scope)
            for lo in range(low, high + 1, chunk):
                rows = compiler.base(
                    scope, literal(run_id), literal(segment_id), compiler.P.customer_id
                ).where(
                    compiler.P.customer_id >= lo,
                    compiler.P.customer_id < lo + chunk,
                    condition,
                )
                conn.execute(
                    insert(SegmentMember).from_select(["run_id", "segment_id", "customer_id"], rows)
                )
                conn.commit()
        durations[segment_id] = int(1000 * (time.perf_counter() - started))
    _stage_figures(conn, run_id, previous, durations)
    return skipped


def _stage_figures(conn: Connection, run_id: int, previous: int | None, durations) -> None:
    conn.execute(delete(SegmentRunStat).where(SegmentRunStat.run_id == run_id))
    m, p = SegmentMember.__table__.c, compiler.P

    def how_many(condition) -> object:
        return func.sum(case((condition, 1), else_=0))

    figures_ = {
        row[0]: row[1:]
        for row in conn.execute(
            select(
                m.segment_id,
                func.count(),
                how_many(compiler.sendable()),  # the one definition of who may be emailed
                how_many(p.frequency > 0),
                how_many(p.frequency > 1),
                func.sum(p.frequency),
                func.sum(p.monetary_cents),
            )
            .select_from(
                SegmentMember.__table__.join(
                    CustomerProfile.__table__,
                    and_(p.run_id == m.run_id, p.customer_id == m.customer_id),
                ).join(Customer.__table__, compiler.C.id == m.customer_id)
            )
            .where(m.run_id == run_id)
            .group_by(m.segment_id)
        )
    }
    had = set()
    moved: dict[str, dict[int, int]] = {"joined": {}, "left": {}}
    if previous is not None:
        had = set(
            conn.execute(
                select(SegmentRunStat.segment_id).where(SegmentRunStat.run_id == previous)
            ).scalars()
        )
        for key, new, old in (("joined", run_id, previous), ("left", previous, run_id)):
            moved[key] = dict(
                conn.execute(
                    text(
                        """SELECT m.segment_id, COUNT(*) FROM segment_members m
                           WHERE m.run_id = :new AND NOT EXISTS (
                               SELECT 1 FROM segment_members o
                               WHERE o.run_id = :old AND o.segment_id = m.segment_id
                                 AND o.customer_id = m.customer_id)
                           GROUP BY m.segment_id"""
                    ),
                    {"new": new, "old": old},
                ).all()
            )
    overlaps: dict[int, dict[str, int]] = {}
    for a, b, shared in conn.execute(
        text(
            """SELECT a.segment_id, b.segment_id, COUNT(*)
               FROM segment_members a JOIN segment_members b
                 ON b.run_id = a.run_id AND b.customer_id = a.customer_id
                AND b.segment_id > a.segment_id
               WHERE a.run_id = :run
               GROUP BY a.segment_id, b.segment_id"""
        ),
        {"run": run_id},
    ):
        overlaps.setdefault(a, {})[str(b)] = shared
        overlaps.setdefault(b, {})[str(a)] = shared
    rows = []
    for segment_id, duration in durations.items():
        members, can_send, with_orders, repeat, orders, revenue = figures_.get(
            segment_id, (0, 0, 0, 0, 0, 0)
        )
        known = segment_id in had
        rows.append(
            {
                "run_id": run_id,
                "segment_id": segment_id,
                "members": members,
                "sendable": int(can_send or 0),
                "with_orders": int(with_orders or 0),
                "repeat_customers": int(repeat or 0),
                "orders": int(orders or 0),
                "revenue_cents": int(revenue or 0),
                "joined": moved["joined"].get(segment_id, 0) if known else None,
                "left": moved["left"].get(segment_id, 0) if known else None,
                "overlaps": overlaps.get(segment_id, {}),
                "duration_ms": duration,
            }
        )
    if rows:
        conn.execute(insert(SegmentRunStat), rows)
    conn.commit()


def delete_segment(session: Session, segment: Segment) -> None:
    """A segment and everything computed for it (committed)."""
    session.execute(delete(SegmentMember).where(SegmentMember.segment_id == segment.id))
    session.execute(delete(SegmentRunStat).where(SegmentRunStat.segment_id == segment.id))
    session.delete(segment)
    session.commit()


def member_page(
    session: Session, segment_id: int, run_id: int, after: int | None, size: int = 50
) -> list[Customer]:
    """Members by customer id, `size` at a time after the id `after` (keyset)."""
    query = (
        select(Customer)
        .join(SegmentMember, SegmentMember.customer_id == Customer.id)
        .where(SegmentMember.run_id == run_id, SegmentMember.segment_id == segment_id)
        .order_by(Customer.id)
        .limit(size)
    )
    if after is not None:
        query = query.where(Customer.id > after)
    return list(session.scalars(query))
