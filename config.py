"""Infrastructure settings. The shop's own settings live in the database (ShopSettings).

Every attribute of every class can be overridden from the environment by its own name,
whichever class ``PATCHWORK_CONFIG`` selects (default: ``default``).
"""

from __future__ import annotations

import os
from pathlib import Path

INSTANCE_DIR = Path(os.environ.get("PATCHWORK_INSTANCE", Path(__file__).parent / "instance"))


class Config:
    """Default config: an embedded SQLite database under instance/, no server to install."""

    SECRET_KEY: str = "dev-only-not-secret"
    DATABASE_URL: str = f"sqlite:///{INSTANCE_DIR / 'patchwork.db'}"
    SENDGRID_API_KEY: str = ""
    SENDGRID_API_HOST: str = "https://api.sendgrid.com"
    SENDGRID_WEBHOOK_PUBLIC_KEY: str = ""
    SHOP_TIMEZONE: str = "UTC"
    PUBLIC_BASE_URL: str = "http://127.0.0.1:5000"
    RATELIMIT_STORAGE_URI: str = "memory://"
    UPLOAD_DIR: str = str(INSTANCE_DIR / "uploads")
    MAX_CONTENT_LENGTH: int = 256 * 1024 * 1024  # Shopify exports of 200 MB must fit
    IMPORT_BATCH_SIZE: int = 5000  # orders per write transaction (well under a second)
    TASK_POLL_SECONDS: float = 2.0
    RUN_TASKS_IN_PROCESS: bool = False  # the demo and `flask run` start a runner thread
    LOGIN_MAX_FAILURES: int = 5
    LOGIN_WINDOW_SECONDS: int = 15 * 60
    SESSION_COOKIE_HTTPONLY: bool = True
    SESSION_COOKIE_SAMESITE: str = "Lax"
    SESSION_COOKIE_SECURE: bool = False
    REMEMBER_COOKIE_HTTPONLY: bool = True
    REMEMBER_COOKIE_SAMESITE: str = "Lax"
    WTF_CSRF_TIME_LIMIT: int | None = None
    TESTING: bool = False


class TestConfig(Config):
    TESTING = True
    SECRET_KEY = "test-secret"
    DATABASE_URL = "sqlite://"
    IMPORT_BATCH_SIZE = 50
    TASK_POLL_SECONDS = 0.2


class ProductionConfig(Config):
    SECRET_KEY = ""
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True
    DATABASE_URL = "postgresql+psycopg://localhost/patchwork"


CONFIGS: dict[str, type[Config]] = {
    "default": Config,
    "test": TestConfig,
    "production": ProductionConfig,
}


def _coerce(raw: str, current: object) -> object:
    if isinstance(current, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    return raw


def load_config(name: str | None = None, overrides: dict | None = None) -> dict:
    """Return the settings of config class ``name`` with environment overrides applied."""
    name = name or os.environ.get("PATCHWORK_CONFIG", "default")
    try:
        cls = CONFIGS[name]
    except KeyError:
        raise RuntimeError(
            f"PATCHWORK_CONFIG={name!r} is not one of {', '.join(CONFIGS)}"
        ) from None
    settings = {key: getattr(cls, key) for key in dir(cls) if key.isupper()}
    for key, value in settings.items():
        if key in os.environ:
            settings[key] = _coerce(os.environ[key], value)
    settings.update(overrides or {})
    if name == "production" and settings["SECRET_KEY"] in ("", Config.SECRET_KEY):
        raise RuntimeError("The production config refuses to start without a real SECRET_KEY.")
    return settings
