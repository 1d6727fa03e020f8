from __future__ import annotations

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db


class Category(db.Model):
    """A product category (yarn, paint, ...) and the craft it belongs to (knitting, ...)."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    craft: Mapped[str | None] = mapped_column(String(80))


class CategoryRule(db.Model):
    """'title or tags contain acrylic -> category paint'. Applied in position order;
    for each target (category, tier) the first matching rule wins."""

    __tablename__ = "category_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    field: Mapped[str] = mapped_column(String(20))  # title_or_tags | title | tags | type | sku
    pattern: Mapped[str] = mapped_column(String(200))
    target: Mapped[str] = mapped_column(String(10))  # category | tier
    value: Mapped[str] = mapped_column(String(80))


class Product(db.Model):
    """One sellable variant, keyed by SKU (or by Shopify handle when a variant has none)."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(120), unique=True)
    handle: Mapped[str | None] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(500))
    product_type: Mapped[str | None] = mapped_column(String(255))
    tags: Mapped[str] = mapped_column(Text, default="")
    price_cents: Mapped[int | None] = mapped_column(Integer)
    category: Mapped[str | None] = mapped_column(String(80), index=True)
    tier: Mapped[str | None] = mapped_column(String(20))
    # "file" when the import said so explicitly; "rule" when a category rule chose it.
    category_source: Mapped[str | None] = mapped_column(String(10))
    tier_source: Mapped[str | None] = mapped_column(String(10))
