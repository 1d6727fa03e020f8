"""Extensions, created unbound and initialised by create_app()."""

import time

from flask_htmx import HTMX
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from limits.storage import MemoryStorage
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Stable constraint names so that migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
htmx = HTMX()
# Only the public survey endpoints are limited (per visitor address; ProxyFix makes it the
# visitor's behind a proxy). Storage: RATELIMIT_STORAGE_URI.
limiter = Limiter(key_func=get_remote_address)


class SweepingMemoryStorage(MemoryStorage):
    """memory:// (one process's counts) that sweeps expired counters as hits arrive.

    The stock memory storage starts a timer thread whenever its last one has finished, which
    under steady traffic is nearly every hit: about a tenth of an answer's cost. A counter's
    expiry is already checked when it is read, so the sweep only bounds memory, and every
    SWEEP_SECONDS during a hit is plenty. Registered under the "memory" scheme, so it is what
    RATELIMIT_STORAGE_URI=memory:// (the default) gives.
    """

    STORAGE_SCHEME = ["memory"]
    SWEEP_SECONDS = 10.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._next_sweep = time.monotonic() + self.SWEEP_SECONDS

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._next_sweep = time.monotonic() + self.SWEEP_SECONDS

    def _MemoryStorage__schedule_expiry(self) -> None:  # the base calls it on every hit
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_SECONDS
            self._MemoryStorage__expire_events()
