import pytest

from config import Config, load_config
from webapp import create_app, normalise_database_url


def test_default_config_is_sqlite_under_instance(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = load_config("default")
    assert settings["DATABASE_URL"].startswith("sqlite:///")
    assert settings["DATABASE_URL"].endswith("/patchwork.db")


@pytest.mark.parametrize("config_name", ["default", "test"])
def test_every_setting_can_be_overridden_from_the_environment(monkeypatch, config_name):
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.key")
    monkeypatch.setenv("SHOP_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("IMPORT_BATCH_SIZE", "17")
    monkeypatch.setenv("RUN_TASKS_IN_PROCESS", "true")
    settings = load_config(config_name)
    assert settings["SENDGRID_API_KEY"] == "SG.key"
    assert settings["SHOP_TIMEZONE"] == "Europe/Berlin"
    assert settings["IMPORT_BATCH_SIZE"] == 17
    assert settings["RUN_TASKS_IN_PROCESS"] is True


def test_patchwork_config_picks_the_class(monkeypatch):
    monkeypatch.setenv("PATCHWORK_CONFIG", "test")
    assert load_config()["TESTING"] is True
    monkeypatch.setenv("PATCHWORK_CONFIG", "nonsense")
    with pytest.raises(RuntimeError, match="nonsense"):
        load_config()


def test_production_refuses_to_start_without_a_real_secret_key(monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        load_config("production")
    monkeypatch.setenv("SECRET_KEY", Config.SECRET_KEY)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        load_config("production")
    monkeypatch.setenv("SECRET_KEY", "a-real-secret")
    assert load_config("production")["SESSION_COOKIE_SECURE"] is True


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_urls_use_psycopg3(url, expected):
    assert normalise_database_url(url) == expected


def test_sqlite_runs_with_wal_and_foreign_keys(tmp_path):
    from sqlalchemy import text

    from webapp.extensions import db

    app = create_app("test", {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    with app.app_context():
        assert db.session.scalar(text("PRAGMA journal_mode")) == "wal"
        assert db.session.scalar(text("PRAGMA foreign_keys")) == 1
        db.engine.dispose()


def test_optional_numbers_from_the_environment_are_numbers(monkeypatch):
    monkeypatch.setenv("WTF_CSRF_TIME_LIMIT", "3600")
    assert load_config("default")["WTF_CSRF_TIME_LIMIT"] == 3600


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("IMPORT_BATCH_SIZE", "lots", "IMPORT_BATCH_SIZE='lots' is not a valid int"),
        ("SHOP_TIMEZONE", "Mars/Base", "SHOP_TIMEZONE='Mars/Base' is not a time zone"),
    ],
)
def test_a_bad_setting_stops_the_start_with_its_name(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match=message):
        load_config("default")


def test_the_default_config_keeps_a_random_secret_key_in_the_instance_folder(monkeypatch, tmp_path):
    import config

    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setattr(config, "INSTANCE_DIR", tmp_path)
    first = load_config("default")["SECRET_KEY"]
    assert len(first) == 64
    assert load_config("default")["SECRET_KEY"] == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
