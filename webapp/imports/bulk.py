"""Bulk statements at the speed of the driver, for the order writer's batches."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import String, bindparam, func, literal_column, select
from sqlalchemy.exc import IntegrityError

from webapp.extensions import db


def bulk_insert(table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Insert many rows at the speed of the driver: COPY on PostgreSQL, one executemany on
    SQLite. Bypasses SQLAlchemy's per-value type processing (a third of the import's time
    at a million lines), so every column must be given and datetimes must have been passed
    through bulk_time()."""
    connection = db.session.connection()
    names = ", ".join(columns)
    if connection.dialect.name == "postgresql":
        cursor = connection.connection.driver_connection.cursor()
        statement = f"COPY {table} ({names}) FROM STDIN"
        try:
            with cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        except connection.dialect.dbapi.IntegrityError as exc:
            # Raised as SQLAlchemy raises it, so that callers retry a concurrent insert.
            raise IntegrityError(statement, None, exc) from exc
        return
    marks = ", ".join("?" * len(columns))
    connection.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)


def bulk_time() -> Callable[[datetime | None], object]:
    """What bulk_insert takes for an aware datetime (or None): the datetime itself for
    psycopg's COPY; on SQLite the text UTCDateTime stores (naive UTC)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return _same
    return _sqlite_time


def _same(value: datetime | None) -> datetime | None:
    return value


def _sqlite_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]  # without "+00:00"


def relax_commit() -> None:
    """On PostgreSQL, let this transaction's commit return before its WAL reaches the disk.

    Only for file imports: a crash may lose the last few committed batches, but never
    corrupts anything, and the import is idempotent, so running it again completes it.
    Writes that answer someone (the API, webhooks) keep the server's durable commits."""
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL synchronous_commit = off")


def in_keys(column, values):
    """column IN (values). On SQLite the whole list is one parameter, a JSON array read by
    json_each: the statement has the same text whatever the batch's size, so SQLAlchemy
    compiles and caches it once. On PostgreSQL an expanding IN: with one array parameter
    (= ANY) psycopg's prepared statements fall back to a generic plan after a few batches,
    and the planner then scans every order for each batch's totals (minutes at 1M lines)."""
    values = list(values)
    if db.session.get_bind().dialect.name == "postgresql":
        return column.in_(bindparam(None, values, expanding=True, type_=column.type))
    listed = select(literal_column("value")).select_from(
        func.json_each(bindparam(None, json.dumps(values), type_=String))
    )
    return column.in_(listed.scalar_subquery())


def aware(value):
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
