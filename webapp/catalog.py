"""Product categories, the crafts they belong to, and the rules that assign them.

The rules engine here is plain Python (no Flask): the products import, the order importer
(through ``Categoriser``) and "Re-apply rules" all call the same functions, so a rule means
the same thing wherever it is applied.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    MetaData,
    String,
    Table,
    and_,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from webapp.models import Category, CategoryRule, OrderLine, Product

TIERS: tuple[str, ...] = ("starter", "standard", "premium")
DEFAULT_TIER = "standard"
RULE_FIELDS: dict[str, str] = {
    "title_or_tags": "title or tags",
    "title": "title",
    "tags": "tags",
    "type": "type",
    "sku": "SKU",
}
RULE_TARGETS: tuple[str, ...] = ("category", "tier")
SOURCE_FILE = "file"
SOURCE_RULE = "rule"

# category -> craft. The shop edits this table; these are only the first-start defaults. The
# crafts are the same words as the craft traits of the stock surveys (surveys/templates.py), so
# what a shopper declares and what they buy meet in one vocabulary.
DEFAULT_CATEGORIES: dict[str, str | None] = {
    "yarn": "knitting",
    "needles": "knitting",
    "crochet": "crochet",
    "fabric": "sewing",
    "thread": "sewing",
    "quilting": "quilting",
    "weaving": "weaving",
    "embroidery": "embroidery",
    "paint": "painting",
    "brushes": "painting",
    "canvas": "painting",
    "scrapbooking": "scrapbooking",
    "paper": "scrapbooking",
    "clay": "pottery",
    "beads": "jewellery",
    "classes": None,
}

# (field, pattern, target, value): the first matching rule per target wins.
DEFAULT_RULES: list[tuple[str, str, str, str]] = [
    ("title_or_tags", "acrylic", "category", "paint"),
    ("title_or_tags", "yarn", "category", "yarn"),
    ("tags", "kit", "tier", "starter"),
]


def normalise_name(value: str | None) -> str:
    """Category names, tiers, crafts and rule values are compared trimmed and lower-cased."""
    return " ".join((value or "").split()).lower()


def split_tags(tags: str | None) -> frozenset[str]:
    """Shopify writes tags as "Kit, Beginner"; a rule matches one whole tag, any case."""
    if not tags:
        return frozenset()
    return frozenset(t for t in (normalise_name(part) for part in tags.split(",")) if t)


@dataclass(frozen=True, slots=True)
class Rule:
    field: str
    pattern: str  # lower-cased once, when the rules are compiled
    target: str
    value: str

    def matches(self, title: str, tags: frozenset[str], product_type: str, sku: str) -> bool:
        """Arguments are already lower-cased (see ``RuleSet.apply``)."""
        field = self.field
        if field == "title_or_tags":
            return self.pattern in title or self.pattern in tags
        if field == "title":
            return self.pattern in title
        if field == "tags":
            return self.pattern in tags
        if field == "type":
            return self.pattern in product_type
        if field == "sku":
            return self.pattern in sku
        return False


class RuleSet:
    """The shop's rules, compiled: lower-cased patterns, split by target, in position order."""

    def __init__(self, rules: Iterable[Rule]):
        rules = [r for r in rules if r.pattern and r.field in RULE_FIELDS]
        self.category_rules = [r for r in rules if r.target == "category"]
        self.tier_rules = [r for r in rules if r.target == "tier"]
        self.uses_sku = any(r.field == "sku" for r in rules)

    @classmethod
    def from_rows(cls, rows: Iterable) -> RuleSet:
        """From CategoryRule rows (or anything with their attributes), in position order."""
        ordered = sorted(rows, key=lambda r: (r.position or 0, r.id or 0))
        return cls(
            Rule(
                field=r.field,
                pattern=normalise_name(r.pattern),
                target=r.target,
                value=normalise_name(r.value),
            )
            for r in ordered
        )

    @classmethod
    def load(cls, session: Session) -> RuleSet:
        return cls.from_rows(session.scalars(select(CategoryRule)).all())

    def apply(
        self,
        title: str | None,
        tags: str | None = "",
        product_type: str | None = "",
        sku: str | None = "",
    ) -> tuple[str | None, str | None]:
        """(category, tier) chosen by the first matching rule of each target, else None."""
        args = (
            normalise_name(title),
            split_tags(tags),
            normalise_name(product_type),
            normalise_name(sku),
        )
        category = next((r.value for r in self.category_rules if r.matches(*args)), None)
        tier = next((r.value for r in self.tier_rules if r.matches(*args)), None)
        return category, tier


@dataclass(slots=True)
class Decision:
    """A product's category and tier, and whether the file or a rule chose each."""

    category: str | None
    tier: str
    category_source: str
    tier_source: str


def decide(
    rules: RuleSet,
    *,
    title: str,
    tags: str = "",
    product_type: str = "",
    sku: str = "",
    file_category: str | None = None,
    file_tier: str | None = None,
) -> Decision:
    """An explicit category/tier in the imported file wins over the rules; the default tier is
    "standard" when neither says anything."""
    rule_category, rule_tier = rules.apply(title, tags, product_type, sku)
    file_category = normalise_name(file_category) or None
    file_tier = normalise_name(file_tier) or None
    return Decision(
        category=file_category or rule_category,
        tier=file_tier or rule_tier or DEFAULT_TIER,
        category_source=SOURCE_FILE if file_category else SOURCE_RULE,
        tier_source=SOURCE_FILE if file_tier else SOURCE_RULE,
    )


class Categoriser:
    """Category and tier for order lines, loaded once per import and asked once per line.

    ::

        categoriser = Categoriser.load(db.session)
        product_id, category, tier = categoriser.for_line(sku, name)

    A line whose SKU is in the catalogue takes the product's; otherwise the category rules
    are applied to the line's name (as the title). Answers are memoised by name, because an
    import asks about the same few thousand product names a million times.
    """

    def __init__(self, products: dict[str, tuple[int, str | None, str | None]], rules: RuleSet):
        self.products = products
        self.rules = rules
        self._uses_sku = rules.uses_sku
        self._by_name: dict = {}

    @classmethod
    def load(cls, session: Session) -> Categoriser:
        rows = session.execute(
            select(Product.sku, Product.id, Product.category, Product.tier)
        ).all()
        products = {sku: (pid, category, tier) for sku, pid, category, tier in rows}
        return cls(products, RuleSet.load(session))

    def for_line(self, sku: str | None, name: str) -> tuple[int | None, str | None, str | None]:
        if sku:
            known = self.products.get(sku)
            if known is not None:
                return known
        # SKU rules make the SKU part of the answer; without them the name alone decides.
        key = (name, sku) if self._uses_sku else name
        answer = self._by_name.get(key)
        if answer is None:
            category, tier = self.rules.apply(name, "", "", sku or "")
            answer = (None, category, tier or DEFAULT_TIER)
            self._by_name[key] = answer
        return answer


def known_categories(session: Session) -> set[str]:
    return set(session.scalars(select(Category.name)).all())


def ensure_categories(session: Session, names: Iterable[str | None]) -> list[str]:
    """Create the categories a file or a rule names that the shop does not have yet (with no
    craft, for the owner to map). Returns the names created; the caller commits."""
    have = known_categories(session)
    created = sorted({n for n in names if n} - have)
    for name in created:
        session.add(Category(name=name, craft=None))
    return created


def crafts_in_use(session: Session) -> list[str]:
    return list(
        session.scalars(
            select(Category.craft)
            .where(Category.craft.is_not(None))
            .distinct()
            .order_by(Category.craft)
        ).all()
    )


def rename_category(session: Session, category: Category, new_name: str) -> None:
    """Renaming a category carries its products, order lines and rules along."""
    old = category.name
    if old == new_name:
        return
    category.name = new_name
    session.execute(update(Product).where(Product.category == old).values(category=new_name))
    session.execute(update(OrderLine).where(OrderLine.category == old).values(category=new_name))
    session.execute(
        update(CategoryRule)
        .where(CategoryRule.target == "category", CategoryRule.value == old)
        .values(value=new_name)
    )


def move_rule(session: Session, rule_id: int, direction: str) -> bool:
    """Swap a rule with its neighbour ("up" or "down"); positions are renumbered 0..n-1 so
    ties from older data cannot make a move a no-op. Returns False if nothing moved."""
    rules = list(
        session.scalars(select(CategoryRule).order_by(CategoryRule.position, CategoryRule.id))
    )
    index = next((i for i, r in enumerate(rules) if r.id == rule_id), None)
    if index is None:
        return False
    other = index - 1 if direction == "up" else index + 1
    if direction not in ("up", "down") or not 0 <= other < len(rules):
        return False
    rules[index], rules[other] = rules[other], rules[index]
    for position, rule in enumerate(rules):
        rule.position = position
    return True


def next_rule_position(session: Session) -> int:
    return (session.scalar(select(func.max(CategoryRule.position))) or 0) + 1


# --- re-applying the rules ---------------------------------------------------------------


def reapply_rules(session: Session, batch: int = 5000) -> dict:
    """Re-categorise what the rules decided: products whose category/tier did not come from
    the file, then every order line (from its product, else from the rules on its name).

    Products are few (a catalogue); order lines may be millions, so those are updated with
    set-based statements: one UPDATE ... FROM products, and one UPDATE ... FROM a temporary
    table holding the rules' answer per distinct line name.
    """
    rules = RuleSet.load(session)
    products_updated = _reapply_to_products(session, rules)
    session.flush()
    lines_updated = _lines_from_products(session)
    lines_updated += _lines_from_rules(session, rules, batch)
    session.commit()
    return {"products_updated": products_updated, "lines_updated": lines_updated}


def _reapply_to_products(session: Session, rules: RuleSet) -> int:
    rows = session.execute(
        select(
            Product.id,
            Product.sku,
            Product.title,
            Product.tags,
            Product.product_type,
            Product.category,
            Product.tier,
            Product.category_source,
            Product.tier_source,
        ).where(
            or_(
                Product.category_source.is_distinct_from(SOURCE_FILE),
                Product.tier_source.is_distinct_from(SOURCE_FILE),
            )
        )
    ).all()
    changes = []
    for row in rows:
        category, tier = rules.apply(row.title, row.tags, row.product_type, row.sku)
        values = {}
        if row.category_source != SOURCE_FILE:
            values.update(category=category, category_source=SOURCE_RULE)
        if row.tier_source != SOURCE_FILE:
            values.update(tier=tier or DEFAULT_TIER, tier_source=SOURCE_RULE)
        if any(getattr(row, k) != v for k, v in values.items()):
            changes.append({"id": row.id, **values})
    # Group by the set of columns changed: executemany needs one shape per statement.
    by_shape: dict[tuple, list[dict]] = {}
    for change in changes:
        by_shape.setdefault(tuple(sorted(change)), []).append(change)
    for group in by_shape.values():
        session.execute(update(Product), group)
    ensure_categories(session, (c.get("category") for c in changes))
    return len(changes)


def _lines_from_products(session: Session) -> int:
    """Lines whose SKU is in the catalogue take the product's id, category and tier."""
    stmt = (
        update(OrderLine)
        .where(OrderLine.sku == Product.sku)
        .where(
            or_(
                OrderLine.product_id.is_distinct_from(Product.id),
                OrderLine.category.is_distinct_from(Product.category),
                OrderLine.tier.is_distinct_from(Product.tier),
            )
        )
        .values(product_id=Product.id, category=Product.category, tier=Product.tier)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).rowcount or 0


def _lines_from_rules(session: Session, rules: RuleSet, batch: int) -> int:
    """Lines with no catalogue product: the rules' answer per distinct name (and SKU, when a
    rule looks at SKUs), staged in a temporary table and applied in one UPDATE.

    Runs after ``_lines_from_products``, which gave every line whose SKU is in the catalogue
    its product, so "no product" is simply ``product_id IS NULL`` (indexed)."""
    unmatched = OrderLine.product_id.is_(None)
    sku_key = func.coalesce(OrderLine.sku, "") if rules.uses_sku else None
    columns = [OrderLine.name] + ([sku_key.label("sku_key")] if sku_key is not None else [])
    keys = session.execute(select(*columns).where(unmatched).distinct()).all()
    if not keys:
        return 0

    staging = Table(
        f"tmp_line_categories_{uuid.uuid4().hex[:8]}",
        MetaData(),
        Column("name", String(500), primary_key=True),
        Column("sku_key", String(120), primary_key=True),
        Column("category", String(80)),
        Column("tier", String(20)),
        prefixes=["TEMPORARY"],
    )
    connection = session.connection()
    staging.create(connection)
    try:
        rows = []
        for key in keys:
            name = key[0]
            sku = key[1] if rules.uses_sku else ""
            category, tier = rules.apply(name, "", "", sku)
            rows.append(
                {"name": name, "sku_key": sku, "category": category, "tier": tier or DEFAULT_TIER}
            )
        for start in range(0, len(rows), batch):
            connection.execute(insert(staging), rows[start : start + batch])
        join = staging.c.name == OrderLine.name
        if rules.uses_sku:
            join = and_(join, staging.c.sku_key == func.coalesce(OrderLine.sku, ""))
        else:
            join = and_(join, staging.c.sku_key == "")
        stmt = (
            update(OrderLine)
            .where(join, unmatched)
            .where(
                or_(
                    OrderLine.category.is_distinct_from(staging.c.category),
                    OrderLine.tier.is_distinct_from(staging.c.tier),
                )
            )
            .values(category=staging.c.category, tier=staging.c.tier)
            .execution_options(synchronize_session=False)
        )
        return connection.execute(stmt).rowcount or 0
    finally:
        staging.drop(connection)
