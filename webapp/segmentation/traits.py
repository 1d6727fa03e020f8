"""The SQL of preference traits: declared (latest survey answer) and observed (share of
spend) evidence combined per customer and dimension.

With both kinds of evidence, score(value) = declared weight x [the latest declaration names
it] + observed weight x share; with one kind, that kind alone (1 or 0; or the share). The best
value wins when its score reaches the threshold, else the trait is `mixed` (also when two
values tie for best). Without evidence there is no row: `unknown`.

Scores are compared as exact fractions: within one customer and dimension every candidate
shares a denominator, so ranking and the threshold are integer arithmetic on both engines.
"""

from __future__ import annotations

from sqlalchemy import Connection

from webapp.segmentation.profiles import TIER_SKILL
from webapp.segmentation.staging import RunContext, stage

MIXED = "mixed"
UNKNOWN = "unknown"


def stage_observed(conn: Connection, ctx: RunContext) -> None:
    """st_observed: per customer, dimension (craft, skill) and value, the spend on it and
    the customer's total line spend, over the last 365 days, or all time if that is empty."""

    def pick(recent: str, ever: str) -> str:
        return f"CASE WHEN t.total_365 > 0 THEN {recent} ELSE {ever} END"

    totals = ", ".join(
        f"CAST(SUM(tier_{tier}) AS BIGINT) AS tier_{tier}, "
        f"CAST(SUM(tier_{tier}_365) AS BIGINT) AS tier_{tier}_365"
        for tier in TIER_SKILL
    )
    skills = "\nUNION ALL\n".join(
        f"""SELECT t.customer_id, 'skill' AS dimension, '{skill}' AS value,
                   {pick(f"t.tier_{tier}_365", f"t.tier_{tier}")} AS spend,
                   {pick("t.total_365", "t.total_all")} AS total,
                   {pick("'365d'", "'all'")} AS obs_window
            FROM st_spend t"""
        for tier, skill in TIER_SKILL.items()
    )
    stage(
        conn,
        ctx,
        "st_spend",
        f"""SELECT customer_id, CAST(SUM(spend) AS BIGINT) AS total_all,
                   CAST(SUM(spend_365) AS BIGINT) AS total_365, {totals}
            FROM st_cat GROUP BY customer_id""",
        "customer_id",
    )
    stage(
        conn,
        ctx,
        "st_observed",
        f"""SELECT * FROM (
              SELECT c.customer_id, 'craft' AS dimension, k.craft AS value,
                     CAST(SUM({pick("c.spend_365", "c.spend")}) AS BIGINT) AS spend,
                     MAX({pick("t.total_365", "t.total_all")}) AS total,
                     MAX({pick("'365d'", "'all'")}) AS obs_window
              FROM st_cat c JOIN categories k ON k.name = c.category
              JOIN st_spend t ON t.customer_id = c.customer_id
              WHERE k.craft IS NOT NULL AND k.craft <> ''
              GROUP BY c.customer_id, k.craft
              UNION ALL
              {skills}) x
            WHERE x.spend > 0 AND x.total > 0""",
        "customer_id, dimension, value",
    )


def stage_declared(conn: Connection, ctx: RunContext) -> None:
    """st_declared: the values named by each customer's latest response declaring a
    dimension (before the end of the as-of day)."""
    stage(
        conn,
        ctx,
        "st_declared",
        """SELECT DISTINCT x.customer_id, d.dimension, d.value, x.response_id, x.declared_at
           FROM (SELECT g.customer_id, g.dimension, g.response_id, g.declared_at,
                        ROW_NUMBER() OVER (PARTITION BY g.customer_id, g.dimension
                                           ORDER BY g.declared_at DESC, g.response_id DESC)
                        AS rn
                 FROM (SELECT r.customer_id, d.dimension, d.response_id,
                              MAX(d.declared_at) AS declared_at
                       FROM declared_traits d JOIN survey_responses r ON r.id = d.response_id
                       WHERE r.customer_id IS NOT NULL AND d.declared_at < :cutoff
                       GROUP BY r.customer_id, d.dimension, d.response_id) g) x
           JOIN declared_traits d
             ON d.response_id = x.response_id AND d.dimension = x.dimension
            AND d.declared_at < :cutoff
           WHERE x.rn = 1""",
        "customer_id, dimension, value",
        {"cutoff": ctx.cutoff_param},
    )


def stage_traits(conn: Connection, ctx: RunContext) -> None:
    """st_traits: one row per customer and dimension with evidence, ready to copy."""
    wd, wo, threshold = ctx.declared_weight_pct, ctx.observed_weight_pct, ctx.threshold_pct
    # num/den per candidate value; hd: a declaration exists, tt: the observed total (0: none)
    stage(
        conn,
        ctx,
        "st_candidates",
        f"""SELECT v.customer_id, v.dimension, v.value,
                   CASE WHEN v.hd = 1 AND v.tt > 0 THEN {wd} * v.declared * v.tt + {wo} * v.spend
                        WHEN v.hd = 1 THEN v.declared ELSE v.spend END AS num,
                   CASE WHEN v.hd = 1 AND v.tt > 0 THEN 100 * v.tt
                        WHEN v.hd = 1 THEN 1 ELSE v.tt END AS den
            FROM (SELECT u.*,
                         MAX(u.declared) OVER (PARTITION BY u.customer_id, u.dimension) AS hd,
                         MAX(u.total) OVER (PARTITION BY u.customer_id, u.dimension) AS tt
                  FROM (SELECT customer_id, dimension, value, MAX(declared) AS declared,
                               MAX(spend) AS spend, MAX(total) AS total
                        FROM (SELECT customer_id, dimension, value, 1 AS declared,
                                     0 AS spend, 0 AS total FROM st_declared
                              UNION ALL
                              SELECT customer_id, dimension, value, 0, spend, total
                              FROM st_observed) a
                        GROUP BY customer_id, dimension, value) u) v""",
        "customer_id, dimension, value",
    )
    # Each part keyed by (customer, dimension) before the final join: SQLite joins
    # unkeyed subqueries with nested loops. Best values by grouping, not window functions:
    # both engines group a keyed table without sorting it.
    stage(
        conn,
        ctx,
        "st_best",
        """SELECT c.customer_id, c.dimension, COUNT(*) AS n_top, MIN(c.value) AS value,
                  MAX(c.num) AS num, MAX(c.den) AS den
           FROM st_candidates c
           JOIN (SELECT customer_id, dimension, MAX(num) AS num FROM st_candidates
                 GROUP BY customer_id, dimension) m
             ON m.customer_id = c.customer_id AND m.dimension = c.dimension AND m.num = c.num
           GROUP BY c.customer_id, c.dimension""",
        "customer_id, dimension",
    )
    stage(
        conn,
        ctx,
        "st_declared_values",
        f"""SELECT customer_id, dimension, {ctx.dialect.join_sorted("value")} AS declared_values,
                   MAX(declared_at) AS declared_at, MAX(response_id) AS response_id
            FROM (SELECT * FROM st_declared ORDER BY customer_id, dimension, value) s
            GROUP BY customer_id, dimension""",
        "customer_id, dimension",
    )
    stage(
        conn,
        ctx,
        "st_observed_top",
        """SELECT o.customer_id, o.dimension, MIN(o.value) AS value, MAX(o.spend) AS spend,
                  MAX(o.total) AS total, MAX(o.obs_window) AS obs_window
           FROM st_observed o
           JOIN (SELECT customer_id, dimension, MAX(spend) AS spend FROM st_observed
                 GROUP BY customer_id, dimension) m
             ON m.customer_id = o.customer_id AND m.dimension = o.dimension
            AND m.spend = o.spend
           GROUP BY o.customer_id, o.dimension""",
        "customer_id, dimension",
    )
    stage(
        conn,
        ctx,
        "st_traits",
        f"""SELECT b.customer_id, b.dimension,
                   CASE WHEN b.n_top = 1 AND 100 * b.num >= {threshold} * b.den
                        THEN b.value ELSE '{MIXED}' END AS value,
                   CAST(b.num AS DOUBLE PRECISION) / b.den AS score,
                   dv.declared_values, dv.declared_at, dv.response_id AS declared_response_id,
                   ob.value AS observed_value,
                   CAST(ob.spend AS DOUBLE PRECISION) / ob.total AS observed_share,
                   ob.obs_window AS observed_window
            FROM st_best b
            LEFT JOIN st_declared_values dv
              ON dv.customer_id = b.customer_id AND dv.dimension = b.dimension
            LEFT JOIN st_observed_top ob
              ON ob.customer_id = b.customer_id AND ob.dimension = b.dimension""",
        "customer_id, dimension",
    )
