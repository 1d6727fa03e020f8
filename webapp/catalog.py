"""Product categories, the crafts they belong to, and the rules that assign them."""

from __future__ import annotations

# category -> craft. The shop edits this table; these are only the first-start defaults.
DEFAULT_CATEGORIES: dict[str, str | None] = {
    "yarn": "knitting",
    "needles": "knitting",
    "crochet": "crochet",
    "fabric": "sewing",
    "thread": "sewing",
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


# The interface the order importer uses (filled in by the catalogue work):
#
#   categoriser = Categoriser.load(db.session)   # products by SKU + rules, loaded once per import
#   product_id, category, tier = categoriser.for_line(sku, name)
#
# A line whose SKU is in the catalogue takes the product's category and tier; otherwise the
# category rules are applied to the line's name.
