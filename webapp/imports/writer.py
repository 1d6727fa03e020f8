"""The one writer of orders: every source (CSV files, the JSON API, Shopify's webhooks)
hands it normalised OrderRecords and it upserts customers, orders and order lines.

Per batch it runs a fixed number of statements whatever the batch size: one SELECT each
for erased emails, existing customers, their latest orders, existing orders and their
lines; bulk INSERTs (COPY on PostgreSQL, one driver executemany on SQLite) with one SELECT
each to learn the new ids; executemany UPDATEs of what changed; and one set-based UPDATE
of the touched customers' totals (for a file, once at its end: see OrderWriter). No ORM
objects, no per-row queries.

Each call of OrderWriter.write (and of upsert_orders) is one short transaction, committed
before it returns (rolled back for a dry run).

Rules:
- Orders match by external_id, else by shopify_id. Customers match by external id, else
  by normalised email (trimmed, lower-case); Customer.email keeps the spelling as written.
- A record's ``lines`` is the order's complete list: lines that differ replace the stored
  ones. Rows that change nothing count nowhere in the report.
- Name, city and country come from the customer's newest order; older evidence never
  overwrites newer.
- Accepts Marketing is consent evidence dated by the order's time: only evidence newer than
  the customer's consent_at changes it, never evidence older than an unsubscribe, and never
  for an erased customer.
- An email whose hash is in ErasedEmail attaches its orders to the anonymised customer row
  and stores no personal data.
- Customer.orders_count, spent_cents (total - refunded) and last_order_at count the orders
  that are not cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import (
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from webapp.catalog import Categoriser
from webapp.extensions import db
from webapp.imports.bulk import (
    aware,
    bulk_insert,
    bulk_time,
    custom_plans,
    in_keys,
    relax_commit,
    settle,
    sqlite_new_ids,
)
from webapp.imports.matching import (
    CUSTOMER_FIELDS,
    PROFILE_FIELDS,
    CustomerResolver,
    CustomerSlot,
    FileTotals,
)
from webapp.imports.records import ImportReport, OrderRecord
from webapp.models import Customer, ErasedEmail, Order, OrderLine
from webapp.privacy import email_hash

customers_t = Customer.__table__
orders_t = Order.__table__
lines_t = OrderLine.__table__

ORDER_FIELDS = (
    "external_id",
    "shopify_id",
    "customer_id",
    "placed_at",
    "currency",
    "total_cents",
    "refunded_cents",
    "financial_status",
    "cancelled_at",
    "source",
    "tags",
)


def upsert_orders(
    records: list[OrderRecord],
    source: str,
    report: ImportReport | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Upsert one batch of orders and commit (or, with dry_run, only count what would change).

    ``source`` names where the evidence came from ("shopify_csv", "api", "shopify_webhook");
    it becomes Customer.consent_source. Counts are added to ``report`` when one is given.
    """
    writer = OrderWriter(source, report=report, dry_run=dry_run)
    writer.write(records)
    return writer.report


@dataclass
class _Delta:
    """What one batch changed; added to the report only once the batch is committed."""

    customers_created: int = 0
    orders_created: int = 0
    orders_updated: int = 0
    lines: int = 0
    updated_customer_ids: set[int] = field(default_factory=set)
    created_customer_ids: set[int] = field(default_factory=set)
    new_customer_keys: set = field(default_factory=set)
    new_order_keys: set = field(default_factory=set)
    totals_due: set[int] = field(default_factory=set)


class OrderWriter:
    """Writes batch after batch of one import, remembering what it counted already, so that
    a customer updated in two batches counts once and a dry run counts a customer created
    earlier in the same file once.

    Given a whole file's FileTotals, it inserts new customers with their totals over the
    file and leaves customer totals alone until finish(), which brings those of every
    customer the file's orders belong to (or left) up to date. Until then the totals of a
    customer created by the import run ahead of its stored orders; an import interrupted
    on the way is completed, totals included, by running it again.
    """

    def __init__(
        self,
        source: str,
        report: ImportReport | None = None,
        dry_run: bool = False,
        relaxed_commit: bool = False,
        file_totals: FileTotals | None = None,
    ):
        self.source = source
        self.file_totals = file_totals
        self.relaxed_commit = relaxed_commit
        self.report = report if report is not None else ImportReport()
        self.dry_run = dry_run
        self.categoriser = Categoriser.load(db.session)
        self._updated_customers: set[int] = set()
        self._created_customers: set[int] = set()  # created by this import: never "updated"
        self._new_customer_keys: set[tuple[str, str]] = set()
        self._new_order_keys: set[str] = set()
        self._totals_due: set[int] = set()  # with file_totals: customers finish() refreshes

    def write(self, records: list[OrderRecord]) -> None:
        """One batch, in its own short transaction; retried once if a concurrent writer
        created the same customer or order in between (the retry then finds it)."""
        if not records:
            return
        for attempt in (1, 2):
            try:
                custom_plans()
                if self.relaxed_commit and not self.dry_run:
                    relax_commit()
                delta = self._batch(records)
                if self.dry_run:
                    db.session.rollback()
                else:
                    db.session.commit()
                break
            except IntegrityError:
                db.session.rollback()
                if attempt == 2:
                    raise
        report = self.report
        report.customers_created += delta.customers_created
        new_updates = delta.updated_customer_ids - self._updated_customers - self._created_customers
        report.customers_updated += len(new_updates)
        self._updated_customers |= new_updates
        self._created_customers |= delta.created_customer_ids
        report.orders_created += delta.orders_created
        report.orders_updated += delta.orders_updated
        report.lines += delta.lines
        if self.dry_run:
            self._new_customer_keys |= delta.new_customer_keys
            self._new_order_keys |= delta.new_order_keys
        self._totals_due |= delta.totals_due

    def finish(self, chunk: int) -> None:
        """With file_totals: bring the totals of the customers of every order written (and
        of those that lost one) up to date, ``chunk`` customers per short transaction.
        Totals that agree are only read, so this is mostly reading."""
        due = sorted(self._totals_due)
        self._totals_due = set()
        for start in range(0, len(due), chunk):
            custom_plans()
            if self.relaxed_commit:
                relax_commit()
            refresh_customer_totals(due[start : start + chunk])
            db.session.commit()
        if self.relaxed_commit:
            settle()

    # --- one batch ------------------------------------------------------------------------

    def _batch(self, records: list[OrderRecord]) -> _Delta:
        session = db.session
        delta = _Delta()
        # The same order twice in one call (API retries): the last one wins.
        records = list({r.external_id: r for r in records}.values())

        norms: dict[int, str] = {}  # id(record) -> normalised email
        for r in records:
            if r.email and (norm := r.email.strip().lower()):
                norms[id(r)] = norm
        emails = set(norms.values())
        any_erased = emails and session.execute(select(ErasedEmail.email_hash).limit(1)).first()
        # Hashing every email is only needed once someone has been erased.
        hashes = {norm: email_hash(norm) for norm in emails} if any_erased else {}
        erased_by_hash: dict[str, int | None] = {}
        if hashes:
            erased_by_hash = dict(
                session.execute(
                    select(ErasedEmail.email_hash, ErasedEmail.customer_id).where(
                        in_keys(ErasedEmail.email_hash, list(hashes.values()))
                    )
                ).all()
            )
        erased_norms = {n: erased_by_hash[h] for n, h in hashes.items() if h in erased_by_hash}

        ext_ids = {r.customer_external_id for r in records if r.customer_external_id}
        live_emails = [n for n in emails if n not in erased_norms]
        stored_customers: list[dict] = []
        if ext_ids or live_emails:
            result = session.execute(
                select(
                    customers_t.c.id,
                    *(customers_t.c[k] for k in CUSTOMER_FIELDS),
                    customers_t.c.unsubscribed_at,
                    customers_t.c.erased_at,
                ).where(
                    or_(
                        in_keys(customers_t.c.external_id, list(ext_ids)),
                        in_keys(customers_t.c.email_norm, live_emails),
                    )
                )
            )
            keys = tuple(result.keys())
            stored_customers = [dict(zip(keys, row, strict=True)) for row in result.all()]
        latest: dict[int, datetime] = {}
        if stored_customers:
            latest = dict(
                session.execute(
                    select(orders_t.c.customer_id, func.max(orders_t.c.placed_at))
                    .where(in_keys(orders_t.c.customer_id, [c["id"] for c in stored_customers]))
                    .group_by(orders_t.c.customer_id)
                ).all()
            )
            # SQLite hands aggregates back without the column type's conversion.
            latest = {k: aware(v) for k, v in latest.items() if v is not None}

        resolver = CustomerResolver(stored_customers, latest)
        order_customer: dict[str, CustomerSlot | int | None] = {}
        for r in records:
            norm = norms.get(id(r))
            if norm is not None and norm in erased_norms:
                order_customer[r.external_id] = erased_norms[norm]
                continue
            slot = resolver.find(r.customer_external_id, norm)
            order_customer[r.external_id] = slot
            if slot is not None:
                self._apply_evidence(slot, r, norm)
                if slot.stored is None and r.cancelled_at is None:
                    # A new customer's orders are all in this batch: its totals are known
                    # here, inserted with it, and left out of the UPDATE of totals.
                    totals = slot.totals
                    totals[0] += 1
                    totals[1] += r.total_cents - r.refunded_cents
                    if totals[2] is None or r.placed_at > totals[2]:
                        totals[2] = r.placed_at

        # Customers: insert the new, update the changed.
        new_slots = [s for s in resolver.slots if s.stored is None]
        changed = [
            s
            for s in resolver.slots
            if s.stored is not None and any(s.values[k] != s.stored[k] for k in CUSTOMER_FIELDS)
        ]
        delta.updated_customer_ids = {s.id for s in changed}
        if self.file_totals is not None:
            for s in new_slots:
                v = s.values
                known = self.file_totals.get(v.get("external_id"), v.get("email_norm"))
                if known is not None:
                    s.totals = list(known)
        for s in new_slots:
            if self.dry_run and any(k in self._new_customer_keys for k in s.keys):
                continue
            delta.customers_created += 1
            delta.new_customer_keys.update(s.keys)
        now = datetime.now(UTC)
        if not self.dry_run:
            if new_slots:
                self._insert_customers(new_slots, now)
                delta.created_customer_ids = {s.id for s in new_slots}
            if changed:
                session.execute(
                    update(customers_t)
                    .where(customers_t.c.id == bindparam("b_id"))
                    .values({k: bindparam(f"b_{k}") for k in (*CUSTOMER_FIELDS, "updated_at")}),
                    [
                        {"b_id": s.id, "b_updated_at": now}
                        | {f"b_{k}": s.values[k] for k in CUSTOMER_FIELDS}
                        for s in changed
                    ],
                )

        # Orders.
        order_ext = [r.external_id for r in records]
        shopify_ids = [r.shopify_id for r in records if r.shopify_id]
        # Stored orders as (id, *ORDER_FIELDS) tuples, compared whole with the records'.
        stored_orders = [
            tuple(row)
            for row in session.execute(
                select(orders_t.c.id, *(orders_t.c[k] for k in ORDER_FIELDS)).where(
                    or_(
                        in_keys(orders_t.c.external_id, order_ext),
                        in_keys(orders_t.c.shopify_id, shopify_ids),
                    )
                )
            )
        ]
        by_ext = {o[1]: o for o in stored_orders}
        by_sid = {o[2]: o for o in stored_orders if o[2]}
        stored_lines: dict[int, list[tuple]] = {}
        if stored_orders:
            for row in session.execute(
                select(
                    lines_t.c.order_id,
                    lines_t.c.sku,
                    lines_t.c.name,
                    lines_t.c.quantity,
                    lines_t.c.price_cents,
                )
                .where(in_keys(lines_t.c.order_id, [o[0] for o in stored_orders]))
                .order_by(lines_t.c.order_id, lines_t.c.position)
            ):
                stored_lines.setdefault(row[0], []).append(tuple(row[1:]))

        new_orders: list[tuple[OrderRecord, tuple]] = []
        updated_orders: list[tuple[tuple, int]] = []  # (values, stored id)
        relined: list[tuple[OrderRecord, int]] = []  # existing orders whose lines change
        touched: set[int] = set()  # customers whose totals these writes change
        owners: set[int] = set()  # customers of all the batch's orders, changed or not
        claimed: set[int] = set()
        for r in records:
            owner = order_customer[r.external_id]
            customer_id = owner.id if isinstance(owner, CustomerSlot) else owner
            if customer_id is None and isinstance(owner, CustomerSlot):
                customer_id = -1  # a customer that a dry run would create
            elif customer_id is not None:
                owners.add(customer_id)
            values = (  # ORDER_FIELDS
                r.external_id,
                r.shopify_id,
                customer_id,
                r.placed_at,
                r.currency,
                r.total_cents,
                r.refunded_cents,
                r.financial_status,
                r.cancelled_at,
                r.source or self.source,
                r.tags or "",
            )
            stored = by_ext.get(r.external_id)
            if stored is None and r.shopify_id:
                stored = by_sid.get(r.shopify_id)
            if stored is not None and stored[0] in claimed:
                stored = None  # matched by shopify_id to an order another record took
            if stored is None:
                if self.dry_run and r.external_id in self._new_order_keys:
                    continue
                new_orders.append((r, values))
                delta.new_order_keys.add(r.external_id)
                if customer_id and customer_id > 0:
                    touched.add(customer_id)
                continue
            stored_id = stored[0]
            claimed.add(stored_id)
            lines_now = [(sku, name, qty, price) for _, name, qty, price, sku in r.lines]
            lines_changed = lines_now != stored_lines.get(stored_id, [])
            if lines_changed:
                relined.append((r, stored_id))
            if lines_changed or values != stored[1:]:
                updated_orders.append((values, stored_id))
                for cid in (customer_id, stored[_CUSTOMER_AT]):
                    if cid and cid > 0:
                        touched.add(cid)

        delta.orders_created = len(new_orders)
        delta.orders_updated = len(updated_orders)
        delta.lines = sum(len(r.lines) for r, _ in new_orders) + sum(
            len(r.lines) for r, _ in relined
        )
        if self.dry_run:
            return delta

        line_rows: list[tuple] = []
        if new_orders:
            to_db = bulk_time()
            stamp = to_db(now)
            bulk_insert(
                orders_t.name,
                (*ORDER_FIELDS, "created_at", "updated_at"),
                [
                    (*v[:3], to_db(v[3]), *v[4:8], to_db(v[8]), *v[9:], stamp, stamp)
                    for _, v in new_orders
                ],
            )
            ids = sqlite_new_ids(orders_t.name, len(new_orders))
            if ids is None:
                by_ext = dict(
                    session.execute(
                        select(orders_t.c.external_id, orders_t.c.id).where(
                            in_keys(orders_t.c.external_id, [r.external_id for r, _ in new_orders])
                        )
                    ).all()
                )
                ids = [by_ext[r.external_id] for r, _ in new_orders]
            for (r, _), order_id in zip(new_orders, ids, strict=True):
                self._line_rows(r, order_id, line_rows)
        if updated_orders:
            session.execute(
                update(orders_t)
                .where(orders_t.c.id == bindparam("b_id"))
                .values({k: bindparam(f"b_{k}") for k in (*ORDER_FIELDS, "updated_at")}),
                [
                    {"b_id": stored_id, "b_updated_at": now}
                    | dict(zip(_ORDER_PARAMS, values, strict=True))
                    for values, stored_id in updated_orders
                ],
            )
        if relined:
            session.execute(
                delete(lines_t).where(in_keys(lines_t.c.order_id, [oid for _, oid in relined]))
            )
            for r, order_id in relined:
                self._line_rows(r, order_id, line_rows)
        if line_rows:
            bulk_insert(lines_t.name, LINE_COLUMNS, line_rows)
        if self.file_totals is not None:
            delta.totals_due = touched | owners
        else:
            touched -= delta.created_customer_ids
            if touched:
                refresh_customer_totals(touched)
        return delta

    def _line_rows(self, r: OrderRecord, order_id: int, out: list[tuple]) -> None:
        for_line = self.categoriser.for_line
        for position, name, quantity, price, sku in r.lines:  # by position: see LineRecord
            out.append((order_id, position, sku, name, quantity, price, *for_line(sku, name)))

    def _insert_customers(self, slots: list[CustomerSlot], now: datetime) -> None:
        """Insert the batch's new customers and learn their ids (on PostgreSQL with one
        SELECT)."""
        to_db = bulk_time()
        stamp = to_db(now)
        rows = []
        for s in slots:
            v = s.values
            count, spent, last = s.totals
            rows.append(
                (
                    *map(v.get, CUSTOMER_FIELDS[:-3]),
                    bool(v.get("accepts_marketing")),
                    v.get("consent_source"),
                    to_db(v.get("consent_at")),
                    count,
                    spent,
                    to_db(last),
                    stamp,
                    stamp,
                )
            )
        bulk_insert(
            customers_t.name,
            (
                *CUSTOMER_FIELDS,
                "orders_count",
                "spent_cents",
                "last_order_at",
                "created_at",
                "updated_at",
            ),
            rows,
        )
        ids = sqlite_new_ids(customers_t.name, len(slots))
        if ids is not None:
            for s, cid in zip(slots, ids, strict=True):
                s.id = cid
            return
        ext_ids = [s.values["external_id"] for s in slots if s.values.get("external_id")]
        emails = [s.values["email_norm"] for s in slots if s.values.get("email_norm")]
        by_ext: dict[str, int] = {}
        by_email: dict[str, int] = {}
        for cid, ext, norm in db.session.execute(
            select(customers_t.c.id, customers_t.c.external_id, customers_t.c.email_norm).where(
                or_(
                    in_keys(customers_t.c.external_id, ext_ids),
                    in_keys(customers_t.c.email_norm, emails),
                )
            )
        ):
            if ext:
                by_ext[ext] = cid
            if norm:
                by_email[norm] = cid
        for s in slots:
            ext, norm = s.values.get("external_id"), s.values.get("email_norm")
            s.id = by_ext[ext] if ext else by_email[norm]

    def _apply_evidence(self, slot: CustomerSlot, r: OrderRecord, norm: str | None) -> None:
        """What this order says about its customer, if it is the newest word on it."""
        if slot.erased:
            return
        values = slot.values
        if slot.profile_at is None or r.placed_at >= slot.profile_at:
            slot.profile_at = r.placed_at
            if norm is not None and values.get("email_norm") == norm:
                values["email"] = r.email.strip()
            for k in PROFILE_FIELDS:
                v = getattr(r, k)
                if v:
                    values[k] = v
        if r.accepts_marketing is None:
            return
        consent_at = values.get("consent_at")
        if consent_at is not None and (
            r.placed_at <= consent_at or r.accepts_marketing == values.get("accepts_marketing")
        ):
            # Older evidence, or newer evidence of the same choice: consent_at stays the time
            # the current choice was first seen.
            return
        unsubscribed = slot.stored["unsubscribed_at"] if slot.stored else None
        if unsubscribed is not None and unsubscribed >= r.placed_at:
            return
        values["accepts_marketing"] = r.accepts_marketing
        values["consent_source"] = self.source
        values["consent_at"] = r.placed_at


_CUSTOMER_AT = 1 + ORDER_FIELDS.index("customer_id")  # in a stored order's tuple
_ORDER_PARAMS = tuple(f"b_{k}" for k in ORDER_FIELDS)

LINE_COLUMNS = (
    "order_id",
    "position",
    "sku",
    "name",
    "quantity",
    "price_cents",
    "product_id",
    "category",
    "tier",
)


def refresh_customer_totals(customer_ids: set[int] | list[int]) -> None:
    """Recompute orders_count, spent_cents and last_order_at of the given customers,
    set-based: one grouped scan of their orders that are not cancelled (spend net of
    refunds), joined in an UPDATE ... FROM; rows that already agree are not rewritten."""
    ids = list(customer_ids)
    o = orders_t.alias("o")
    agg = (
        select(
            o.c.customer_id,
            func.count().label("n"),
            func.sum(o.c.total_cents - o.c.refunded_cents).label("spent"),
            func.max(o.c.placed_at).label("last"),
        )
        .where(in_keys(o.c.customer_id, ids), o.c.cancelled_at.is_(None))
        .group_by(o.c.customer_id)
        .subquery("agg")
    )
    c = customers_t.c
    db.session.execute(
        update(customers_t)
        .where(
            c.id == agg.c.customer_id,
            or_(
                c.orders_count != agg.c.n,
                c.spent_cents != agg.c.spent,
                c.last_order_at.is_distinct_from(agg.c.last),
            ),
        )
        .values(orders_count=agg.c.n, spent_cents=agg.c.spent, last_order_at=agg.c.last)
        .execution_options(synchronize_session=False)
    )
    # Customers left without a live order (all cancelled, or moved to another customer).
    live = select(o.c.id).where(o.c.customer_id == c.id, o.c.cancelled_at.is_(None)).exists()
    db.session.execute(
        update(customers_t)
        .where(in_keys(c.id, ids), ~live, or_(c.orders_count != 0, c.last_order_at.is_not(None)))
        .values(orders_count=0, spent_cents=0, last_order_at=None)
        .execution_options(synchronize_session=False)
    )
