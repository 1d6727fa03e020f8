"""The `patchwork` command line: a Flask CLI group with every operational task."""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
from collections.abc import Callable

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, ScriptInfo, with_appcontext
from flask.cli import run_command as flask_run_command
from sqlalchemy import select

from webapp.extensions import db


def _create_app() -> Flask:
    from webapp import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_version_option=False)
def main() -> None:
    """Patchwork: surveys, segments and campaigns for a small shop."""


@main.command(
    "run",
    params=flask_run_command.params,
    context_settings=flask_run_command.context_settings,
)
@click.pass_context
def run_command(ctx: click.Context, **kwargs) -> None:
    """Run the development server, with the background task runner in-process."""
    from webapp.database import ensure_database

    os.environ.setdefault("RUN_TASKS_IN_PROCESS", "true")
    ensure_database(ctx.ensure_object(ScriptInfo).load_app())
    ctx.invoke(flask_run_command, **kwargs)


def needs_database(func: Callable) -> Callable:
    """Create or upgrade the database (under a lock) before the command runs."""

    @functools.wraps(func)
    @with_appcontext
    def wrapper(*args, **kwargs):
        from webapp.database import ensure_database

        ensure_database(current_app._get_current_object())
        return func(*args, **kwargs)

    return wrapper


def emit_json(payload: dict) -> None:
    click.echo(json.dumps(payload, default=str))


class CommandError(click.ClickException):
    """A failure the operator can act on: one line on stderr, or one JSON object with --json."""


def json_errors(func: Callable) -> Callable:
    """With --json, also a failure prints exactly one JSON object on stdout."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        as_json = kwargs.get("as_json", False)
        try:
            return func(*args, **kwargs)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if not as_json:
                raise
            message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
            emit_json({"error": message})
            sys.exit(1)

    return wrapper


def register_commands(app: Flask) -> None:
    from webapp.campaigns.cli import campaigns_group
    from webapp.demo import demo_command
    from webapp.imports.cli import import_orders_command
    from webapp.imports.products import import_products_command
    from webapp.scheduler.cli import jobs_group, scheduler_command
    from webapp.segmentation.cli import export_profiles_command, refresh_command

    for command in (
        create_owner_command,
        init_db_command,
        worker_command,
        import_orders_command,
        import_products_command,
        demo_command,
        refresh_command,
        export_profiles_command,
        scheduler_command,
        jobs_group,
        campaigns_group,
    ):
        app.cli.add_command(command)


@click.command("init-db")
@needs_database
def init_db_command() -> None:
    """Create or upgrade the database to the newest schema."""
    click.echo(f"Database ready: {db.engine.url.render_as_string(hide_password=True)}")


@click.command("create-owner")
@click.argument("email")
@click.option(
    "--password",
    envvar="PATCHWORK_OWNER_PASSWORD",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Also read from PATCHWORK_OWNER_PASSWORD; prompted for when absent.",
)
@needs_database
def create_owner_command(email: str, password: str) -> None:
    """Create a login for EMAIL; the first login created is the shop's owner."""
    from webapp.auth import MIN_PASSWORD, create_user, normalise_email
    from webapp.models import User

    if len(password) < MIN_PASSWORD:
        raise CommandError(f"The password needs at least {MIN_PASSWORD} characters.")
    if db.session.scalar(select(User.id).where(User.email == normalise_email(email))):
        raise CommandError(f"A login for {email} exists already.")
    role = "owner" if db.session.scalar(select(User.id).limit(1)) is None else "staff"
    create_user(email, password, role=role)
    click.echo(f"Created {role} login {normalise_email(email)}.")


@click.command("worker")
@needs_database
def worker_command() -> None:
    """Run only the queue of work started in the browser, until stopped.

    `patchwork scheduler` polls the same queue (and runs every timed job); this command is
    for a second machine that only works the queue.
    """
    from webapp import tasks

    click.echo("Task runner started; Ctrl-C stops it.")
    stop = threading.Event()
    try:
        tasks.run_forever(current_app._get_current_object(), stop)
    except KeyboardInterrupt:
        stop.set()


if __name__ == "__main__":
    main()
