"""Extensions, created unbound and initialised by create_app()."""

import time
from collections.abc import Callable
from functools import lru_cache, wraps

from flask import abort, current_app, g, request
from flask_htmx import HTMX
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
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


class SweepingMemoryStorage(MemoryStorage):
    """memory:// (one process's counts) that sweeps expired counters as hits arrive.

    The stock memory storage starts a timer thread whenever its last one has finished, which
    under steady traffic is nearly every hit: about a tenth of an answer's cost. A counter's
    expiry is already checked when it is read, so the sweep only bounds memory, and every
    SWEEP_SECONDS during a hit is plenty.
    """

    SWEEP_SECONDS = 10.0
    _next_sweep = 0.0  # the first hit sweeps the empty store, then every SWEEP_SECONDS

    def _MemoryStorage__schedule_expiry(self) -> None:  # the base calls it on every hit
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_SECONDS
            self._MemoryStorage__expire_events()


class RateLimiter:
    """Limits for the public survey endpoints: so many requests per visitor address.

    Counted with `limits` (the library under Flask-Limiter) in RATELIMIT_STORAGE_URI: one
    fixed window per address and endpoint, as Flask-Limiter counted them; RATELIMIT_ENABLED
    turns it off. A refused request is a 429, and `retry_after()` says when the window ends.
    Flask-Limiter itself is not used: it checked every request of the app twice (in
    before_request and in the decorator) through generic machinery that cost more than the
    count; this is one storage call per limited request. The visitor's address is
    request.remote_addr (ProxyFix makes it the visitor's behind a proxy).
    """

    def init_app(self, app) -> None:
        uri = app.config["RATELIMIT_STORAGE_URI"]
        # memory:// is counted per process (with several workers, use Redis: docs/operations.md)
        storage: Storage = (
            SweepingMemoryStorage() if uri.startswith("memory://") else storage_from_string(uri)
        )
        app.extensions["patchwork_rate_limiter"] = FixedWindowRateLimiter(storage)

    def limit(self, limit_value: Callable[[], str]) -> Callable[[Callable], Callable]:
        """Decorate a view: at most `limit_value()` (e.g. "120 per minute") per address."""

        def decorate(view: Callable) -> Callable:
            scope = f"{view.__module__}.{view.__name__}"

            @wraps(view)
            def limited(*args, **kwargs):
                if (
                    current_app.config["RATELIMIT_ENABLED"]
                    and not request.environ.get(_COUNTED)  # counted before Flask: `admits`
                    and not self._hit(scope, limit_value(), request.remote_addr or "127.0.0.1")
                ):
                    abort(429)
                return view(*args, **kwargs)

            limited.rate_limit = (scope, limit_value)  # type: ignore[attr-defined]
            return limited

        return decorate

    def admits(self, view: Callable, environ: dict, address: str) -> bool:
        """Count a request to the limited `view` from `address` before Flask dispatches it
        (webapp.surveys.quick): whether the limit lets it in. A request let in is marked in
        its WSGI `environ`, so the view does not count it again."""
        scope, limit_value = view.rate_limit  # type: ignore[attr-defined]
        admitted = self._hit(scope, limit_value(), address)
        if admitted:
            environ[_COUNTED] = True
        return admitted

    @staticmethod
    def _hit(scope: str, limit_value: str, address: str) -> bool:
        strategy: FixedWindowRateLimiter = current_app.extensions["patchwork_rate_limiter"]
        for item in _parsed_limits(limit_value):
            if not strategy.hit(item, address, scope):
                g.rate_limit_reset_at = strategy.get_window_stats(item, address, scope).reset_time
                return False
        return True

    @staticmethod
    def retry_after() -> int:
        """Seconds until the limit this request hit lets its address in again."""
        reset_at = g.get("rate_limit_reset_at")
        return 60 if reset_at is None else max(1, int(reset_at) - int(time.time()))


_COUNTED = "patchwork.rate_limit_counted"  # in the WSGI environ


@lru_cache(maxsize=16)
def _parsed_limits(limit_value: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(limit_value))


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
htmx = HTMX()
# Only the public survey endpoints are limited: see RateLimiter.
limiter = RateLimiter()
