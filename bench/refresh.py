"""Time a full profiles refresh against the fastest hand-written SQL, on SQLite and PostgreSQL.

    python bench/refresh.py --customers 100000 --db both --repeat 3

Generates N customers, about 10N orders and 20N order lines (skewed: most customers buy
once or twice, a few hundreds of times), 5% of customers with survey answers that declare
traits, into a database kept for the next run (bench/data/refresh-N.db; PostgreSQL database
patchwork_bench_refresh_N). Then, per engine and repeat, times:

- **refresh**: `webapp.segmentation.refresh.run_refresh` (what `patchwork refresh` runs);
- **baseline**: recency, frequency, monetary, the three RANK-based scores and each customer's
  top category by spend, into a table: on SQLite staged in temporary tables keyed by
  customer, on PostgreSQL one statement with work_mem 1 GB (CEILINGS.md's designs).

Prints one JSON object: medians, the ratio refresh / baseline per engine, and the matching
figures of ../shared/CEILINGS.md. Goal (issue 4): refresh at most 3x the baseline.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sqlite3
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

from webapp import create_app  # noqa: E402
from webapp.database import ensure_database  # noqa: E402
from webapp.extensions import db  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
PG_ADMIN = os.environ.get(
    "PATCHWORK_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
AS_OF = date(2025, 6, 30)
TIMEZONE = "Europe/Berlin"
CATEGORIES = ["yarn", "needles", "crochet", "fabric", "thread", "embroidery", "paint",
              "brushes", "canvas", "paper", "clay", "beads", "classes"]  # fmt: skip
TIERS = ["starter", "standard", "premium"]
CEILINGS = {  # ../shared/CEILINGS.md, "refresh" at 100k / 1M customers, seconds
    "postgresql": {100_000: 2.6, 1_000_000: 34},
    "sqlite": {100_000: 5.2, 1_000_000: 80},
}


def orders_per_customer(rng: random.Random, n: int) -> list[int]:
    """Skewed counts averaging about 10: a lognormal with median 1-2, capped at 600."""
    counts = [min(600, 1 + int(math.exp(rng.gauss(0.45, 1.95)))) for _ in range(n)]
    return counts


def generate(n: int, seed: int = 7):
    """Yield (table, row tuple) in foreign-key order; placed_at as aware UTC datetimes."""
    rng = random.Random(seed)
    start = datetime(2022, 7, 1, tzinfo=UTC)
    span = int((datetime(2025, 7, 5, tzinfo=UTC) - start).total_seconds())
    now = datetime(2025, 7, 6, tzinfo=UTC)
    for cid in range(1, n + 1):
        email = f"c{cid}@example.com"
        yield "customers", (cid, f"c{cid}", email, email, False, 0, 0, now, now)
    yield "surveys", (1, "profile", "active", "{}", "{}", now, now)
    order_id = line_id = response_id = 0
    for cid, count in enumerate(orders_per_customer(rng, n), start=1):
        for _ in range(count):
            order_id += 1
            placed = start + timedelta(seconds=rng.randrange(span))
            total = rng.choice((1500, 2500, 4200, 6900, 12000, 25000))
            refunded = total if rng.random() < 0.03 else (500 if rng.random() < 0.05 else 0)
            cancelled = placed if rng.random() < 0.02 else None
            status = "voided" if rng.random() < 0.01 else "paid"
            yield "orders", (order_id, f"#{order_id}", cid, placed, total, refunded, status,
                             cancelled, "USD", "", now, now)  # fmt: skip
            favourite = CATEGORIES[cid % len(CATEGORIES)]
            for position in range(1, rng.choice((1, 1, 2, 2, 3, 3)) + 1):
                line_id += 1
                category = favourite if rng.random() < 0.6 else rng.choice(CATEGORIES)
                yield "order_lines", (line_id, order_id, position, "item", rng.randrange(1, 4),
                                      rng.choice((300, 750, 1200, 2400)), category,
                                      rng.choice(TIERS))  # fmt: skip
        if rng.random() < 0.05:
            response_id += 1
            at = start + timedelta(seconds=rng.randrange(span))
            yield "survey_responses", (response_id, f"r{response_id}", 1, cid, "embed", False,
                                       "desktop", at, at)  # fmt: skip
            yield "survey_answers", (response_id, response_id, 1, "craft", "{}", at)
            craft = rng.choice(("knitting", "painting", "sewing", "pottery"))
            skill = rng.choice(("beginner", "intermediate", "experienced"))
            for k, (dimension, value) in enumerate((("craft", craft), ("skill", skill))):
                yield "declared_traits", (2 * response_id + k, response_id, response_id,
                                          dimension, value, at)  # fmt: skip


COLUMNS = {
    "customers": "id, external_id, email, email_norm, accepts_marketing, orders_count, "
    "spent_cents, created_at, updated_at",
    "surveys": "id, slug, status, definition, published, created_at, updated_at",
    "orders": "id, external_id, customer_id, placed_at, total_cents, refunded_cents, "
    "financial_status, cancelled_at, currency, tags, created_at, updated_at",
    "order_lines": "id, order_id, position, name, quantity, price_cents, category, tier",
    "survey_responses": "id, public_id, survey_id, customer_id, channel, identity_verified, "
    "device, shown_at, started_at",
    "survey_answers": "id, response_id, survey_id, question_id, value, answered_at",
    "declared_traits": "id, answer_id, response_id, dimension, value, declared_at",
}


def sqlite_value(value):
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def load_sqlite(path: Path, n: int) -> None:
    conn = sqlite3.connect(path)
    batches: dict[str, list] = {t: [] for t in COLUMNS}

    def flush(table: str) -> None:
        cols = COLUMNS[table]
        marks = ", ".join("?" * len(cols.split(",")))
        conn.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", batches[table])
        batches[table].clear()

    for table, row in generate(n):
        batches[table].append(tuple(sqlite_value(v) for v in row))
        if len(batches[table]) >= 50_000:
            flush(table)
    for table in COLUMNS:  # dict order is foreign-key order
        flush(table)
    conn.commit()
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def copy_text(value) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)  # generated values hold no tabs, newlines or backslashes


def load_postgresql(url: str, n: int) -> None:
    """COPY each table from a spool file (rows are generated interleaved, COPY wants one
    table at a time), in foreign-key order."""
    import tempfile

    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    DATA.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=DATA) as spool:
        files = {t: open(Path(spool) / t, "w") for t in COLUMNS}  # noqa: SIM115
        for table, row in generate(n):
            files[table].write("\t".join(map(copy_text, row)) + "\n")
        for handle in files.values():
            handle.close()
        with psycopg.connect(plain) as conn, conn.cursor() as cur:
            for table in COLUMNS:
                statement = f"COPY {table} ({COLUMNS[table]}) FROM STDIN"
                with cur.copy(statement) as copy, open(Path(spool) / table, "rb") as source:
                    while chunk := source.read(1 << 20):
                        copy.write(chunk)
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
                )
            conn.commit()
            cur.execute("ANALYZE")


def prepare(engine_name: str, n: int) -> str:
    """The database URL of a loaded shop of n customers, made the first time."""
    if engine_name == "sqlite":
        DATA.mkdir(parents=True, exist_ok=True)
        path = DATA / f"refresh-{n}.db"
        url = f"sqlite:///{path}"
        if not path.exists():
            partial = path.with_name(path.name + ".partial")
            partial.unlink(missing_ok=True)
            app = create_app("default", {"DATABASE_URL": f"sqlite:///{partial}"})
            ensure_database(app)
            with app.app_context():
                db.engine.dispose()  # no pooled connection may keep a WAL of its own
            started = time.perf_counter()
            load_sqlite(partial, n)
            print(f"loaded sqlite in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            for suffix in ("-wal", "-shm", ".lock"):
                Path(f"{partial}{suffix}").unlink(missing_ok=True)
            partial.replace(path)
        return url
    name = f"patchwork_bench_refresh_{n}"
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if exists.scalar() is None:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                ensure_database(create_app("default", {"DATABASE_URL": url}))
                started = time.perf_counter()
                load_postgresql(url, n)
                print(f"loaded pg in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            except BaseException:
                conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                raise
    admin.dispose()
    return url


COUNTED = """o.customer_id IS NOT NULL AND o.cancelled_at IS NULL
    AND (o.financial_status IS NULL OR lower(o.financial_status) NOT IN ('voided', 'cancelled'))
    AND o.total_cents - o.refunded_cents > 0 AND o.placed_at < :cutoff"""


def baseline_sqlite(conn, cutoff: str, as_of_day: int) -> None:
    statements = [
        "DROP TABLE IF EXISTS b_orders",
        "DROP TABLE IF EXISTS b_cat",
        "DROP TABLE IF EXISTS bench_baseline",
        "CREATE TEMP TABLE b_orders (customer_id INTEGER PRIMARY KEY, frequency INTEGER, "
        "monetary INTEGER, last_day INTEGER)",
        f"""INSERT INTO b_orders SELECT o.customer_id, COUNT(*),
              SUM(o.total_cents - o.refunded_cents),
              CAST(julianday(MAX(o.placed_at)) - 2440587.5 AS INTEGER)
            FROM orders o WHERE {COUNTED} GROUP BY o.customer_id""",
        "CREATE TEMP TABLE b_cat (customer_id INTEGER, category TEXT, spend INTEGER, "
        "PRIMARY KEY (customer_id, category))",
        f"""INSERT INTO b_cat SELECT o.customer_id, COALESCE(l.category, ''),
              SUM(l.quantity * l.price_cents)
            FROM orders o JOIN order_lines l ON l.order_id = o.id
            WHERE {COUNTED} GROUP BY o.customer_id, COALESCE(l.category, '')""",
        f"""CREATE TEMP TABLE bench_baseline AS
            SELECT b.customer_id, {as_of_day} - b.last_day AS recency_days, b.frequency,
                   b.monetary,
                   1 + 5 * (RANK() OVER (ORDER BY b.last_day) - 1) / COUNT(*) OVER () AS r,
                   1 + 5 * (RANK() OVER (ORDER BY b.frequency) - 1) / COUNT(*) OVER () AS f,
                   1 + 5 * (RANK() OVER (ORDER BY b.monetary) - 1) / COUNT(*) OVER () AS m,
                   (SELECT c.category FROM b_cat c WHERE c.customer_id = b.customer_id
                    ORDER BY c.spend DESC, c.category LIMIT 1) AS top_category
            FROM b_orders b""",
    ]
    for statement in statements:
        conn.execute(text(statement), {"cutoff": cutoff})
    conn.commit()


def baseline_postgresql(conn, cutoff: datetime, as_of_day: int) -> None:
    conn.execute(text("SET work_mem = '1GB'"))
    conn.execute(text("DROP TABLE IF EXISTS bench_baseline"))
    conn.execute(
        text(
            f"""CREATE TEMP TABLE bench_baseline AS
            WITH per_order AS (
              SELECT o.customer_id, COUNT(*) AS frequency,
                     SUM(o.total_cents - o.refunded_cents) AS monetary,
                     (CAST(MAX(o.placed_at) AT TIME ZONE 'UTC' AS DATE) - DATE '1970-01-01')
                     AS last_day
              FROM orders o WHERE {COUNTED} GROUP BY o.customer_id),
            per_cat AS (
              SELECT DISTINCT ON (o.customer_id) o.customer_id, l.category
              FROM orders o JOIN order_lines l ON l.order_id = o.id
              WHERE {COUNTED}
              GROUP BY o.customer_id, l.category
              ORDER BY o.customer_id, SUM(l.quantity * l.price_cents) DESC, l.category)
            SELECT b.customer_id, {as_of_day} - b.last_day AS recency_days, b.frequency,
                   b.monetary,
                   1 + 5 * (RANK() OVER (ORDER BY b.last_day) - 1) / COUNT(*) OVER () AS r,
                   1 + 5 * (RANK() OVER (ORDER BY b.frequency) - 1) / COUNT(*) OVER () AS f,
                   1 + 5 * (RANK() OVER (ORDER BY b.monetary) - 1) / COUNT(*) OVER () AS m,
                   c.category AS top_category
            FROM per_order b LEFT JOIN per_cat c ON c.customer_id = b.customer_id"""
        ),
        {"cutoff": cutoff},
    )
    conn.commit()


def time_baseline(engine_name: str, url: str) -> float:
    engine = create_engine(url)
    cutoff = datetime(AS_OF.year, AS_OF.month, AS_OF.day, tzinfo=UTC) + timedelta(days=1)
    as_of_day = (AS_OF - date(1970, 1, 1)).days
    with engine.connect() as conn:
        started = time.perf_counter()
        if engine_name == "sqlite":
            conn.execute(text("PRAGMA temp_store = MEMORY"))
            conn.execute(text("PRAGMA cache_size = -262144"))
            baseline_sqlite(conn, cutoff.strftime("%Y-%m-%d %H:%M:%S.%f"), as_of_day)
        else:
            baseline_postgresql(conn, cutoff, as_of_day)
        elapsed = time.perf_counter() - started
        rows = conn.execute(text("SELECT COUNT(*) FROM bench_baseline")).scalar()
    engine.dispose()
    assert rows, "the baseline computed nothing"
    return elapsed


# The builder's live count, timed on trees an owner builds: a template, and a nested mix.
LIVE_TREES = {
    "knitters": {"match": "all", "rules": [
        {"field": "trait", "op": "in", "dimension": "craft", "value": ["knitting"]}]},
    "lapsed big spenders": {"match": "all", "rules": [
        {"field": "lifecycle", "op": "in", "value": ["lapsed", "churned"]},
        {"field": "monetary", "op": "ge", "value": "200"},
        {"match": "any", "rules": [
            {"field": "category", "op": "has", "category": "yarn", "within_days": 365},
            {"field": "trait", "op": "in", "dimension": "skill", "value": ["beginner"]},
            {"field": "r", "op": "ge", "value": 4}]}]},
}  # fmt: skip


def time_pages(app) -> dict:
    """Median server time of the owner's pages at this scale (test client, logged in):
    the dashboard, the segments list, the largest segment's page, and the customer page of
    the customer with the most orders (goal: under 300 ms each)."""
    from sqlalchemy import select

    from webapp.auth import create_user
    from webapp.models import Customer, SegmentRunStat, User

    user = db.session.scalar(select(User).limit(1)) or create_user(
        "bench@example.com", "bench-password", role="owner"
    )
    db.session.commit()
    biggest = db.session.scalar(
        select(SegmentRunStat.segment_id).order_by(SegmentRunStat.members.desc()).limit(1)
    )
    busiest = db.session.scalar(select(Customer.id).order_by(Customer.orders_count.desc()))
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = str(user.id)
        session["_fresh"] = True
    pages = {
        "dashboard": "/",
        "segments": "/segments/",
        "segment": f"/segments/{biggest}",
        "segment count": f"/segments/{biggest}/count",
        "customer": f"/customers/{busiest}",
        "customer segments": f"/segments/for-customer/{busiest}",
    }
    timings = {}
    for name, path in pages.items():
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            response = client.get(path)
            times.append(time.perf_counter() - t0)
            assert response.status_code == 200, (path, response.status_code)
        timings[name] = round(statistics.median(times) * 1000)
    return timings


def time_refresh(url: str) -> tuple[float, dict]:
    from sqlalchemy import func, select

    from webapp.models import SegmentRunStat, ShopSettings
    from webapp.segmentation import segments
    from webapp.segmentation.refresh import run_refresh
    from webapp.segmentation.rules import validate

    app = create_app("default", {"DATABASE_URL": url})
    with app.app_context():
        shop = db.session.get(ShopSettings, 1)
        shop.timezone = TIMEZONE
        db.session.commit()
        segments.install_templates(db.session)  # the "20 template segments"
        started = time.perf_counter()
        run = run_refresh(as_of=AS_OF, trigger="bench")
        elapsed = time.perf_counter() - started
        segments_ms = db.session.scalar(
            select(func.sum(SegmentRunStat.duration_ms)).where(SegmentRunStat.run_id == run.id)
        )
        scope = segments.live_scope(db.session)
        live = {}
        for name, tree in LIVE_TREES.items():
            tree = validate(tree)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                segments.live_count(db.session, tree, scope)
                times.append(time.perf_counter() - t0)
            live[name] = round(statistics.median(times), 3)
        steps = {
            "customers": run.counts["customers"],
            "with_orders": run.counts["with_orders"],
            "segments": len(run.counts.get("segments", {})),
            "segments_s": round((segments_ms or 0) / 1000, 2),
            "live_count_s": live,
            "pages_ms": time_pages(app),
        }
        db.session.remove()
        db.engine.dispose()
    return elapsed, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    engines = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    report: dict = {"customers": args.customers}
    for engine_name in engines:
        url = prepare(engine_name, args.customers)
        refresh_times, baseline_times = [], []
        counts: dict = {}
        for _ in range(args.repeat):
            baseline_times.append(time_baseline(engine_name, url))
            elapsed, counts = time_refresh(url)
            refresh_times.append(elapsed)
        refresh_s = statistics.median(refresh_times)
        baseline_s = statistics.median(baseline_times)
        report[engine_name] = {
            "refresh_s": round(refresh_s, 2),
            "baseline_s": round(baseline_s, 2),
            "ratio": round(refresh_s / baseline_s, 2),
            "refresh_runs_s": [round(t, 2) for t in refresh_times],
            "baseline_runs_s": [round(t, 2) for t in baseline_times],
            "ceiling_baseline_s": CEILINGS[engine_name].get(args.customers),
            **counts,
        }
        print(json.dumps({engine_name: report[engine_name]}), file=sys.stderr)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
