"""Customers: search, sort and page; one customer's orders; privacy export and erasure.

The list stays fast at a million customers because every query walks an index:
sorting and paging use the composite (sort value, id) indexes with a keyset cursor (never
OFFSET), and search probes the email_norm and name indexes by prefix.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import product

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_htmx.responses import HTMXResponseClientRedirect
from flask_wtf import FlaskForm
from sqlalchemy import ColumnElement, and_, bindparam, false, func, or_, select, text
from sqlalchemy.orm import selectinload
from wtforms import StringField
from wtforms.validators import ValidationError

from webapp.extensions import db, htmx
from webapp.models import (
    Campaign,
    Customer,
    CustomerCategoryStat,
    CustomerProfile,
    CustomerTrait,
    EmailEvent,
    Order,
    RefreshRun,
)
from webapp.models._types import UTCDateTime
from webapp.privacy import erase_customer, export_customer
from webapp.segmentation import compiler, why
from webapp.segmentation.dialect import local_midnight_utc
from webapp.segmentation.profiles import CLASSES_CATEGORY, COUNTED, ENGAGED_WINDOW_DAYS
from webapp.segmentation.refresh import current_run_id
from webapp.shop import shop_timezone
from webapp.surveys.stats import customer_responses

bp = Blueprint("customers", __name__, url_prefix="/customers")

PAGE_SIZE = 50
# A search matching at most this many customers is answered from the ids the indexes give;
# a broader one (a single letter) walks the sort index instead, where matches are dense.
SEARCH_CAP = 2000
# Letters whose upper/lower-case variants are probed in the (case-sensitive) name indexes.
NAME_PROBE_LETTERS = 6
MAX_QUERY = 100
ESTIMATE_FROM = 100_000
RECENT_ORDERS = 100
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_INT = 2**63 - 1  # what both databases can bind; larger numbers in a URL are not ours


# --- sorting and keyset paging -------------------------------------------------------------


@dataclass(frozen=True)
class SortOrder:
    """A descending order over customers: by ``column`` (then id), or by id alone.

    A nullable column's NULLs come last, as their own segment ordered by id, so that both
    databases walk the same (column, id) index the same way.
    """

    key: str
    label: str
    column: ColumnElement | None = None
    nullable: bool = False


SORTS: dict[str, SortOrder] = {
    s.key: s
    for s in (
        SortOrder("newest", "Newest"),
        SortOrder("spent", "Spend", Customer.spent_cents),
        SortOrder("orders", "Orders", Customer.orders_count),
        SortOrder("last_order", "Last order", Customer.last_order_at, nullable=True),
    )
}
DEFAULT_SORT = "newest"


@dataclass(frozen=True)
class Cursor:
    """A position in a sort order: the sort value (None for no value) and the id."""

    value: int | datetime | None
    id: int

    def encode(self) -> str:
        if isinstance(self.value, datetime):
            value = str((self.value - _EPOCH) // timedelta(microseconds=1))
        else:
            value = "" if self.value is None else str(self.value)
        return f"{value}_{self.id}"

    @classmethod
    def decode(cls, sort: SortOrder, raw: str | None) -> Cursor | None:
        """The cursor in a page link, or None when it is missing or not one of ours."""
        if not raw:
            return None
        value, _, ident = raw.partition("_")
        try:
            ident_int = int(ident)
            if not 0 < ident_int <= _MAX_INT or len(value) > 20:
                return None
            if sort.column is None:
                return cls(None, ident_int)
            if value == "":
                return cls(None, ident_int) if sort.nullable else None
            number = int(value)
            if abs(number) > _MAX_INT:
                return None
            if sort.key == "last_order":
                return cls(_EPOCH + timedelta(microseconds=number), ident_int)
            return cls(number, ident_int)
        except (ValueError, OverflowError):
            return None

    @classmethod
    def of(cls, sort: SortOrder, customer: Customer) -> Cursor:
        value = getattr(customer, sort.column.key) if sort.column is not None else None
        return cls(value, customer.id)


@dataclass
class CustomerPage:
    customers: list[Customer]
    next: Cursor | None
    previous: Cursor | None


def _segments(sort: SortOrder) -> list[tuple[ColumnElement | None, ColumnElement | None]]:
    """(filter, sort column) per segment of the order; the id always breaks ties."""
    if sort.column is None:
        return [(None, None)]
    if sort.nullable:
        return [(sort.column.is_not(None), sort.column), (sort.column.is_(None), None)]
    return [(None, sort.column)]


def _beyond(column: ColumnElement | None, cursor: Cursor, forward: bool) -> ColumnElement:
    """Rows after (forward) or before the cursor within one segment.

    Written as ``col <= v AND (col < v OR id < i)`` rather than a row-value comparison so
    that SQLite and PostgreSQL both turn the first term into an index range.
    """
    ident = Customer.id
    if column is None:
        return ident < cursor.id if forward else ident > cursor.id
    if forward:
        return and_(column <= cursor.value, or_(column < cursor.value, ident < cursor.id))
    return and_(column >= cursor.value, or_(column > cursor.value, ident > cursor.id))


def _walk(
    where: list[ColumnElement], sort: SortOrder, cursor: Cursor | None, forward: bool, limit: int
) -> list[Customer]:
    """Up to ``limit`` customers from the cursor on, in walking order (reversed when backward)."""
    segments = _segments(sort)
    if cursor is None:
        start = 0 if forward else len(segments) - 1
    else:
        start = 1 if sort.nullable and cursor.value is None else 0
    order = range(start, len(segments)) if forward else range(start, -1, -1)
    found: list[Customer] = []
    for index in order:
        segment_filter, column = segments[index]
        stmt = select(Customer).where(*where)
        if segment_filter is not None:
            stmt = stmt.where(segment_filter)
        if cursor is not None and index == start:
            stmt = stmt.where(_beyond(column, cursor, forward))
        keys = [c for c in (column, Customer.id) if c is not None]
        stmt = stmt.order_by(*(k.desc() if forward else k.asc() for k in keys))
        found += db.session.scalars(stmt.limit(limit - len(found))).all()
        if len(found) >= limit:
            break
    return found


def list_customers(
    where: list[ColumnElement],
    sort: SortOrder,
    after: Cursor | None = None,
    before: Cursor | None = None,
    size: int | None = None,
) -> CustomerPage:
    """One page of customers in ``sort`` order, after or before a cursor (keyset paging)."""
    size = size or PAGE_SIZE
    if before is not None:
        rows = _walk(where, sort, before, forward=False, limit=size + 1)
        if len(rows) > size:
            shown = list(reversed(rows[:size]))
            return CustomerPage(shown, Cursor.of(sort, shown[-1]), Cursor.of(sort, shown[0]))
        # Reached the start: show the (full) first page rather than a short one.
        after = None
    rows = _walk(where, sort, after, forward=True, limit=size + 1)
    shown = rows[:size]
    next_cursor = Cursor.of(sort, shown[-1]) if len(rows) > size else None
    previous = Cursor.of(sort, shown[0]) if after is not None and shown else None
    return CustomerPage(shown, next_cursor, previous)


# --- search --------------------------------------------------------------------------------


def clean_query(raw: str | None) -> str:
    """The search as typed, trimmed; NUL (refused by PostgreSQL) removed, length bounded."""
    return " ".join((raw or "").replace("\x00", "").split())[:MAX_QUERY]


def _successor(text: str) -> str:
    """The smallest string above every string that starts with ``text`` (code point order)."""
    code = ord(text[-1]) + 1
    if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be encoded; skip past them
        code = 0xE000
    return text[:-1] + chr(min(code, 0x10FFFF))


def _prefix_range(column: ColumnElement, prefix: str) -> ColumnElement:
    return and_(column >= prefix, column < _successor(prefix))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def name_prefix(column: ColumnElement, term: str) -> ColumnElement:
    """Names starting with ``term``, any letter case, through the plain index on the column.

    The index is case-sensitive, so it is probed once per case variant of the first few
    letters ("ann": Ann, ANN, aNn, ...); the rest of the term is matched case-insensitively
    among the few rows those ranges hold.
    """
    head = term[:NAME_PROBE_LETTERS]
    variants = {"".join(p) for p in product(*({c.lower(), c.upper()} for c in head))}
    clause = or_(*(_prefix_range(column, v) for v in sorted(variants)))
    if len(term) > len(head):
        clause = and_(clause, column.ilike(_escape_like(term) + "%", escape="\\"))
    return clause


def search_clauses(query: str) -> list[ColumnElement]:
    """Each way a customer can match: email prefix, first or last name prefix, "first last"."""
    if not query:
        return []
    terms = query.split()
    clauses = [name_prefix(Customer.first_name, query)]
    if len(terms) == 1:
        clauses += [
            _prefix_range(Customer.email_norm, query.lower()),
            name_prefix(Customer.last_name, query),
        ]
    else:
        clauses.append(
            and_(
                name_prefix(Customer.last_name, terms[-1]),
                name_prefix(Customer.first_name, terms[0]),
            )
        )
    return clauses


def search_scan(query: str) -> ColumnElement:
    """The same matches as search_clauses, written so that no index can serve them.

    For a broad search (more than SEARCH_CAP matches) the page must come from walking the
    sort index and filtering, where matches are dense; index-friendly ranges here would
    tempt PostgreSQL into collecting and sorting every match (0.4 s at a million rows).
    """
    terms = query.split()

    def starts(column: ColumnElement, term: str) -> ColumnElement:
        return column.ilike(_escape_like(term) + "%", escape="\\")

    if len(terms) == 1:
        return or_(
            starts(Customer.first_name, query),
            starts(Customer.last_name, query),
            starts(Customer.email_norm, query),
        )
    return or_(
        starts(Customer.first_name, query),
        and_(starts(Customer.last_name, terms[-1]), starts(Customer.first_name, terms[0])),
    )


def search_filter(query: str) -> tuple[list[ColumnElement], int | None]:
    """The WHERE terms for a search and the number of matches (None: more than SEARCH_CAP).

    Each clause is probed on its own index with a LIMIT, so a search costs a few bounded
    index range scans whatever the table size.
    """
    clauses = search_clauses(query)
    if not clauses:
        return [], None
    ids: set[int] = set()
    for clause in clauses:
        ids.update(db.session.scalars(select(Customer.id).where(clause).limit(SEARCH_CAP + 1)))
        if len(ids) > SEARCH_CAP:
            return [search_scan(query)], None
    if not ids:
        return [false()], 0
    return [Customer.id.in_(sorted(ids))], len(ids)


def customer_count() -> tuple[int, bool]:
    """How many customers the shop has, and whether that figure is exact.

    PostgreSQL counts by reading the whole table (0.3 s at a million rows), so above
    ESTIMATE_FROM rows its statistics' estimate is shown instead; SQLite counts a narrow
    index and stays exact.
    """
    if db.engine.dialect.name == "postgresql":
        estimate = db.session.scalar(
            text("SELECT reltuples::bigint FROM pg_class WHERE oid = 'customers'::regclass")
        )
        if estimate is not None and estimate >= ESTIMATE_FROM:
            return int(estimate), False
    return db.session.scalar(select(func.count()).select_from(Customer)) or 0, True


def any_customers() -> bool:
    return db.session.scalar(select(Customer.id).limit(1)) is not None


# --- one customer --------------------------------------------------------------------------


@dataclass
class CustomerTotals:
    orders: int
    cancelled: int
    spend: dict[str, int]  # currency -> net spend in minor units, cancelled orders excluded
    refunded: dict[str, int]


def customer_totals(customer: Customer) -> CustomerTotals:
    """Totals over every order of the customer (not only the ones shown)."""
    rows = db.session.execute(
        select(
            Order.currency,
            func.count(Order.id),
            func.count(Order.cancelled_at),
            func.coalesce(
                func.sum(Order.total_cents - Order.refunded_cents).filter(
                    Order.cancelled_at.is_(None)
                ),
                0,
            ),
            func.coalesce(func.sum(Order.refunded_cents).filter(Order.cancelled_at.is_(None)), 0),
        )
        .where(Order.customer_id == customer.id)
        .group_by(Order.currency)
        .order_by(Order.currency)
    ).all()
    return CustomerTotals(
        orders=sum(r[1] for r in rows),
        cancelled=sum(r[2] for r in rows),
        spend={r[0]: int(r[3]) for r in rows},
        refunded={r[0]: int(r[4]) for r in rows if r[4]},
    )


def recent_orders(customer: Customer, limit: int = RECENT_ORDERS) -> list[Order]:
    return list(
        db.session.scalars(
            select(Order)
            .where(Order.customer_id == customer.id)
            .options(selectinload(Order.lines))
            .order_by(Order.placed_at.desc(), Order.id.desc())
            .limit(limit)
        )
    )


# --- the profile and its why ------------------------------------------------------------


@dataclass
class ProfileWhy:
    """The customer as the current refresh run sees them, with reasons in words."""

    run: RefreshRun
    profile: CustomerProfile | None  # None: the customer arrived after the run
    rfm: str = ""
    lifecycle: str = ""
    behaviours: list[why.Reason] | None = None
    traits: list[why.TraitWhy] | None = None


def seasonal_share(customer_id: int, quarter: int, run: RefreshRun) -> float | None:
    """The share of the customer's counted orders (up to the run's as-of day) placed in
    calendar quarter `quarter` of the shop's time zone, as the refresh counts them."""
    tz = shop_timezone()
    cutoff = local_midnight_utc(run.as_of + timedelta(days=1), tz)
    placed = db.session.scalars(
        text(f"SELECT o.placed_at FROM orders o WHERE o.customer_id = :customer AND {COUNTED}")
        .bindparams(bindparam("cutoff", type_=UTCDateTime()))
        .columns(placed_at=UTCDateTime()),
        {"customer": customer_id, "cutoff": cutoff},
    ).all()
    if not placed:
        return None
    quarters = Counter((at.astimezone(tz).month - 1) // 3 + 1 for at in placed)
    return quarters[quarter] / len(placed)


def last_engagement(customer_id: int, run: RefreshRun) -> why.Engagement | None:
    """The customer's latest open or click among those that made the run count them as
    engaged: within 90 days up to its as-of day."""
    scope = compiler.Scope(run.id, run.as_of, shop_timezone())
    row = db.session.execute(
        select(EmailEvent.event, EmailEvent.occurred_at, Campaign.name)
        .outerjoin(Campaign, Campaign.id == EmailEvent.campaign_id)
        .where(
            EmailEvent.customer_id == customer_id,
            compiler.opened(),
            EmailEvent.occurred_at >= scope.since(ENGAGED_WINDOW_DAYS),
            EmailEvent.occurred_at < scope.cutoff,
        )
        .order_by(EmailEvent.occurred_at.desc(), EmailEvent.id.desc())
        .limit(1)
    ).first()
    return why.Engagement(*row) if row else None


def profile_why(customer: Customer) -> ProfileWhy | None:
    """None before the first refresh."""
    run_id = current_run_id()
    if run_id is None:
        return None
    run = db.session.get(RefreshRun, run_id)
    profile = db.session.get(CustomerProfile, (run_id, customer.id))
    if profile is None:
        return ProfileWhy(run, None)
    tz = shop_timezone()
    share = None
    if profile.is_seasonal and profile.seasonal_quarter:
        share = seasonal_share(customer.id, profile.seasonal_quarter, run)
    classes = (
        db.session.get(CustomerCategoryStat, (run_id, customer.id, CLASSES_CATEGORY))
        if profile.is_class_taker
        else None
    )
    traits = db.session.scalars(
        select(CustomerTrait).where(
            CustomerTrait.run_id == run_id, CustomerTrait.customer_id == customer.id
        )
    )
    dimensions = [*why.CORE_DIMENSIONS, *sorted((run.counts or {}).get("traits") or {})]
    return ProfileWhy(
        run,
        profile,
        rfm=why.rfm_reason(profile),
        lifecycle=why.lifecycle_reason(profile, run.as_of, tz),
        behaviours=why.behaviour_reasons(
            profile,
            tz,
            seasonal_share=share,
            class_orders=classes.orders if classes else None,
            class_last_on=classes.last_purchase_on if classes else None,
            engagement=last_engagement(customer.id, run) if profile.is_engaged else None,
        ),
        traits=why.traits_why(traits, tz, dimensions),
    )


ERASE_WORD = "ERASE"


class EraseForm(FlaskForm):
    confirm = StringField(f"Type {ERASE_WORD} to confirm")

    def validate_confirm(self, field: StringField) -> None:
        if (field.data or "").strip().upper() != ERASE_WORD:
            raise ValidationError(f"Type {ERASE_WORD} to erase this customer.")


# --- views ---------------------------------------------------------------------------------


def _wants_partial(target: str) -> bool:
    """An htmx request for one piece of the page (a history restore needs the whole page)."""
    return bool(htmx) and not htmx.history_restore_request and htmx.target == target


@bp.get("/")
def index():
    query = clean_query(request.args.get("q"))
    sort = SORTS.get(request.args.get("sort", ""), SORTS[DEFAULT_SORT])
    where, matches = search_filter(query)
    page = list_customers(
        where,
        sort,
        after=Cursor.decode(sort, request.args.get("after")),
        before=Cursor.decode(sort, request.args.get("before")),
    )
    context = {
        "q": query,
        "sort": sort,
        "sorts": SORTS.values(),
        "page": page,
        "matches": matches,
        "search_cap": SEARCH_CAP,
    }
    partial = _wants_partial("customer-results")
    if not partial:
        context["total"], context["total_exact"] = customer_count()
    if not page.customers:
        context["any_customers"] = any_customers()
    template = "customers/_results.html" if partial else "customers/index.html"
    response = Response(render_template(template, **context))
    # The same URL answers with a fragment or a page: caches must tell them apart.
    response.vary.add("HX-Request")
    return response


def customer_or_404(customer_id: int) -> Customer:
    customer = db.session.get(Customer, customer_id) if customer_id <= _MAX_INT else None
    if customer is None:
        abort(404, "There is no such customer.")
    return customer


def _render_customer(customer: Customer, form: EraseForm) -> str:
    return render_template(
        "customers/show.html",
        customer=customer,
        orders=recent_orders(customer),
        totals=customer_totals(customer),
        survey_responses=customer_responses(db.session, customer.id),
        why=profile_why(customer),
        recent_limit=RECENT_ORDERS,
        form=form,
    )


@bp.get("/<int:customer_id>")
def show(customer_id: int):
    return _render_customer(customer_or_404(customer_id), EraseForm())


@bp.get("/<int:customer_id>/export")
def export(customer_id: int):
    customer = customer_or_404(customer_id)
    body = json.dumps(export_customer(customer), indent=2, ensure_ascii=False)
    return Response(
        body,
        mimetype="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="customer-{customer.id}.json"',
            "Cache-Control": "no-store",
        },
    )


@bp.post("/<int:customer_id>/erase")
def erase(customer_id: int):
    customer = customer_or_404(customer_id)
    show_url = url_for("customers.show", customer_id=customer.id)
    if customer.erased_at is not None:
        flash(f"Customer #{customer.id} was already erased.")
    else:
        form = EraseForm()
        if not form.validate_on_submit():
            if _wants_partial("erase-panel"):
                return render_template("customers/_erase.html", customer=customer, form=form)
            return _render_customer(customer, form), 422
        erase_customer(customer)
        flash(f"Customer #{customer.id} was erased; their orders stay in the shop's totals.")
    if htmx:
        return HTMXResponseClientRedirect(show_url)
    return redirect(show_url, code=303)
