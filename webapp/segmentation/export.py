"""Profiles of the current run as rows for `patchwork export-profiles` (CSV or JSON).

One row per customer of the current run; money as an exact decimal string ("123.45"),
R/F/M empty for customers without counted orders, one `trait_<dimension>` per dimension
any customer has a trait in (`unknown` where this customer has none).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import TextIO

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from webapp.models import Customer, CustomerProfile, CustomerTrait
from webapp.segmentation.traits import UNKNOWN

BASE_COLUMNS = (
    "customer_id",
    "email",
    "recency_days",
    "frequency",
    "monetary",
    "aov",
    "first_order_date",
    "last_order_date",
    "r",
    "f",
    "m",
    "rfm_segment",
    "lifecycle",
    "frequent",
    "seasonal",
    "vip",
    "cart_abandoner",
    "objection",
    "class_taker",
    "engaged",
)
# Always present, so scripts can rely on them even before anyone has a trait.
CORE_DIMENSIONS = ("craft", "skill")


def decimal(cents: int | None) -> str:
    if cents is None:
        return ""
    sign = "-" if cents < 0 else ""
    whole, minor = divmod(abs(int(cents)), 100)
    return f"{sign}{whole}.{minor:02d}"


def trait_dimensions(session: Session, run_id: int) -> list[str]:
    found = session.scalars(
        select(CustomerTrait.dimension).where(CustomerTrait.run_id == run_id).distinct()
    )
    return sorted(set(found) | set(CORE_DIMENSIONS))


def profile_rows(session: Session, run_id: int) -> tuple[list[str], Iterator[dict]]:
    """The export's columns and its rows, streamed in customer order."""
    dimensions = trait_dimensions(session, run_id)
    pivot = (
        select(
            CustomerTrait.customer_id,
            *(
                func.max(case((CustomerTrait.dimension == d, CustomerTrait.value))).label(d)
                for d in dimensions
            ),
        )
        .where(CustomerTrait.run_id == run_id)
        .group_by(CustomerTrait.customer_id)
        .subquery()
    )
    p = CustomerProfile
    query = (
        select(p, Customer.external_id, Customer.email, *(pivot.c[d] for d in dimensions))
        .join(Customer, Customer.id == p.customer_id)
        .outerjoin(pivot, pivot.c.customer_id == p.customer_id)
        .where(p.run_id == run_id)
        .order_by(p.customer_id)
        .execution_options(yield_per=5000)
    )
    columns = [*BASE_COLUMNS, *(f"trait_{d}" for d in dimensions)]

    def rows() -> Iterator[dict]:
        for profile, external_id, email, *traits in session.execute(query):
            row = {
                "customer_id": external_id or "",
                "email": email or "",
                "recency_days": profile.recency_days,
                "frequency": profile.frequency,
                "monetary": decimal(profile.monetary_cents),
                "aov": decimal(profile.aov_cents),
                "first_order_date": profile.first_order_on,
                "last_order_date": profile.last_order_on,
                "r": profile.r,
                "f": profile.f,
                "m": profile.m,
                "rfm_segment": profile.rfm_segment,
                "lifecycle": profile.lifecycle,
                "frequent": profile.is_frequent,
                "seasonal": profile.is_seasonal,
                "vip": profile.is_vip,
                "cart_abandoner": profile.is_cart_abandoner,
                "objection": profile.objection,
                "class_taker": profile.is_class_taker,
                "engaged": profile.is_engaged,
            }
            for dimension, value in zip(dimensions, traits, strict=True):
                row[f"trait_{dimension}"] = value or UNKNOWN
            yield row

    return columns, rows()


def write_csv(out: TextIO, columns: list[str], rows: Iterator[dict]) -> int:
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
        count += 1
    return count


def _csv_value(value) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def write_json(out: TextIO, rows: Iterator[dict]) -> int:
    """A JSON list of objects, written as it streams (a million rows never sit in memory)."""
    count = 0
    out.write("[")
    for row in rows:
        out.write(",\n" if count else "\n")
        out.write(json.dumps(row, default=str))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count
