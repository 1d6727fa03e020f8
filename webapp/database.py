"""Create or upgrade the database, once, even when several commands start together."""

from __future__ import annotations

import fcntl
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import flask_migrate
from flask import Flask, current_app
from sqlalchemy import select, text

from webapp import MIGRATIONS_DIR
from webapp.extensions import db

_PG_SCHEMA_LOCK = 0x5041_5443  # "PATC": an arbitrary advisory lock id for migrations


@contextmanager
def schema_lock(app: Flask) -> Iterator[None]:
    """An exclusive lock around migrations: advisory on PostgreSQL, a lock file on SQLite."""
    engine = db.engine
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_SCHEMA_LOCK})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_SCHEMA_LOCK})
                conn.commit()
        return
    database = engine.url.database
    lock_path = Path(f"{database}.lock") if database and database != ":memory:" else None
    if lock_path is None:
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_database(app: Flask) -> None:
    """Bring the schema to the newest migration and create the shop's settings row."""
    with app.app_context():
        with schema_lock(app):
            flask_migrate.upgrade(directory=MIGRATIONS_DIR)
            seed_shop()
        db.session.remove()


def seed_shop() -> None:
    """The first start creates the shop's settings, secrets and a starter vocabulary."""
    from webapp.catalog import DEFAULT_CATEGORIES, DEFAULT_RULES
    from webapp.models import Category, CategoryRule, ShopSettings

    if db.session.scalar(select(ShopSettings.id).limit(1)) is not None:
        return
    tz = current_app.config["SHOP_TIMEZONE"]
    db.session.add(
        ShopSettings(
            id=1,
            timezone=tz,
            embed_key=secrets.token_urlsafe(12),
            embed_secret=secrets.token_hex(32),
            erasure_key=secrets.token_hex(32),
            webhook_secret="",
        )
    )
    for name, craft in DEFAULT_CATEGORIES.items():
        db.session.add(Category(name=name, craft=craft))
    for position, (field, pattern, target, value) in enumerate(DEFAULT_RULES):
        db.session.add(
            CategoryRule(
                position=position, field=field, pattern=pattern, target=target, value=value
            )
        )
    db.session.commit()
