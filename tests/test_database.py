"""The schema comes from migrations, which match the models, and bootstrapping is race-free."""

import os
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text

from tests.conftest import new_postgresql_database
from webapp.extensions import db
from webapp.models import Category, ShopSettings


def test_migrations_match_the_models(app):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = compare_metadata(context, db.metadata)
    assert differences == []


def test_a_fresh_database_gets_the_shop_settings_and_vocabulary(app):
    shop = db.session.get(ShopSettings, 1)
    assert shop.embed_key and len(shop.embed_secret) == 64
    assert db.session.scalar(select(Category.craft).where(Category.name == "yarn")) == "knitting"


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(request, tmp_path):
    """A URL to a database that does not exist yet (SQLite) or is empty (PostgreSQL)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with new_postgresql_database("patchwork_fresh") as url:
        yield url


def test_commands_started_together_create_the_database_once(tmp_path, fresh_database_url):
    """Four processes on a fresh database: all succeed, one schema, one settings row."""
    url = fresh_database_url
    env = {**os.environ, "DATABASE_URL": url, "PATCHWORK_INSTANCE": str(tmp_path)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "webapp.cli", "init-db"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert "customers" in inspect(conn).get_table_names()
        assert conn.execute(text("SELECT count(*) FROM shop_settings")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()
