"""The shop's own settings (one row), for views and services alike."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from flask import g

from webapp.extensions import db
from webapp.models import ShopSettings


def get_shop() -> ShopSettings:
    """The settings row, loaded once per request."""
    if "shop" not in g:
        shop = db.session.get(ShopSettings, 1)
        if shop is None:
            from webapp.database import seed_shop

            seed_shop()
            shop = db.session.get(ShopSettings, 1)
        g.shop = shop
    return g.shop


def shop_timezone() -> ZoneInfo:
    return ZoneInfo(get_shop().timezone)
