"""Products CSV import: Shopify's products export and a generic CSV (sku, title, category,
tier, price).

Same contract as the orders import: the whole file is parsed and validated before the first
write; a bad row is reported with the physical line on which it starts (the header is line 1)
and a file with bad rows imports nothing; importing the same file twice changes nothing.
A catalogue is small (thousands of variants), so the file is held in memory and written in
one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
from sqlalchemy import select

from webapp.catalog import (
    TIERS,
    RuleSet,
    decide,
    ensure_categories,
    known_categories,
    normalise_name,
)
from webapp.cli import CommandError, emit_json, json_errors, needs_database
from webapp.extensions import db
from webapp.imports.csvutil import ImportFileError, open_text, parse_cents, read_rows
from webapp.models import Product
from webapp.tasks import handler

FORMATS = ("shopify", "generic")
SHOPIFY_REQUIRED = ("Handle", "Title", "Variant SKU", "Variant Price")
GENERIC_REQUIRED = ("sku", "title")
MAX_SKU = 120
MAX_TITLE = 500
MAX_CATEGORY = 80


class ProductFileError(Exception):
    """The file as a whole cannot be read (unknown header, not a CSV, not UTF-8)."""


@dataclass(slots=True)
class ProductRecord:
    sku: str  # the product key: Variant SKU, or the handle when a variant has none
    title: str
    line: int
    handle: str | None = None
    product_type: str = ""
    tags: str = ""
    price_cents: int | None = None
    file_category: str | None = None
    file_tier: str | None = None
    type_category: str | None = None  # Shopify's Type: a category only if the shop knows it
    taxonomy: str = ""  # Shopify's Product Category ("... > Yarn")


@dataclass(slots=True)
class RowError:
    line: int
    message: str

    def as_dict(self) -> dict:
        return {"line": self.line, "message": self.message}


def import_products_file(path: str | Path, fmt: str | None = None, dry_run: bool = False) -> dict:
    """Validate the whole file, then upsert its products by SKU.

    Returns {"products_created", "products_updated", "errors": [{line, message}]}; with any
    error nothing is written. ``dry_run`` reports what an import would do, writing nothing.
    """
    try:
        records, errors = parse_products_file(path, fmt)
    except ProductFileError as exc:
        return _report(errors=[RowError(1, str(exc))])
    if errors:
        return _report(errors=errors)
    created, updated = upsert_products(records, dry_run=dry_run)
    return _report(created, updated)


def _report(created: int = 0, updated: int = 0, errors: list[RowError] | None = None) -> dict:
    return {
        "products_created": created,
        "products_updated": updated,
        "errors": [e.as_dict() for e in errors or []],
    }


# --- reading ---------------------------------------------------------------------------


def _rows(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """(physical line on which the record starts, fields), header included: the one CSV
    reader every import uses, its file-level errors reported as this import's."""
    try:
        with open_text(str(path)) as handle:
            yield from read_rows(handle)
    except ImportFileError as exc:
        raise ProductFileError(str(exc)) from None
    except OSError as exc:
        raise ProductFileError(f"Cannot read the file: {exc.strerror or exc}") from exc


def detect_format(header: list[str]) -> str | None:
    names = {h.strip() for h in header}
    if {"Handle", "Variant SKU"} <= names or {"Handle", "Title"} <= names:
        return "shopify"
    if {"sku", "title"} <= {n.lower() for n in names}:
        return "generic"
    return None


def parse_products_file(
    path: str | Path, fmt: str | None = None
) -> tuple[list[ProductRecord], list[RowError]]:
    rows = _rows(path)
    try:
        _, header = next(rows)
    except StopIteration:
        raise ProductFileError("The file is empty.") from None
    detected = detect_format(header)
    fmt = fmt or detected
    if fmt is None:
        raise ProductFileError(
            "Unknown header: expected Shopify's products export (Handle, Title, Variant SKU, "
            "...) or a CSV with sku, title, category, tier, price columns."
        )
    if fmt not in FORMATS:
        raise ProductFileError(f"Unknown format {fmt!r}: use shopify or generic.")
    if fmt == "shopify":
        records, errors = _parse_shopify(header, rows)
    else:
        records, errors = _parse_generic(header, rows)
    errors.extend(_duplicate_errors(records))
    errors.sort(key=lambda e: e.line)
    return records, errors


def _columns(header: list[str], required: tuple[str, ...], fold: bool) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        key = name.strip().lower() if fold else name.strip()
        index.setdefault(key, i)
    missing = [c for c in required if (c.lower() if fold else c) not in index]
    if missing:
        raise ProductFileError(f"Missing column(s): {', '.join(missing)}.")
    return index


def _getter(index: dict[str, int]):
    def get(fields: list[str], name: str) -> str:
        i = index.get(name)
        return fields[i].strip() if i is not None and i < len(fields) else ""

    return get


def parse_price(raw: str) -> int | None:
    """ "12.50" -> 1250 exactly, by the one money parser every import uses; empty -> None."""
    if not raw.strip():
        return None
    cents = parse_cents(raw, "price")
    if cents < 0:
        raise ValueError(f"price {raw.strip()!r} is negative")
    return cents


def _too_long(value: str, limit: int, what: str) -> str | None:
    return f"{what} is longer than {limit} characters" if len(value) > limit else None


def _parse_shopify(header, rows) -> tuple[list[ProductRecord], list[RowError]]:
    get = _getter(_columns(header, SHOPIFY_REQUIRED, fold=False))
    option_names = [f"Option{i} Value" for i in (1, 2, 3)]
    products: dict[str, dict] = {}  # handle -> the product-level fields of its first row
    records: list[ProductRecord] = []
    errors: list[RowError] = []
    for line, fields in rows:
        if not any(f.strip() for f in fields):
            continue
        handle = get(fields, "Handle")
        title = get(fields, "Title")
        sku = get(fields, "Variant SKU")
        price_raw = get(fields, "Variant Price")
        options = [get(fields, name) for name in option_names]
        # Image-only rows carry a Handle and image columns but no variant.
        if not (title or sku or price_raw or any(options)):
            continue
        if not handle:
            errors.append(RowError(line, "Handle is empty"))
            continue
        product = products.get(handle)
        if product is None:
            if not title:
                errors.append(
                    RowError(line, f"Title is empty on the first row of product {handle!r}")
                )
                continue
            product = {
                "title": title,
                "type": get(fields, "Type"),
                "tags": get(fields, "Tags"),
                "taxonomy": get(fields, "Product Category"),
            }
            products[handle] = product
        try:
            price = parse_price(price_raw)
        except ValueError as exc:
            errors.append(RowError(line, f"Variant Price: {exc}"))
            continue
        variant = " / ".join(o for o in options if o and o != "Default Title")
        full_title = f"{product['title']} - {variant}" if variant else product["title"]
        key = sku or handle
        problem = (
            _too_long(key, MAX_SKU, "Variant SKU")
            or _too_long(full_title, MAX_TITLE, "Title")
            or _too_long(product["type"], 255, "Type")
            or _too_long(handle, 255, "Handle")
        )
        if problem:
            errors.append(RowError(line, problem))
            continue
        records.append(
            ProductRecord(
                sku=key,
                title=full_title,
                line=line,
                handle=handle,
                product_type=product["type"],
                tags=product["tags"],
                price_cents=price,
                type_category=product["type"] or None,
                taxonomy=product["taxonomy"],
            )
        )
    return records, errors


def _parse_generic(header, rows) -> tuple[list[ProductRecord], list[RowError]]:
    get = _getter(_columns(header, GENERIC_REQUIRED, fold=True))
    records: list[ProductRecord] = []
    errors: list[RowError] = []
    for line, fields in rows:
        if not any(f.strip() for f in fields):
            continue
        sku, title = get(fields, "sku"), get(fields, "title")
        category, tier = get(fields, "category"), normalise_name(get(fields, "tier"))
        if not sku:
            errors.append(RowError(line, "sku is empty"))
            continue
        if not title:
            errors.append(RowError(line, "title is empty"))
            continue
        if tier and tier not in TIERS:
            errors.append(RowError(line, f"tier {tier!r} is not one of {', '.join(TIERS)}"))
            continue
        try:
            price = parse_price(get(fields, "price"))
        except ValueError as exc:
            errors.append(RowError(line, str(exc)))
            continue
        problem = (
            _too_long(sku, MAX_SKU, "sku")
            or _too_long(title, MAX_TITLE, "title")
            or _too_long(normalise_name(category), MAX_CATEGORY, "category")
            or _too_long(get(fields, "type"), 255, "type")
        )
        if problem:
            errors.append(RowError(line, problem))
            continue
        records.append(
            ProductRecord(
                sku=sku,
                title=title,
                line=line,
                product_type=get(fields, "type"),
                tags=get(fields, "tags"),
                price_cents=price,
                file_category=category or None,
                file_tier=tier or None,
            )
        )
    return records, errors


def _duplicate_errors(records: list[ProductRecord]) -> list[RowError]:
    """A SKU names one product. Variants without a SKU share their handle as key and merge
    into one product; the same SKU on two different rows is an error the owner must fix."""
    first: dict[str, ProductRecord] = {}
    keep: list[ProductRecord] = []
    errors: list[RowError] = []
    for record in records:
        seen = first.get(record.sku)
        if seen is None:
            first[record.sku] = record
            keep.append(record)
        elif record.handle and record.sku == record.handle == seen.handle:
            continue
        else:
            errors.append(RowError(record.line, f"SKU {record.sku!r} is also on line {seen.line}"))
    records[:] = keep
    return errors


# --- writing ---------------------------------------------------------------------------


def _file_category(record: ProductRecord, shop_categories: set[str]) -> str | None:
    """Which category the file itself names: the generic `category` column always; Shopify's
    Type or a level of its Product Category taxonomy only when it is one of the shop's
    categories. (Creating categories from Shopify Types would make a re-import decide
    differently from the first import, so those are left to the rules.)"""
    if record.file_category:
        return record.file_category
    if record.type_category and normalise_name(record.type_category) in shop_categories:
        return record.type_category
    for level in reversed(record.taxonomy.split(">")):
        if normalise_name(level) in shop_categories:
            return level
    return None


FIELDS = (
    "handle",
    "title",
    "product_type",
    "tags",
    "price_cents",
    "category",
    "tier",
    "category_source",
    "tier_source",
)


def upsert_products(records: list[ProductRecord], dry_run: bool = False) -> tuple[int, int]:
    session = db.session
    rules = RuleSet.load(session)
    shop_categories = known_categories(session)
    existing = {p.sku: p for p in session.scalars(select(Product)).all()} if records else {}
    created = updated = 0
    named: list[str | None] = []
    for record in records:
        decision = decide(
            rules,
            title=record.title,
            tags=record.tags,
            product_type=record.product_type,
            sku=record.sku,
            file_category=_file_category(record, shop_categories),
            file_tier=record.file_tier,
        )
        values = {
            "handle": record.handle,
            "title": record.title,
            "product_type": record.product_type or None,
            "tags": record.tags,
            "price_cents": record.price_cents,
            "category": decision.category,
            "tier": decision.tier,
            "category_source": decision.category_source,
            "tier_source": decision.tier_source,
        }
        if record.file_category:
            named.append(decision.category)
        product = existing.get(record.sku)
        if product is None:
            created += 1
            if not dry_run:
                session.add(Product(sku=record.sku, **values))
        elif any(getattr(product, k) != v for k, v in values.items()):
            updated += 1
            if not dry_run:
                for key, value in values.items():
                    setattr(product, key, value)
    if dry_run:
        session.rollback()
        return created, updated
    ensure_categories(session, named)
    session.commit()
    return created, updated


# --- background task and command line -------------------------------------------------------


@handler("import_products")
def run_import_products(task, progress) -> dict:
    params = task.params or {}
    progress(0, 1, "Importing products")
    result = import_products_file(params["path"], params.get("format"))
    progress(1, 1, "Done")
    return result


@click.command("import-products")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Default: the header decides.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@json_errors
@needs_database
def import_products_command(file: Path, fmt: str | None, as_json: bool) -> None:
    """Import a products CSV (Shopify's products export or sku,title,category,tier,price)."""
    if not file.is_file():
        raise CommandError(f"No such file: {file}")
    result = import_products_file(file, fmt)
    if as_json:
        emit_json(result)
    else:
        for error in result["errors"]:
            click.echo(f"line {error['line']}: {error['message']}", err=True)
        if result["errors"]:
            click.echo("Nothing imported: fix the rows above and import again.", err=True)
        else:
            click.echo(
                f"Products: {result['products_created']} created, "
                f"{result['products_updated']} updated."
            )
    if result["errors"]:
        raise SystemExit(1)
