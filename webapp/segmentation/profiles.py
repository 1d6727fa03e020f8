"""The SQL of a customer's profile: order aggregates, R/F/M scores, RFM segment, lifecycle,
behaviours and per-category order facts, each staged in a keyed temporary table.

Definitions (issue 4): an order counts when it is not cancelled or voided, was placed before
the end of the as-of day, and its amount (total as charged minus refunds) is above zero.
"Within N days" means at most N days before the as-of day, in the shop's time zone.

Behaviours: frequent = F score 5 (the top fifth by number of orders); seasonal = 60%+ of
orders in one calendar quarter, those orders spanning two years or more; VIP = the biggest
spenders, in order, until those before them make 20% of revenue; cart abandoner = answered an
exit-intent survey within 30 days and no counted order since; class taker = bought from the
"classes" category; engaged = opened or clicked a campaign within 90 days. An open counts
only when a person opened the mail: an open SendGrid flags as a machine open (Apple Mail
Privacy Protection fetches every message it delivers) says nothing about the customer.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from webapp.segmentation.staging import RunContext, stage

NEW_CUSTOMER_DAYS = 30
CATEGORY_WINDOW_DAYS = 365
ABANDON_WINDOW_DAYS = 30
ENGAGED_WINDOW_DAYS = 90
VIP_REVENUE_PERCENT = 20
SEASONAL_PERCENT = 60
CLASSES_CATEGORY = "classes"
# Product tiers and the skill each suggests.
TIER_SKILL = {"starter": "beginner", "standard": "intermediate", "premium": "experienced"}

# An email event that shows the customer read the mail: a click (which implies an open the
# mail client may not have reported), or an open by a person; as compiler.opened().
ENGAGEMENT = "(e.event = 'click' OR (e.event = 'open' AND NOT e.machine_open))"
COUNTED = """
    o.customer_id IS NOT NULL AND o.cancelled_at IS NULL
    AND (o.financial_status IS NULL OR lower(o.financial_status) NOT IN ('voided', 'cancelled'))
    AND o.total_cents - o.refunded_cents > 0 AND o.placed_at < :cutoff
"""


def stage_orders(conn: Connection, ctx: RunContext) -> None:
    """st_order_quarters: counted orders per customer and calendar quarter (the one pass
    over orders); st_orders: per customer, their count, spend and first/last order."""
    stage(
        conn,
        ctx,
        "st_order_quarters",
        f"""SELECT o.customer_id, {ctx.dialect.quarter_key("o.placed_at")} AS qk,
                   COUNT(*) AS n,
                   CAST(SUM(o.total_cents - o.refunded_cents) AS BIGINT) AS monetary,
                   MIN(o.placed_at) AS first_at, MAX(o.placed_at) AS last_at
            FROM orders o WHERE {COUNTED}
            GROUP BY o.customer_id, qk""",
        "customer_id, qk",
        {"cutoff": ctx.cutoff_param},
    )
    stage(
        conn,
        ctx,
        "st_orders",
        """SELECT customer_id, CAST(SUM(n) AS BIGINT) AS frequency,
                  CAST(SUM(monetary) AS BIGINT) AS monetary,
                  MIN(first_at) AS first_at, MAX(last_at) AS last_at
           FROM st_order_quarters GROUP BY customer_id""",
        "customer_id",
    )


def stage_categories(conn: Connection, ctx: RunContext) -> None:
    """st_cat: per customer and category, orders, line spend (all time, last 365 days, and
    by tier) and the last purchase: the one pass over order lines."""
    amount = "l.quantity * l.price_cents"

    def total(expr: str) -> str:  # PostgreSQL sums bigints into NUMERIC; keep integers
        return f"CAST(SUM({expr}) AS BIGINT)"

    recent = "o.placed_at >= :since"
    columns = []
    for tier in TIER_SKILL:
        in_tier = f"l.tier = '{tier}'"
        columns.append(f"{total(f'CASE WHEN {in_tier} THEN {amount} ELSE 0 END')} AS tier_{tier}")
        columns.append(
            f"{total(f'CASE WHEN {in_tier} AND {recent} THEN {amount} ELSE 0 END')} "
            f"AS tier_{tier}_365"
        )
    tiers = ",\n".join(columns)
    stage(
        conn,
        ctx,
        "st_cat",
        f"""SELECT o.customer_id, COALESCE(l.category, '') AS category,
                   COUNT(DISTINCT o.id) AS orders, {total(amount)} AS spend,
                   {total(f"CASE WHEN {recent} THEN {amount} ELSE 0 END")} AS spend_365,
                   {tiers},
                   MAX(o.placed_at) AS last_at
            FROM orders o JOIN order_lines l ON l.order_id = o.id
            WHERE {COUNTED}
            GROUP BY o.customer_id, COALESCE(l.category, '')""",
        "customer_id, category",
        {"cutoff": ctx.cutoff_param, "since": ctx.since(CATEGORY_WINDOW_DAYS)},
    )


def stage_seasonal(conn: Connection, ctx: RunContext) -> None:
    """st_seasonal: customers with 60%+ of their orders in one calendar quarter, those
    orders spanning at least two years."""
    stage(
        conn,
        ctx,
        "st_seasonal",
        f"""SELECT q.customer_id, MIN(q.quarter) AS quarter
            FROM (SELECT customer_id, qk % 4 + 1 AS quarter, SUM(n) AS n, COUNT(*) AS years
                  FROM st_order_quarters GROUP BY customer_id, qk % 4 + 1) q
            JOIN st_orders a ON a.customer_id = q.customer_id
            WHERE q.years >= 2 AND 100 * q.n >= {SEASONAL_PERCENT} * a.frequency
            GROUP BY q.customer_id""",
        "customer_id",
    )


def stage_abandoners(conn: Connection, ctx: RunContext) -> None:
    """st_abandon: who answered an exit-intent survey in the last 30 days and has not
    ordered since, with the objection that response declared."""
    stage(
        conn,
        ctx,
        "st_abandon",
        f"""SELECT x.customer_id, x.response_id, x.started_at AS abandoned_at,
                   (SELECT MIN(d.value) FROM declared_traits d
                    WHERE d.response_id = x.response_id AND d.dimension = 'objection')
                   AS objection
            FROM (SELECT r.customer_id, r.id AS response_id, r.started_at,
                         ROW_NUMBER() OVER (PARTITION BY r.customer_id
                                            ORDER BY r.started_at DESC, r.id DESC) AS rn
                  FROM survey_responses r
                  WHERE r.survey_id IN :surveys AND r.customer_id IS NOT NULL
                    AND r.started_at >= :since AND r.started_at < :cutoff) x
            WHERE x.rn = 1 AND NOT EXISTS (
                SELECT 1 FROM orders o
                WHERE o.customer_id = x.customer_id AND o.placed_at > x.started_at
                  AND {COUNTED})""",
        "customer_id",
        {
            "surveys": list(ctx.exit_survey_ids) or [-1],
            "since": ctx.since(ABANDON_WINDOW_DAYS),
            "cutoff": ctx.cutoff_param,
        },
        lists=("surveys",),
    )


def stage_engaged(conn: Connection, ctx: RunContext) -> None:
    """st_engaged: who opened or clicked a campaign within the last 90 days (events after
    the as-of day do not exist yet)."""
    stage(
        conn,
        ctx,
        "st_engaged",
        f"""SELECT DISTINCT e.customer_id FROM email_events e
            WHERE e.customer_id IS NOT NULL AND {ENGAGEMENT}
              AND e.occurred_at >= :since AND e.occurred_at < :cutoff""",
        "customer_id",
        {"since": ctx.since(ENGAGED_WINDOW_DAYS), "cutoff": ctx.cutoff_param},
    )


def _stage_grid(conn: Connection, grid: dict[tuple[int, int], str]) -> None:
    """st_grid: the owner's RFM map resolved to its 25 cells."""
    conn.execute(text("DROP TABLE IF EXISTS st_grid"))
    conn.execute(
        text(
            "CREATE TEMPORARY TABLE st_grid "
            "(r INTEGER NOT NULL, f INTEGER NOT NULL, name VARCHAR(60), PRIMARY KEY (r, f))"
        )
    )
    if grid:
        conn.execute(
            text("INSERT INTO st_grid (r, f, name) VALUES (:r, :f, :name)"),
            [{"r": r, "f": f, "name": name} for (r, f), name in grid.items()],
        )
    conn.commit()


def stage_scores(conn: Connection, ctx: RunContext) -> None:
    """st_scored: customers with counted orders, their days, recency and RANK-based scores
    1 + floor(5 (rank - 1) / N), worst to best; and revenue of bigger spenders (for VIP)."""
    _stage_grid(conn, ctx.rfm_grid)
    n = conn.execute(text("SELECT COUNT(*) FROM st_orders")).scalar_one()
    day = ctx.dialect.day
    score = "1 + 5 * (RANK() OVER (ORDER BY {}) - 1) / {}"
    stage(
        conn,
        ctx,
        "st_scored",
        f"""SELECT d.customer_id, d.frequency, d.monetary, d.first_day, d.last_day,
                   {ctx.as_of_day} - d.last_day AS recency_days,
                   {score.format("d.last_day ASC", max(n, 1))} AS r,
                   {score.format("d.frequency ASC", max(n, 1))} AS f,
                   {score.format("d.monetary ASC", max(n, 1))} AS m,
                   COALESCE(CAST(SUM(d.monetary) OVER (
                       ORDER BY d.monetary DESC, d.customer_id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS BIGINT), 0)
                   AS revenue_before
            FROM (SELECT customer_id, frequency, monetary,
                         {day("first_at")} AS first_day, {day("last_at")} AS last_day
                  FROM st_orders) d""",
        "customer_id",
    )


def stage_profiles(conn: Connection, ctx: RunContext) -> None:
    """st_profiles: one row per customer, prospects included, ready to copy."""
    revenue = conn.execute(text("SELECT COALESCE(SUM(monetary), 0) FROM st_orders")).scalar_one()
    churn = ctx.churn_window_days
    # VIPs: the biggest spenders until those before them make 20% of revenue.
    vip_line = VIP_REVENUE_PERCENT * int(revenue)
    stage(
        conn,
        ctx,
        "st_profiles",
        f"""SELECT c.id AS customer_id,
                   COALESCE(s.frequency, 0) AS frequency,
                   COALESCE(s.monetary, 0) AS monetary_cents,
                   CASE WHEN s.frequency > 0
                        THEN (2 * s.monetary + s.frequency) / (2 * s.frequency) END AS aov_cents,
                   s.first_day, s.last_day, s.recency_days, s.r, s.f, s.m,
                   g.name AS rfm_segment,
                   CASE WHEN s.customer_id IS NULL THEN 'prospect'
                        WHEN {ctx.as_of_day} - s.first_day <= {NEW_CUSTOMER_DAYS} THEN 'new'
                        WHEN s.recency_days <= {churn} THEN 'active'
                        WHEN s.recency_days <= {2 * churn} THEN 'lapsed'
                        ELSE 'churned' END AS lifecycle,
                   COALESCE(s.f = 5, FALSE) AS is_frequent,
                   (se.customer_id IS NOT NULL) AS is_seasonal,
                   se.quarter AS seasonal_quarter,
                   COALESCE(100 * s.revenue_before < CAST({vip_line} AS BIGINT), FALSE)
                   AS is_vip,
                   (ab.customer_id IS NOT NULL) AS is_cart_abandoner,
                   ab.objection, ab.abandoned_at,
                   (cl.customer_id IS NOT NULL) AS is_class_taker,
                   (en.customer_id IS NOT NULL) AS is_engaged
            FROM customers c
            LEFT JOIN st_scored s ON s.customer_id = c.id
            LEFT JOIN st_grid g ON g.r = s.r AND g.f = s.f
            LEFT JOIN st_seasonal se ON se.customer_id = c.id
            LEFT JOIN st_abandon ab ON ab.customer_id = c.id
            LEFT JOIN st_cat cl ON cl.customer_id = c.id AND cl.category = '{CLASSES_CATEGORY}'
            LEFT JOIN st_engaged en ON en.customer_id = c.id""",
        "customer_id",
    )
