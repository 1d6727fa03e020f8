import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from webapp import tasks
from webapp.extensions import db
from webapp.imports.products import import_products_file, parse_price
from webapp.models import Category, Product

DATA = Path(__file__).parent / "data"
SHOPIFY = DATA / "products_shopify.csv"
GENERIC = DATA / "products_generic.csv"


def products() -> dict[str, Product]:
    return {p.sku: p for p in db.session.scalars(select(Product))}


def snapshot() -> list[tuple]:
    return [
        (p.sku, p.title, p.category, p.tier, p.price_cents, p.category_source, p.tier_source)
        for p in db.session.scalars(select(Product).order_by(Product.sku))
    ]


def write(tmp_path: Path, text: str, name: str = "products.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "raw, cents",
    [("12.50", 1250), ("7", 700), ("4.5", 450), ("1234.00", 123400), ("", None), ("0", 0)],
)
def test_prices_become_exact_cents(raw, cents):
    assert parse_price(raw) == cents


# One money rule for every import: no thousands separators (is "1,234" 1234 or 1.234?).
@pytest.mark.parametrize("raw", ["abc", "-1", "1.234", "nan", "inf", "1,234.00", "1e2"])
def test_bad_prices_are_refused(raw):
    with pytest.raises(ValueError):
        parse_price(raw)


def test_shopify_export_imports_one_product_per_variant(app):
    result = import_products_file(SHOPIFY)

    assert result == {"products_created": 6, "products_updated": 0, "errors": []}
    got = products()
    # The image-only row adds nothing; later variant rows inherit title, type and tags.
    assert set(got) == {"MY-BLUE", "MY-RED", "APS-01", "KIT-1", "BRUSH-S", "gift-card"}
    red = got["MY-RED"]
    assert red.title == "Merino Yarn - Red"
    assert red.handle == "merino-yarn"
    assert red.tags == "wool, Merino"
    assert red.price_cents == 1250
    # "... > Yarn" in Shopify's Product Category names the shop's category.
    assert (red.category, red.category_source) == ("yarn", "file")
    assert (red.tier, red.tier_source) == ("standard", "rule")
    # Type "Paint" names a shop category; the tag Kit makes it a starter product by rule.
    paint = got["APS-01"]
    assert paint.title == "Acrylic Paint Set"
    assert (paint.category, paint.category_source, paint.tier) == ("paint", "file", "starter")
    # No Type, no taxonomy: the rules decide.
    kit = got["KIT-1"]
    assert (kit.category, kit.category_source, kit.tier) == ("yarn", "rule", "starter")
    # An unknown Type is left to the rules (none match): no category, the default tier.
    brush = got["BRUSH-S"]
    assert (brush.category, brush.tier, brush.product_type) == (None, "standard", "Tools")
    # A variant without a SKU is keyed by its handle.
    assert got["gift-card"].price_cents == 2500
    assert db.session.scalar(select(Category.id).where(Category.name == "tools")) is None


def test_generic_csv_imports_with_the_file_winning_over_rules(app):
    result = import_products_file(GENERIC)

    assert result == {"products_created": 5, "products_updated": 0, "errors": []}
    got = products()
    assert (got["G-1"].category, got["G-1"].tier, got["G-1"].price_cents) == (
        "clay",
        "standard",
        1800,
    )
    assert (got["G-1"].category_source, got["G-1"].tier_source) == ("file", "file")
    assert (got["G-2"].category, got["G-2"].tier, got["G-2"].tier_source) == (
        None,
        "starter",
        "file",
    )
    assert got["G-3"].category == "beads"  # category names are matched lower-cased
    assert got["G-3"].price_cents == 450
    # "title or tags contain acrylic -> paint" comes before "... yarn -> yarn".
    assert (got["G-5"].category, got["G-5"].category_source) == ("paint", "rule")
    # A category the file names that the shop lacks is created, for the owner to map.
    pastels = db.session.scalars(select(Category).where(Category.name == "pastels")).one()
    assert pastels.craft is None


@pytest.mark.parametrize("path", [SHOPIFY, GENERIC])
def test_importing_the_same_file_twice_changes_nothing(app, path):
    import_products_file(path)
    before = snapshot()
    categories = db.session.scalar(select(func.count(Category.id)))

    again = import_products_file(path)

    assert again == {"products_created": 0, "products_updated": 0, "errors": []}
    assert snapshot() == before
    assert db.session.scalar(select(func.count(Category.id))) == categories


def test_a_changed_product_counts_as_updated(app, tmp_path):
    import_products_file(GENERIC)
    changed = write(
        tmp_path,
        GENERIC.read_text().replace(
            "G-1,Stoneware Clay 5kg,clay,standard,18.00",
            "G-1,Stoneware Clay 5kg,clay,premium,19.00",
        ),
    )

    result = import_products_file(changed)

    assert result == {"products_created": 0, "products_updated": 1, "errors": []}
    assert (products()["G-1"].tier, products()["G-1"].price_cents) == ("premium", 1900)


def test_a_bad_row_reports_its_physical_line_and_imports_nothing(app, tmp_path):
    # The first record spans lines 2-4 (Body (HTML) has line breaks): MY-RED is on line 5.
    bad = write(
        tmp_path,
        SHOPIFY.read_text().replace(
            "MY-RED,100,shopify,deny,manual,12.50", "MY-RED,100,shopify,deny,manual,abc"
        ),
    )

    result = import_products_file(bad)

    assert result["products_created"] == result["products_updated"] == 0
    assert result["errors"] == [
        {"line": 5, "message": "Variant Price: price 'abc' is not an amount like 1234.50"}
    ]
    assert db.session.scalar(select(func.count(Product.id))) == 0


def test_generic_rows_are_validated(app, tmp_path):
    path = write(
        tmp_path,
        "sku,title,category,tier,price\n"
        ",No sku,,,1\n"
        "A-1,,,,1\n"
        "A-2,Gold,,gold,1\n"
        "A-3,Fine,,,1\n"
        "A-3,Twice,,,1\n",
    )

    result = import_products_file(path)

    assert [e["line"] for e in result["errors"]] == [2, 3, 4, 6]
    assert "tier 'gold' is not one of starter, standard, premium" in result["errors"][2]["message"]
    assert "also on line 5" in result["errors"][3]["message"]
    assert db.session.scalar(select(func.count(Product.id))) == 0


def test_an_unknown_header_is_an_error_on_line_1(app, tmp_path):
    path = write(tmp_path, "name,cost\nx,1\n")
    result = import_products_file(path)
    assert result["errors"][0]["line"] == 1
    assert "Unknown header" in result["errors"][0]["message"]


def test_dry_run_counts_without_writing(app):
    result = import_products_file(GENERIC, dry_run=True)
    assert result["products_created"] == 5
    assert db.session.scalar(select(func.count(Product.id))) == 0
    assert db.session.scalar(select(Category.id).where(Category.name == "pastels")) is None


def test_import_products_task(app):
    task = tasks.enqueue("import_products", {"path": str(SHOPIFY), "format": "shopify"})
    tasks.run_pending()
    db.session.refresh(task)
    assert task.status == "done"
    assert task.result["products_created"] == 6


def test_cli_json_prints_one_object(app, runner):
    result = runner.invoke(args=["import-products", str(GENERIC), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"products_created": 5, "products_updated": 0, "errors": []}


def test_cli_json_with_bad_rows_exits_1(app, runner, tmp_path):
    path = write(tmp_path, "sku,title,category,tier,price\nA-1,Thing,,,abc\n")
    result = runner.invoke(args=["import-products", str(path), "--json", "--format", "generic"])
    assert result.exit_code == 1
    payload = json.loads(result.output)
    assert payload["errors"] == [
        {"line": 2, "message": "price 'abc' is not an amount like 1234.50"}
    ]
    assert payload["products_created"] == 0


def test_cli_json_missing_file_is_one_object(app, runner, tmp_path):
    result = runner.invoke(args=["import-products", str(tmp_path / "nope.csv"), "--json"])
    assert result.exit_code == 1
    assert "No such file" in json.loads(result.output)["error"]


def test_cli_text_output(app, runner):
    result = runner.invoke(args=["import-products", str(SHOPIFY)])
    assert result.exit_code == 0
    assert "Products: 6 created, 0 updated." in result.output


def test_forced_format_that_does_not_fit_reports_missing_columns(app, runner):
    result = runner.invoke(args=["import-products", str(GENERIC), "--format", "shopify", "--json"])
    assert result.exit_code == 1
    assert "Missing column(s): Handle" in json.loads(result.output)["errors"][0]["message"]


def test_values_too_long_for_the_database_are_bad_rows(app, tmp_path):
    path = write(
        tmp_path, f"sku,title,category,tier,price\n{'S' * 121},Thing,,,1\nA-1,Fine,{'c' * 81},,1\n"
    )
    result = import_products_file(path)
    assert [e["line"] for e in result["errors"]] == [2, 3]
    assert db.session.scalar(select(func.count(Product.id))) == 0
