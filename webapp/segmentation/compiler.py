"""One compiler from a rule tree (webapp.segmentation.rules) to one SQL statement.

Every condition reads what a refresh run computed (customer_profiles, customer_traits,
customer_category_stats, all under the run's id) or live tables read through an index
(customers, survey answers, email events up to the as-of day): never order lines. The same
statement serves the refresh (members as of the run's as-of day), the builder's live count
and sample, and the "why" of one customer, so there is no second evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    true,
)

from webapp.models import (
    AnswerChoice,
    Customer,
    CustomerCategoryStat,
    CustomerProfile,
    CustomerTrait,
    EmailEvent,
    SurveyAnswer,
    SurveyResponse,
)
from webapp.segmentation.dialect import local_midnight_utc
from webapp.segmentation.rules import FIELDS, is_group, walk

P = CustomerProfile.__table__.c
C = Customer.__table__.c


@dataclass(frozen=True)
class Scope:
    """Which run's results a tree reads, and the day "within N days" counts back from."""

    run_id: int
    as_of: date
    tz: ZoneInfo

    def since(self, days: int):
        """The UTC instant where "within `days` days of the as-of day" begins."""
        return local_midnight_utc(self.as_of - timedelta(days=days), self.tz)

    @property
    def cutoff(self):
        """The UTC start of the day after as_of: later answers do not count yet."""
        return local_midnight_utc(self.as_of + timedelta(days=1), self.tz)


def sendable() -> ColumnElement[bool]:
    """A customer the shop may email: consented, not unsubscribed, bounced or reported for
    spam, with an address."""
    return and_(
        C.accepts_marketing.is_(True),
        C.unsubscribed_at.is_(None),
        C.bounced_at.is_(None),
        C.spam_reported_at.is_(None),
        C.email_norm.is_not(None),
    )


def opened() -> ColumnElement[bool]:
    """An email event that shows the customer read the mail: a click, or an open by a person
    (a machine open is a mail client fetching the message); as profiles.ENGAGEMENT."""
    e = EmailEvent.__table__.c
    return or_(e.event == "click", and_(e.event == "open", e.machine_open.is_(False)))


def base(scope: Scope, *columns) -> Select:
    """Profiles of the run joined to their customers; erased customers are in no segment."""
    return (
        select(*columns)
        .select_from(CustomerProfile.__table__.join(Customer.__table__, C.id == P.customer_id))
        .where(P.run_id == scope.run_id, C.erased_at.is_(None))
    )


def condition(tree: dict, scope: Scope) -> ColumnElement[bool]:
    """A valid tree as one boolean expression over `base`."""
    if is_group(tree):
        parts = [condition(child, scope) for child in tree["rules"]]
        if tree["match"] == "all":
            return and_(true(), *parts)
        return or_(false(), *parts)
    return _COMPILERS[FIELDS[tree["field"]].kind](tree, scope)


def members(tree: dict, scope: Scope) -> Select:
    """SELECT customer_id of every member."""
    return base(scope, P.customer_id).where(condition(tree, scope))


def counts(tree: dict, scope: Scope) -> Select:
    """SELECT (members, sendable members)."""
    return base(
        scope, func.count(), func.coalesce(func.sum(case((sendable(), 1), else_=0)), 0)
    ).where(condition(tree, scope))


def explain(tree: dict, scope: Scope, customer_id: int) -> Select:
    """SELECT one 0/1 column per node of the tree (in `rules.walk` order) for one customer:
    which conditions and groups hold for them."""
    columns = [
        case((condition(node, scope), 1), else_=0).label(f"n{i}")
        for i, (_, node) in enumerate(walk(tree))
    ]
    return base(scope, *columns).where(P.customer_id == customer_id)


# --- conditions ------------------------------------------------------------------------------

_PROFILE_COLUMN = {
    "recency_days": P.recency_days,
    "frequency": P.frequency,
    "monetary": P.monetary_cents,
    "aov": P.aov_cents,
    "r": P.r,
    "f": P.f,
    "m": P.m,
}
_COMPARE = {
    "lt": lambda c, v: c < v,
    "le": lambda c, v: c <= v,
    "eq": lambda c, v: c == v,
    "ge": lambda c, v: c >= v,
    "gt": lambda c, v: c > v,
    "ne": lambda c, v: c != v,
    "between": lambda c, v: c.between(v[0], v[1]),
}


def _number(node: dict, scope: Scope) -> ColumnElement[bool]:
    column = _PROFILE_COLUMN[node["field"]]
    # A prospect has no R/F/M or recency: no comparison holds for them.
    return and_(column.is_not(None), _COMPARE[node["op"]](column, node["value"]))


def _in(column, values: list[str], op: str) -> ColumnElement[bool]:
    matched = column.in_(values)
    return matched if op == "in" else or_(column.is_(None), not_(matched))


_LIST_COLUMN = {
    "rfm_segment": P.rfm_segment,
    "lifecycle": P.lifecycle,
    "objection": func.lower(P.objection),
    "country": func.lower(C.country),
    "city": func.lower(C.city),
}


def _list(node: dict, scope: Scope) -> ColumnElement[bool]:
    if node["field"] == "device":
        r = SurveyResponse.__table__.c
        answered_on = exists().where(r.customer_id == P.customer_id, r.device.in_(node["value"]))
        return answered_on if node["op"] == "in" else not_(answered_on)
    return _in(_LIST_COLUMN[node["field"]], node["value"], node["op"])


_FLAG_COLUMN = {
    "frequent": P.is_frequent,
    "seasonal": P.is_seasonal,
    "vip": P.is_vip,
    "cart_abandoner": P.is_cart_abandoner,
    "class_taker": P.is_class_taker,
    "engaged": P.is_engaged,
}


def _flag(node: dict, scope: Scope) -> ColumnElement[bool]:
    holds = sendable() if node["field"] == "consent" else _FLAG_COLUMN[node["value"]].is_(True)
    return holds if node["op"] == "is" else not_(holds)


def _trait(node: dict, scope: Scope) -> ColumnElement[bool]:
    t = CustomerTrait.__table__.c
    mine = and_(
        t.run_id == scope.run_id,
        t.customer_id == P.customer_id,
        t.dimension == node["dimension"],
    )
    values = [v for v in node["value"] if v != "unknown"]
    parts = []
    if values:
        parts.append(exists().where(mine, t.value.in_(values)))
    if "unknown" in node["value"]:  # no evidence at all: no row
        parts.append(not_(exists().where(mine)))
    holds = or_(*parts)
    return holds if node["op"] == "in" else not_(holds)


def _answer(node: dict, scope: Scope) -> ColumnElement[bool]:
    ch, a, r = AnswerChoice.__table__.c, SurveyAnswer.__table__.c, SurveyResponse.__table__.c
    answered = (
        select(1)
        .select_from(
            AnswerChoice.__table__.join(SurveyAnswer.__table__, a.id == ch.answer_id).join(
                SurveyResponse.__table__, r.id == a.response_id
            )
        )
        .where(
            r.customer_id == P.customer_id,
            ch.survey_id == node["survey_id"],
            ch.question_id == node["question_id"],
            ch.option_id.in_(node["value"]),
            a.answered_at < scope.cutoff,
        )
    )
    if "within_days" in node:
        answered = answered.where(a.answered_at >= scope.since(node["within_days"]))
    holds = answered.exists()
    return holds if node["op"] == "answered" else not_(holds)


def _category(node: dict, scope: Scope) -> ColumnElement[bool]:
    s = CustomerCategoryStat.__table__.c
    bought = exists().where(
        s.run_id == scope.run_id,
        s.customer_id == P.customer_id,
        s.category == node["category"],
        s.orders >= node["min_orders"],
    )
    if "within_days" in node:
        bought = bought.where(s.last_purchase_on >= scope.as_of - timedelta(node["within_days"]))
    return bought if node["op"] == "has" else not_(bought)


def _engagement(node: dict, scope: Scope) -> ColumnElement[bool]:
    e = EmailEvent.__table__.c
    kind = e.event == "click" if node["op"] == "clicked" else opened()
    found = exists().where(e.customer_id == P.customer_id, kind, e.occurred_at < scope.cutoff)
    if "campaign_id" in node:
        found = found.where(e.campaign_id == node["campaign_id"])
    if "within_days" in node:
        found = found.where(e.occurred_at >= scope.since(node["within_days"]))
    return not_(found) if node["op"] == "not_opened" else found


_COMPILERS = {
    "number": _number,
    "money": _number,
    "list": _list,
    "flag": _flag,
    "trait": _trait,
    "answer": _answer,
    "category": _category,
    "engagement": _engagement,
}
