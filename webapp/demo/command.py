"""`patchwork demo`: a realistic craft shop, imported through the real import services, then
served on localhost with the scheduler in-process."""

from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from flask import current_app
from sqlalchemy import func, select

from webapp.cli import CommandError, needs_database
from webapp.demo.campaigns import add_demo_campaigns
from webapp.demo.shop_page import ShopPage, start_shop_page
from webapp.extensions import db

DEMO_SHOP_NAME = "Loop & Daub Craft Supply"
DEMO_ADDRESS = "Loop & Daub Craft Supply\n214 Mill Street\nBurlington, VT 05401\nUnited States"
# Not ".test": the login form's email validator refuses special-use domains.
DEMO_EMAIL = "demo@patchwork.example"
DEMO_PASSWORD = "patchwork-demo"
DEMO_CUSTOMERS = 3000


@click.command("demo")
@click.option("--no-serve", is_flag=True, help="Build the demo shop and exit.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option(
    "--shop-port",
    default=5001,
    show_default=True,
    type=int,
    help="Port of the demo shop's own pages, which carry the survey embed.",
)
@click.option("--customers", default=DEMO_CUSTOMERS, type=click.IntRange(1), hidden=True)
@click.option("--seed", default=42, type=int, hidden=True)
@needs_database
def demo_command(
    no_serve: bool, host: str, port: int, shop_port: int, customers: int, seed: int
) -> None:
    """Build a demo craft shop (about 3,000 customers, three years of orders, surveys and
    their answers) and serve it, with a page of the shop on another port carrying the embed.

    Running it again keeps the shop that is there.
    """
    if shop_port == port:
        raise click.BadParameter("must differ from --port: the shop is another origin.")
    if demo_built():
        click.echo(f"The demo shop {DEMO_SHOP_NAME!r} is already built; keeping it.")
    else:
        build_demo(customers, seed)
    from webapp.demo.surveys import demo_surveys_built

    if not demo_surveys_built(db.session):
        build_surveys(seed)
    build_segments()
    add_demo_campaigns(seed)
    created = ensure_demo_login()
    shop_url = allow_shop_origin(host, shop_port)
    url = f"http://{host}:{port}/"
    click.echo("")
    click.echo(f"  Patchwork demo: {url}")
    click.echo(f"  Log in as {DEMO_EMAIL} with password {DEMO_PASSWORD}")
    if not created:
        click.echo("  (that login existed already; its password was left as it was)")
    click.echo(f"  The shop's own pages, with the survey embed: {shop_url}")
    click.echo("")
    if not no_serve:
        serve(host, port, shop_port)


def demo_built() -> bool:
    """The demo shop is there when the shop has the demo's name and has orders.

    Refuses to mix the demo into a database that holds another shop's orders.
    """
    from webapp.models import Order
    from webapp.shop import get_shop

    has_orders = db.session.scalar(select(Order.id).limit(1)) is not None
    if not has_orders:
        return False
    if get_shop().name != DEMO_SHOP_NAME:
        url = db.engine.url.render_as_string(hide_password=True)
        raise CommandError(
            f"{url} already holds a shop's orders; the demo needs an empty database "
            "(set DATABASE_URL to another one)."
        )
    return True


def build_demo(customers: int, seed: int) -> None:
    """Generate the shop's Shopify exports and import them as a shop owner would."""
    from webapp.demo.generator import DEMO_TIMEZONE, Scale, SyntheticShop
    from webapp.imports.products import import_products_file
    from webapp.imports.service import import_orders_file
    from webapp.shop import get_shop

    started = time.monotonic()
    shop = get_shop()
    shop.name = DEMO_SHOP_NAME
    shop.postal_address = DEMO_ADDRESS
    shop.timezone = DEMO_TIMEZONE
    shop.currency = "USD"
    add_demo_rules()
    db.session.commit()

    tz = ZoneInfo(DEMO_TIMEZONE)
    now = datetime.now(tz)
    synthetic = SyntheticShop(Scale.for_customers(customers), seed=seed, end=now.date(), now=now)
    with tempfile.TemporaryDirectory(prefix="patchwork-demo-") as folder:
        products_csv = Path(folder) / "products_export.csv"
        orders_csv = Path(folder) / "orders_export.csv"
        click.echo(f"Generating {DEMO_SHOP_NAME}: {customers:,} customers, three years of orders")
        synthetic.write_products(products_csv)
        synthetic.write_orders(orders_csv)

        products = _counts(import_products_file(str(products_csv)))
        _fail_on_errors("products", products)
        click.echo(
            f"Imported products: {products.get('products_created', 0)} created, "
            f"{products.get('products_updated', 0)} updated"
        )
        orders = _counts(import_orders_file(str(orders_csv)))
        _fail_on_errors("orders", orders)
        click.echo(
            f"Imported orders: {orders['customers_created']:,} customers, "
            f"{orders['orders_created']:,} orders, {orders['lines']:,} lines"
        )
    click.echo(f"Demo shop built in {time.monotonic() - started:.1f} s.")


def build_surveys(seed: int) -> None:
    """Publish the demo's surveys and record about a year of answers to them."""
    from webapp.demo.surveys import build_demo_surveys
    from webapp.models._types import utcnow
    from webapp.shop import get_shop

    started = time.monotonic()
    made = build_demo_surveys(db.session, get_shop(), utcnow(), seed)
    click.echo(
        f"Surveys: {made['surveys']} published, {made['responses']:,} responses, "
        f"{made['answers']:,} answers ({time.monotonic() - started:.1f} s)"
    )


def build_segments() -> None:
    """The template segments and a first refresh, so that the dashboard, the RFM grid and
    the segment pages have something to show; both are kept when the demo starts again."""
    from webapp.models import Segment
    from webapp.segmentation import segments
    from webapp.segmentation.refresh import current_run_id, run_refresh

    if db.session.scalar(select(func.count(Segment.id))) == 0:
        added = segments.install_templates(db.session)
        click.echo(f"Segments: {len(added)} from the templates")
    if current_run_id() is None:
        started = time.monotonic()
        run = run_refresh(trigger="cli")
        click.echo(
            f"Refresh: {run.counts['customers']:,} profiles and "
            f"{len(run.counts.get('segments', {}))} segments ({time.monotonic() - started:.1f} s)"
        )


def allow_shop_origin(host: str, shop_port: int) -> str:
    """Let the demo shop's origin show the surveys; returns the shop page's URL."""
    from webapp.settings import normalise_origin
    from webapp.shop import get_shop

    origin = normalise_origin(f"http://{host}:{shop_port}")
    shop = get_shop()
    origins = (shop.allowed_origins or "").split()
    if origin not in origins:
        shop.allowed_origins = "\n".join([*origins, origin])
        db.session.commit()
    return origin + "/"


def demo_shop_page(patchwork_url: str) -> ShopPage:
    """The shop's pages: its embed key, and its newest order on the confirmation page, signed
    as the shop's own theme would sign it."""
    from webapp.models import Order
    from webapp.shop import get_shop
    from webapp.surveys.responses import Identity, sign_identity

    shop = get_shop()
    order_ref = db.session.scalar(
        select(Order.external_id)
        .where(Order.cancelled_at.is_(None))
        .order_by(Order.placed_at.desc(), Order.id.desc())
        .limit(1)
    )
    signature = None
    if order_ref:
        signature = sign_identity(shop.embed_secret, Identity(order_ref=order_ref))
    return ShopPage(patchwork_url, shop.embed_key, shop.name, order_ref, signature)


# The demo's owner tags premium goods "premium", and says so in a rule, as an owner would on
# the category rules page.
DEMO_RULES = [("tags", "premium", "tier", "premium")]


def add_demo_rules() -> None:
    from webapp.catalog import next_rule_position
    from webapp.models import CategoryRule

    for field, pattern, target, value in DEMO_RULES:
        exists = db.session.scalar(
            select(CategoryRule.id).where(
                CategoryRule.field == field,
                CategoryRule.pattern == pattern,
                CategoryRule.target == target,
            )
        )
        if exists is None:
            db.session.add(
                CategoryRule(
                    position=next_rule_position(db.session),
                    field=field,
                    pattern=pattern,
                    target=target,
                    value=value,
                )
            )


def _counts(report: object) -> dict:
    if isinstance(report, dict):
        return report
    return report.as_dict()  # an ImportReport


def _fail_on_errors(what: str, report: dict) -> None:
    errors = report.get("errors") or []
    if errors:
        first = errors[0]
        line, message = (
            (first["line"], first["message"])
            if isinstance(first, dict)
            else (first.line, first.message)
        )
        raise CommandError(
            f"The demo's {what} file was refused ({len(errors)} bad rows; line {line}: "
            f"{message}). This is a bug in the demo generator or the importer."
        )


def ensure_demo_login() -> bool:
    """Create the demo login unless it exists; True when it was created now."""
    from webapp.auth import create_user, normalise_email
    from webapp.models import User

    email = normalise_email(DEMO_EMAIL)
    if db.session.scalar(select(User.id).where(User.email == email)) is not None:
        return False
    has_owner = db.session.scalar(select(func.count(User.id))) > 0
    create_user(email, DEMO_PASSWORD, role="staff" if has_owner else "owner")
    return True


def serve(host: str, port: int, shop_port: int) -> None:
    """The app on localhost, with the scheduler (the quarterly refresh, and the queue of work
    started in the browser) in this process, and the demo shop's pages on another port."""
    from werkzeug.serving import run_simple

    from webapp.scheduler import process

    app = current_app._get_current_object()
    if "patchwork_scheduler" not in app.extensions:
        process.start_in_process(app)
    start_shop_page(host, shop_port, demo_shop_page(f"http://{host}:{port}"))
    click.echo("Serving; Ctrl-C stops it.")
    run_simple(host, port, app, use_reloader=False, use_debugger=False, threaded=True)
