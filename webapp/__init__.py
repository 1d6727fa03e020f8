"""The Patchwork web app."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Request, abort, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from config import INSTANCE_DIR, load_config

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = str(Path(__file__).resolve().parent / "migrations")


def create_app(config_name: str | None = None, overrides: dict | None = None) -> Flask:
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(INSTANCE_DIR),
    )
    app.config.from_mapping(load_config(config_name, overrides))
    app.config["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(app.config["DATABASE_URL"])
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True})
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    # Ids in URLs beyond what an INTEGER column holds are a 404, not a database error.
    app.url_map.converters["int"] = DatabaseIdConverter
    app.session_interface = CookieSessionInterface()

    from webapp.extensions import csrf, db, htmx, limiter, login_manager, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)
    csrf.init_app(app)
    htmx.init_app(app)
    login_manager.init_app(app)
    limiter.init_app(app)

    from webapp import (
        api,
        auth,
        catalog_views,
        customers,
        imports,
        models,  # noqa: F401  (register every table on the metadata)
        runs,
        segment_views,
        settings,
        tasks,
        web,
    )
    from webapp.campaigns import events, unsubscribe
    from webapp.campaigns import views as campaigns
    from webapp.scheduler import views as schedule
    from webapp.surveys import builder, embed, respond, results

    blueprints = (auth, web, customers, imports, catalog_views, settings, api, runs, campaigns)
    mail = (unsubscribe, events)  # what campaign emails lead back to: their links, their events
    for module in (*blueprints, *mail, segment_views, builder, results, embed, respond, schedule):
        app.register_blueprint(module.bp)
    csrf.exempt(api.bp)  # bearer tokens and HMAC signatures, not sessions, protect it
    # A cross-site iframe gets no session cookie: the signed response token and the
    # allowed-origin check protect the shopper's endpoints instead.
    csrf.exempt(embed.bp)
    csrf.exempt(respond.bp)
    csrf.exempt(unsubscribe.bp)  # the signed link is the key: mail clients' one-click POSTs
    csrf.exempt(events.bp)  # SendGrid's ECDSA signature protects it

    from webapp.cli import register_commands

    register_commands(app)
    from webapp.surveys.quick import QuickAnswers

    app.wsgi_app = QuickAnswers(app)  # inside ProxyFix (below), which sets the address first
    if app.config["PROXY_COUNT"]:
        n = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    app.before_request(reject_nul_characters)
    app.before_request(auth.require_login)
    web.register_template_helpers(app)

    if app.config["RUN_SCHEDULER_IN_PROCESS"]:  # the demo; never with several web workers
        from webapp.scheduler.process import start_in_process

        start_in_process(app)
    elif app.config["RUN_TASKS_IN_PROCESS"]:
        tasks.start_runner_thread(app)
    return app


class DatabaseIdConverter(IntegerConverter):
    """<int:...> limited to PostgreSQL's INTEGER range."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(map, *args, **kwargs)


_FORM_MIMETYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, without building the signer for a request that sends no
    session cookie (every shopper's request): the same empty session, for less work."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def reject_nul_characters():
    """No text column takes a NUL character (PostgreSQL refuses them): say so up front."""
    values = [*request.args.values()]
    if request.mimetype in _FORM_MIMETYPES:  # only these have form fields (JSON: none to parse)
        values += request.form.values()
    if any("\x00" in value for value in values):
        abort(400, "Text may not contain NUL characters.")


def normalise_database_url(url: str) -> str:
    """Accept the URLs operators write (postgres://, postgresql://) and use psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """WAL (readers never wait for the import's writer) and enforced foreign keys on SQLite."""
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
