"""Bulk statements at the speed of the driver, for the order writer's batches."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import String, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY
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


def sqlite_new_ids(table: str, count: int) -> range | None:
    """On SQLite, the ids the last bulk_insert into ``table`` gave its ``count`` rows, in
    their order; None elsewhere (look them up by a unique key).

    SQLite gives a new row one more than the table's largest id, and the transaction
    holds the database's only write lock from the first insert on, so the rows of one
    executemany get consecutive ids ending at last_insert_rowid(). (Only past the largest
    possible id would it pick others; that is checked.)"""
    connection = db.session.connection()
    if connection.dialect.name != "sqlite":
        return None
    last = connection.exec_driver_sql("SELECT last_insert_rowid()").scalar()
    ids = range(last - count + 1, last + 1)
    found = connection.exec_driver_sql(
        f"SELECT count(*) FROM {table} WHERE id BETWEEN ? AND ?", (ids.start, last)
    ).scalar()
    if found != count or ids.start < 1:
        raise RuntimeError(f"{table}: the new rows' ids are not consecutive")
    return ids


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


# How many pages of WAL a file import lets grow on SQLite before they are copied into the
# database (200 MB of 4 KiB pages; the baseline's single transaction grows one as large as
# the database). A checkpoint after every batch, SQLite's default (1000 pages), rewrote and
# synced the same index pages batch after batch: a fifth of a million-line import.
IMPORT_WAL_PAGES = 50_000
SQLITE_WAL_PAGES = 1000  # SQLite's default, which the app keeps
# A file import's page cache on SQLite, in KiB. The batches insert into a dozen indexes at
# random places (emails, names, customer ids); in SQLite's default 2 MB cache every such
# insert reads its pages back from the OS, in 64 MB most are still there: the inserts
# take half the time. settle() gives the memory back.
IMPORT_CACHE_KIB = 64 * 1024
SQLITE_CACHE_KIB = 2000  # SQLite's default


def relax_commit() -> None:
    """Make this transaction's commit cheaper, for file imports only.

    PostgreSQL: the commit returns before its WAL reaches the disk. A crash may lose the
    last few committed batches, but never corrupts anything, and the import is idempotent,
    so running it again completes it. SQLite: checkpoints wait for IMPORT_WAL_PAGES (every
    commit stays as durable as ever), and the page cache is IMPORT_CACHE_KIB. Writes that
    answer someone (the API, webhooks) keep the usual commits. settle() ends it."""
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
    else:
        connection.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {IMPORT_WAL_PAGES}")
        connection.exec_driver_sql(f"PRAGMA cache_size = -{IMPORT_CACHE_KIB}")


def settle() -> None:
    """After a file import on SQLite: usual checkpoints again, and the import's WAL copied
    into the database now (without waiting for readers) rather than by the next request
    that writes."""
    connection = db.session.connection()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {SQLITE_WAL_PAGES}")
        connection.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
    db.session.commit()


def in_keys(column, values):
    """column IN (values), as one parameter whatever the batch's size, so that SQLAlchemy
    compiles and caches the statement once (an expanding IN rendered thousands of
    parameters per statement, most of the client's time on PostgreSQL). SQLite: a JSON
    array read by json_each. PostgreSQL: = ANY(array), in transactions begun with
    custom_plans(); a generic plan for the array scanned every order for each batch's
    totals (minutes at 1M lines)."""
    values = list(values)
    if db.session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    listed = select(literal_column("value")).select_from(
        func.json_each(bindparam(None, json.dumps(values), type_=String))
    )
    return column.in_(listed.scalar_subquery())


def custom_plans() -> None:
    """On PostgreSQL, plan this transaction's statements for their actual parameters: the
    writer's = ANY(array) lookups must never get a generic plan (see in_keys)."""
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")


def aware(value):
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
