"""Infrastructure settings. The shop's own settings live in the database (ShopSettings).

Every attribute of every class can be overridden from the environment by its own name,
whichever class ``PATCHWORK_CONFIG`` selects (default: ``default``).
"""

from __future__ import annotations

import os
import secrets
import typing
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

INSTANCE_DIR = Path(os.environ.get("PATCHWORK_INSTANCE", Path(__file__).parent / "instance"))


class Config:
    """Default config: an embedded SQLite database under instance/, no server to install."""

    # Empty: the default config makes one on first start and keeps it in the instance folder.
    SECRET_KEY: str = ""
    DATABASE_URL: str = f"sqlite:///{INSTANCE_DIR / 'patchwork.db'}"
    SENDGRID_API_KEY: str = ""
    SENDGRID_API_HOST: str = "https://api.sendgrid.com"
    SENDGRID_WEBHOOK_PUBLIC_KEY: str = ""  # the Event Webhook's verification key
    # Campaign sends (webapp.campaigns): keep-alive connections to SendGrid (one request per
    # recipient with a body written in Patchwork), each request's timeout, and how often a
    # 429/5xx is retried (with backoff, honouring X-RateLimit-Reset) before the batch goes
    # back to the queue. A dynamic template sends CAMPAIGN_TEMPLATE_BATCH personalizations
    # per request (SendGrid's limit: 1000); a body, CAMPAIGN_REQUESTS_PER_WORKER requests per
    # connection per batch. A sender renews its lease on a campaign every batch; a lease
    # left by a dead sender elsewhere is taken over after CAMPAIGN_LEASE_SECONDS.
    SENDGRID_CONCURRENCY: int = 8
    SENDGRID_TIMEOUT_SECONDS: float = 30.0
    SENDGRID_MAX_RETRIES: int = 5
    CAMPAIGN_TEMPLATE_BATCH: int = 1000
    CAMPAIGN_REQUESTS_PER_WORKER: int = 25
    CAMPAIGN_LEASE_SECONDS: float = 120.0
    SHOP_TIMEZONE: str = "UTC"
    PUBLIC_BASE_URL: str = "http://127.0.0.1:5000"
    UPLOAD_DIR: str = str(INSTANCE_DIR / "uploads")
    MAX_CONTENT_LENGTH: int = 256 * 1024 * 1024  # Shopify exports of 200 MB must fit
    IMPORT_BATCH_SIZE: int = 5000  # orders per write transaction (well under a second)
    TASK_POLL_SECONDS: float = 2.0
    RUN_TASKS_IN_PROCESS: bool = False  # the demo and `flask run` start a runner thread
    # The scheduler process (`patchwork scheduler`, webapp.scheduler). It re-reads the
    # schedules and runs what is due but not done (a period missed while it was stopped, a
    # run whose scheduler died) every SCHEDULER_POLL_SECONDS, reports itself every
    # SCHEDULER_HEARTBEAT_SECONDS, and holds a run's lease for SCHEDULER_LEASE_SECONDS at a
    # time (a killed scheduler's run is taken over that long after its last renewal). A
    # failed run is retried SCHEDULER_RETRY_SECONDS later, up to SCHEDULER_MAX_ATTEMPTS tries.
    SCHEDULER_POLL_SECONDS: float = 30.0
    SCHEDULER_HEARTBEAT_SECONDS: float = 15.0
    SCHEDULER_LEASE_SECONDS: float = 60.0
    SCHEDULER_DISPATCH_SECONDS: float = 60.0  # how often due campaigns are looked for
    SCHEDULER_RETRY_SECONDS: float = 600.0
    SCHEDULER_MAX_ATTEMPTS: int = 3
    RUN_SCHEDULER_IN_PROCESS: bool = False  # the demo runs the scheduler in its own process
    LOGIN_MAX_FAILURES: int = 5
    LOGIN_WINDOW_SECONDS: int = 15 * 60
    SESSION_COOKIE_HTTPONLY: bool = True
    SESSION_COOKIE_SAMESITE: str = "Lax"
    SESSION_COOKIE_SECURE: bool = False
    REMEMBER_COOKIE_HTTPONLY: bool = True
    REMEMBER_COOKIE_SAMESITE: str = "Lax"
    REMEMBER_COOKIE_SECURE: bool = False
    # Behind a reverse proxy: how many proxies set X-Forwarded-For/-Proto (0: none). Without
    # it every login would come from the proxy's address and share one failure count.
    PROXY_COUNT: int = 0
    WTF_CSRF_TIME_LIMIT: int | None = None
    # The public survey endpoints (embed config, responses, answers): the rate limit's storage
    # (memory:// counts per process; use redis://host:6379 with several workers) and the limit
    # per visitor address. SURVEY_MAX_BODY_BYTES caps their request bodies.
    RATELIMIT_ENABLED: bool = True
    RATELIMIT_STORAGE_URI: str = "memory://"
    SURVEY_RATE_LIMIT: str = "120 per minute"
    SURVEY_MAX_BODY_BYTES: int = 16 * 1024
    # How long a survey's signed response token stays valid.
    SURVEY_TOKEN_MAX_AGE_DAYS: int = 30
    TESTING: bool = False


class TestConfig(Config):
    TESTING = True
    SECRET_KEY = "test-secret"
    DATABASE_URL = "sqlite://"
    IMPORT_BATCH_SIZE = 50
    TASK_POLL_SECONDS = 0.2
    SCHEDULER_POLL_SECONDS = 0.5
    SCHEDULER_HEARTBEAT_SECONDS = 0.5
    SCHEDULER_LEASE_SECONDS = 3.0
    SCHEDULER_DISPATCH_SECONDS = 1.0
    SCHEDULER_RETRY_SECONDS = 1.0
    RATELIMIT_ENABLED = False  # the rate-limit tests turn it on
    SENDGRID_TIMEOUT_SECONDS = 5.0
    CAMPAIGN_LEASE_SECONDS = 5.0


class ProductionConfig(Config):
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True
    DATABASE_URL = "postgresql+psycopg://localhost/patchwork"


CONFIGS: dict[str, type[Config]] = {
    "default": Config,
    "test": TestConfig,
    "production": ProductionConfig,
}


def _coerce(name: str, raw: str, kind: object) -> object:
    """The environment's text as the type the config class declares for ``name``."""
    kinds = typing.get_args(kind) or (kind,)  # "int | None" -> (int, NoneType)
    try:
        if bool in kinds:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if int in kinds:
            return int(raw)
        if float in kinds:
            return float(raw)
    except ValueError:
        raise RuntimeError(f"{name}={raw!r} is not a valid {kinds[0].__name__}") from None
    return raw


def _instance_secret_key() -> str:
    """A random key made on first start and kept in the instance folder, so sessions
    survive restarts and no two installations share a key."""
    path = INSTANCE_DIR / "secret_key"
    if not path.exists():
        INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "x") as handle:
                handle.write(secrets.token_hex(32))
            path.chmod(0o600)
        except FileExistsError:
            pass  # another process made it at the same moment
    return path.read_text().strip()


def load_config(name: str | None = None, overrides: dict | None = None) -> dict:
    """Return the settings of config class ``name`` with environment overrides applied."""
    name = name or os.environ.get("PATCHWORK_CONFIG", "default")
    try:
        cls = CONFIGS[name]
    except KeyError:
        raise RuntimeError(
            f"PATCHWORK_CONFIG={name!r} is not one of {', '.join(CONFIGS)}"
        ) from None
    hints = typing.get_type_hints(Config)
    settings = {key: getattr(cls, key) for key in dir(cls) if key.isupper()}
    for key in settings:
        if key in os.environ:
            settings[key] = _coerce(key, os.environ[key], hints.get(key, str))
    settings.update(overrides or {})
    if not settings["SECRET_KEY"]:
        if name == "production":
            raise RuntimeError("The production config refuses to start without a SECRET_KEY.")
        settings["SECRET_KEY"] = _instance_secret_key()
    try:
        ZoneInfo(settings["SHOP_TIMEZONE"])
    except (ZoneInfoNotFoundError, ValueError):
        raise RuntimeError(
            f"SHOP_TIMEZONE={settings['SHOP_TIMEZONE']!r} is not a time zone like Europe/Berlin"
        ) from None
    return settings
