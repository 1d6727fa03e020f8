"""The demo craft shop's product catalogue: 12 craft categories (plus classes), each with
starter, standard and premium products, some sold in several variants (colours, sizes)."""

from __future__ import annotations

from dataclasses import dataclass, field

TIERS = ("starter", "standard", "premium")
TIER_CODES = {"starter": "ST", "standard": "SD", "premium": "PR"}

# (tier, title, price in cents, variant option values or ())
_Spec = tuple[str, str, int, tuple[str, ...]]

COLOURS = ("Sage", "Rust", "Oatmeal", "Navy", "Mustard")
PAINT_COLOURS = ("Cadmium Red", "Ultramarine", "Titanium White", "Yellow Ochre", "Sap Green")

# category -> (SKU prefix, vendor, products). Category names are those of
# webapp.catalog.DEFAULT_CATEGORIES, so the seeded category -> craft table applies.
CATALOGUE: dict[str, tuple[str, str, list[_Spec]]] = {
    "yarn": (
        "YRN",
        "Woolly Hollow Mills",
        [
            ("starter", "Learn to Knit Scarf Kit", 2400, ()),
            ("starter", "Chunky Beanie Knitting Kit", 2900, ()),
            ("standard", "Merino Worsted Yarn", 950, COLOURS),
            ("standard", "Cotton DK Yarn", 675, COLOURS[:3]),
            ("standard", "Sock Yarn 4-ply", 1200, COLOURS[1:4]),
            ("premium", "Hand-dyed Cashmere Blend Yarn", 3800, COLOURS[:3]),
            ("premium", "Alpaca Silk Lace Yarn", 2900, ()),
        ],
    ),
    "needles": (
        "NDL",
        "Birchwood Tools",
        [
            ("starter", "Beginner Bamboo Needle Kit", 1400, ()),
            ("standard", "Birch Straight Needles", 1100, ("4 mm", "4.5 mm", "5 mm")),
            ("standard", "Circular Needles 80 cm", 1350, ("3.5 mm", "4 mm", "5 mm")),
            ("premium", "Interchangeable Rosewood Needle Set", 12900, ()),
            ("premium", "Carbon Fibre Double-pointed Set", 4200, ()),
        ],
    ),
    "fabric": (
        "FAB",
        "Calico Lane",
        [
            ("starter", "Tote Bag Sewing Kit", 2700, ()),
            ("starter", "Fat Quarter Bundle Kit", 2200, ()),
            ("standard", "Quilting Cotton by the Metre", 1400, ("Floral", "Gingham", "Teal")),
            ("standard", "Linen Blend Fabric", 1800, ()),
            ("premium", "Liberty Tana Lawn", 4200, ("Betsy", "Capel")),
            ("premium", "Japanese Double Gauze", 3200, ()),
        ],
    ),
    "thread": (
        "THR",
        "Spool & Needle",
        [
            ("starter", "Sewing Thread Starter Kit", 1200, ()),
            ("standard", "All-purpose Thread 500 m", 450, ("Black", "White", "Navy")),
            ("standard", "Cotton Quilting Thread", 600, ()),
            ("premium", "Silk Hand-sewing Thread Set", 4600, ()),
        ],
    ),
    "embroidery": (
        "EMB",
        "Hoop & Floss",
        [
            ("starter", "Botanical Embroidery Kit", 2600, ()),
            ("starter", "Cross Stitch Starter Kit", 1900, ()),
            ("standard", "Stranded Cotton Floss Pack", 1100, ()),
            ("standard", "Beech Embroidery Hoop", 550, ("15 cm", "20 cm", "25 cm")),
            ("premium", "Goldwork Embroidery Collection", 8500, ()),
            ("premium", "Silk Floss Heirloom Set", 6400, ()),
        ],
    ),
    "paint": (
        "PNT",
        "Daub & Co.",
        [
            ("starter", "Acrylic Paint Starter Kit", 1900, ()),
            ("starter", "Watercolour Travel Kit", 2400, ()),
            ("standard", "Heavy Body Acrylic 75 ml", 850, PAINT_COLOURS),
            ("standard", "Artist Watercolour Half Pan", 725, PAINT_COLOURS[:4]),
            ("premium", "Professional Oil Colour Set", 11900, ()),
            ("premium", "Handmade Gouache Collection", 7800, ()),
        ],
    ),
    "brushes": (
        "BRS",
        "Daub & Co.",
        [
            ("starter", "Beginner Brush Kit", 1200, ()),
            ("standard", "Synthetic Round Brush", 650, ("Size 2", "Size 6", "Size 10")),
            ("standard", "Flat Shader Brush", 750, ()),
            ("premium", "Kolinsky Sable Brush", 4800, ("Size 4", "Size 8")),
        ],
    ),
    "canvas": (
        "CNV",
        "Daub & Co.",
        [
            ("starter", "Canvas Panel Kit (5 pack)", 1100, ()),
            ("standard", "Stretched Cotton Canvas", 1600, ("30x40 cm", "50x70 cm")),
            ("premium", "Belgian Linen Canvas", 6400, ()),
        ],
    ),
    "scrapbooking": (
        "SCR",
        "Paper Moon Studio",
        [
            ("starter", "Scrapbook Starter Kit", 2900, ()),
            ("standard", "12x12 Scrapbook Album", 2400, ()),
            ("standard", "Washi Tape Set", 900, ()),
            ("standard", "Sticker Sheets Pack", 650, ()),
            ("premium", "Leather-bound Memory Album", 8900, ()),
        ],
    ),
    "paper": (
        "PPR",
        "Paper Moon Studio",
        [
            ("starter", "Origami Paper Kit", 700, ()),
            ("standard", "Patterned Cardstock 12x12", 1200, ("Autumn", "Botanical", "Celestial")),
            ("standard", "Mixed Media Pad A4", 1400, ()),
            ("premium", "Handmade Cotton Rag Paper", 3600, ()),
        ],
    ),
    "clay": (
        "CLY",
        "Kiln Corner",
        [
            ("starter", "Air-dry Clay Starter Kit", 2200, ()),
            ("standard", "Stoneware Clay 10 kg", 2800, ()),
            ("standard", "Pottery Tool Set", 1800, ()),
            ("standard", "Underglaze Pot", 900, ("Cobalt", "Celadon", "Black")),
            ("premium", "Porcelain Clay 10 kg", 5500, ()),
            ("premium", "Professional Banding Wheel", 14900, ()),
        ],
    ),
    "beads": (
        "BDS",
        "Bead Bazaar",
        [
            ("starter", "Bracelet Making Kit", 1800, ()),
            ("standard", "Glass Seed Beads 20 g", 450, ("Crystal", "Matte Black", "Gold")),
            ("standard", "Gemstone Chip Strand", 800, ()),
            ("premium", "Sterling Silver Findings Set", 5800, ()),
            ("premium", "Freshwater Pearl Strand", 4500, ()),
        ],
    ),
    "classes": (
        "CLS",
        "Loop & Daub Studio",
        [
            ("starter", "Learn to Knit Workshop", 4500, ()),
            ("standard", "Wheel Throwing Evening Class", 6500, ()),
            ("premium", "Watercolour Masterclass Weekend", 22000, ()),
        ],
    ),
}

# What a shopper of each craft mostly buys.
CRAFT_CATEGORIES: dict[str, tuple[str, ...]] = {
    "knitting": ("yarn", "yarn", "yarn", "needles"),
    "sewing": ("fabric", "fabric", "thread"),
    "embroidery": ("embroidery", "embroidery", "thread"),
    "painting": ("paint", "paint", "brushes", "canvas"),
    "scrapbooking": ("scrapbooking", "scrapbooking", "paper"),
    "pottery": ("clay",),
    "jewellery": ("beads",),
}

# Lines that are not in the catalogue: discontinued stock and gift cards, which the
# importer categorises by its rules on the line's name (or leaves uncategorised).
LEGACY_ITEMS: tuple[tuple[str, str, int], ...] = (
    ("OLD-PNT-77", "Acrylic Pouring Medium (discontinued)", 1450),
    ("OLD-YRN-12", "Mohair Yarn Clearance", 700),
    ("", "Gift Card", 2500),
    ("", "Gift Card", 5000),
    ("", "Mystery Craft Box", 3500),
)


@dataclass(frozen=True, slots=True)
class Variant:
    sku: str
    title: str  # the product's title
    option: str | None  # "Sage", "4 mm"; None for a product without options
    price_cents: int
    compare_at_cents: int | None
    category: str
    tier: str
    vendor: str
    requires_shipping: bool

    @property
    def line_name(self) -> str:
        """The name Shopify writes on an order line: "Title - Option"."""
        return f"{self.title} - {self.option}" if self.option else self.title


@dataclass(frozen=True, slots=True)
class Product:
    handle: str
    title: str
    category: str
    tier: str
    vendor: str
    tags: str
    variants: tuple[Variant, ...]
    option_name: str | None = None
    body_html: str = field(default="")


def _slug(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")


def _tags(category: str, tier: str) -> str:
    extra = {"starter": ["beginner", "kit"], "standard": [], "premium": ["premium"]}[tier]
    return ", ".join([category, *extra])


def build_catalogue() -> list[Product]:
    """Every product of the demo shop, in a fixed order (no randomness)."""
    products = []
    for category, (prefix, vendor, specs) in CATALOGUE.items():
        counters = dict.fromkeys(TIERS, 0)
        for tier, title, price, options in specs:
            counters[tier] += 1
            base_sku = f"{prefix}-{TIER_CODES[tier]}{counters[tier]:02d}"
            # Every fifth standard product is on sale: Shopify's compare-at price.
            on_sale = tier == "standard" and counters[tier] == 2
            variants = tuple(
                Variant(
                    sku=f"{base_sku}-{_slug(option).upper()}" if option else base_sku,
                    title=title,
                    option=option,
                    price_cents=price,
                    compare_at_cents=price * 5 // 4 if on_sale else None,
                    category=category,
                    tier=tier,
                    vendor=vendor,
                    requires_shipping=category != "classes",
                )
                for option in (options or (None,))
            )
            option_name = None
            if options:
                option_name = "Colour" if options[0] in COLOURS + PAINT_COLOURS else "Size"
                if category in ("fabric", "paper", "clay", "thread", "beads"):
                    option_name = "Style" if category in ("fabric", "paper") else "Colour"
            products.append(
                Product(
                    handle=_slug(title),
                    title=title,
                    category=category,
                    tier=tier,
                    vendor=vendor,
                    tags=_tags(category, tier),
                    variants=variants,
                    option_name=option_name,
                    body_html=f"<p>{title} from {vendor}.</p>",
                )
            )
    return products
