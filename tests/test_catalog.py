from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from tests.conftest import csrf_from
from webapp import tasks
from webapp.catalog import DEFAULT_TIER, Categoriser, RuleSet, decide, split_tags
from webapp.extensions import db
from webapp.models import Category, CategoryRule, Order, OrderLine, Product


def ruleset(*rules: tuple[str, str, str, str]) -> RuleSet:
    return RuleSet.from_rows(
        SimpleNamespace(id=i, position=i, field=f, pattern=p, target=t, value=v)
        for i, (f, p, t, v) in enumerate(rules)
    )


def rules_in_db() -> list[tuple[str, str, str, str]]:
    return [
        (r.field, r.pattern, r.target, r.value)
        for r in db.session.scalars(
            select(CategoryRule).order_by(CategoryRule.position, CategoryRule.id)
        )
    ]


def add_product(sku: str, title: str, **values) -> Product:
    values.setdefault("tier", DEFAULT_TIER)
    values.setdefault("category_source", "rule")
    values.setdefault("tier_source", "rule")
    product = Product(sku=sku, title=title, **values)
    db.session.add(product)
    db.session.commit()
    return product


def add_order(external_id: str, *lines: tuple[str | None, str]) -> Order:
    order = Order(
        external_id=external_id,
        placed_at=datetime(2025, 3, 1, 12, tzinfo=UTC),
        total_cents=1000,
        currency="USD",
    )
    for position, (sku, name) in enumerate(lines):
        order.lines.append(
            OrderLine(position=position, sku=sku, name=name, quantity=1, price_cents=500)
        )
    db.session.add(order)
    db.session.commit()
    return order


# --- the rules engine ----------------------------------------------------------------------


def test_the_first_matching_rule_wins_for_each_target():
    rules = ruleset(
        ("title_or_tags", "acrylic", "category", "paint"),
        ("title_or_tags", "yarn", "category", "yarn"),
        ("title", "deluxe", "tier", "premium"),
        ("tags", "kit", "tier", "starter"),
    )
    # Both category rules match: the earlier one wins. Both tier rules match: same.
    assert rules.apply("Deluxe ACRYLIC Yarn", "Kit") == ("paint", "premium")
    assert rules.apply("Merino yarn", "kit") == ("yarn", "starter")
    assert rules.apply("Scissors") == (None, None)


@pytest.mark.parametrize(
    "tags, matches",
    [("Kit", True), ("wool, KIT , beginner", True), ("kitchen", False), ("starter kit", False)],
)
def test_a_tag_rule_matches_one_whole_tag(tags, matches):
    rules = ruleset(("tags", "kit", "tier", "starter"))
    assert (rules.apply("Anything", tags)[1] == "starter") is matches


@pytest.mark.parametrize(
    "field, title, tags, product_type, sku, matches",
    [
        ("title_or_tags", "Acrylic set", "", "", "", True),
        ("title_or_tags", "Set", "acrylic", "", "", True),
        ("title", "Set", "acrylic", "", "", False),
        ("type", "Set", "", "Acrylic paints", "", True),
        ("sku", "Set", "", "", "ACR-12", True),
        ("sku", "Acrylic set", "", "", "P-12", False),
    ],
)
def test_rules_look_only_at_their_field(field, title, tags, product_type, sku, matches):
    pattern = "acr" if field == "sku" else "acrylic"
    rules = ruleset((field, pattern, "category", "paint"))
    assert (rules.apply(title, tags, product_type, sku)[0] == "paint") is matches


def test_the_file_wins_over_rules_and_the_default_tier_is_standard():
    rules = ruleset(("title_or_tags", "acrylic", "category", "paint"))
    from_file = decide(rules, title="Acrylic yarn", file_category="Yarn", file_tier="premium")
    assert (from_file.category, from_file.category_source) == ("yarn", "file")
    assert (from_file.tier, from_file.tier_source) == ("premium", "file")
    by_rule = decide(rules, title="Acrylic yarn")
    assert (by_rule.category, by_rule.category_source) == ("paint", "rule")
    assert (by_rule.tier, by_rule.tier_source) == ("standard", "rule")


def test_split_tags():
    assert split_tags(" Kit,  Beginner Friendly ,,") == {"kit", "beginner friendly"}


# --- Categoriser: what the order importer calls for every line ----------------------------


def test_categoriser_uses_the_catalogue_for_a_known_sku(app):
    product = add_product("MY-BLUE", "Merino Yarn - Blue", category="yarn", tier="premium")

    categoriser = Categoriser.load(db.session)

    assert categoriser.for_line("MY-BLUE", "Something else entirely") == (
        product.id,
        "yarn",
        "premium",
    )


def test_categoriser_applies_rules_to_the_name_of_an_unknown_sku(app):
    categoriser = Categoriser.load(db.session)

    assert categoriser.for_line("NOT-IN-CATALOGUE", "Acrylic paint, 12 tubes") == (
        None,
        "paint",
        "standard",
    )
    assert categoriser.for_line(None, "Chunky yarn") == (None, "yarn", "standard")
    assert categoriser.for_line(None, "Gift wrap") == (None, None, "standard")


def test_categoriser_memoises_by_name(app, monkeypatch):
    categoriser = Categoriser.load(db.session)
    first = categoriser.for_line(None, "Acrylic paint")
    monkeypatch.setattr(
        categoriser.rules, "apply", lambda *a: pytest.fail("rules applied twice for one name")
    )
    assert categoriser.for_line("OTHER-SKU", "Acrylic paint") == first


# --- pages ---------------------------------------------------------------------------------


def test_catalogue_pages_need_a_login(client, auth):
    auth.create_owner()
    for url in ("/catalog/", "/catalog/categories", "/catalog/rules"):
        response = client.get(url)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login")


def test_products_list_searches_filters_and_pages(owner_client):
    for i in range(55):
        add_product(f"Y-{i:03d}", f"Merino yarn {i:03d}", category="yarn")
    add_product("P-1", "Acrylic paint set", category="paint")

    page = owner_client.get("/catalog/?q=acrylic").get_data(as_text=True)
    assert "Acrylic paint set" in page and "Merino yarn" not in page

    by_sku = owner_client.get("/catalog/?q=y-054").get_data(as_text=True)
    assert "Merino yarn 054" in by_sku and "Merino yarn 053" not in by_sku

    paint = owner_client.get("/catalog/?category=paint").get_data(as_text=True)
    assert "1 product found" in paint

    first = owner_client.get("/catalog/?category=yarn").get_data(as_text=True)
    assert "Merino yarn 049" in first and "Merino yarn 050" not in first
    assert "page=2" in first
    second = owner_client.get("/catalog/?category=yarn&page=2").get_data(as_text=True)
    assert "Merino yarn 050" in second and "Merino yarn 049" not in second


def test_active_search_returns_only_the_results(owner_client):
    add_product("P-1", "Acrylic paint set", category="paint")
    response = owner_client.get(
        "/catalog/?q=acrylic", headers={"HX-Request": "true", "HX-Target": "product-results"}
    )
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="product-results">')
    assert "Acrylic paint set" in html and "<html" not in html


def test_owner_maps_a_category_to_a_craft(owner_client):
    yarn = db.session.scalars(select(Category).where(Category.name == "classes")).one()
    page = owner_client.get(f"/catalog/categories?edit={yarn.id}")
    assert f'name="category{yarn.id}-craft"' in page.get_data(as_text=True)

    response = owner_client.post(
        f"/catalog/categories/{yarn.id}",
        data={
            f"category{yarn.id}-name": "classes",
            f"category{yarn.id}-craft": " Workshops ",
            "csrf_token": csrf_from(page),
        },
    )

    assert response.status_code == 303
    assert response.headers["Location"] == "/catalog/categories"
    db.session.refresh(yarn)
    assert yarn.craft == "workshops"
    # The crafts in use are offered when mapping the next category.
    assert '<option value="workshops">' in owner_client.get("/catalog/categories").get_data(
        as_text=True
    )


def test_inline_category_edit_over_htmx_returns_the_row(owner_client):
    paint = db.session.scalars(select(Category).where(Category.name == "paint")).one()
    add_product("P-1", "Acrylic paint set", category="paint", category_source="file")
    add_order("#1", ("P-1", "Acrylic paint set"))
    db.session.execute(OrderLine.__table__.update().values(category="paint"))
    db.session.commit()
    token = csrf_from(owner_client.get("/catalog/categories"))
    headers = {"HX-Request": "true", "X-CSRFToken": token}

    edit = owner_client.get(f"/catalog/categories/{paint.id}/edit", headers=headers)
    assert edit.get_data(as_text=True).lstrip().startswith(f'<tr id="category-{paint.id}">')

    saved = owner_client.post(
        f"/catalog/categories/{paint.id}",
        data={f"category{paint.id}-name": "Paints", f"category{paint.id}-craft": "painting"},
        headers=headers,
    )
    html = saved.get_data(as_text=True)
    assert saved.status_code == 200
    assert html.lstrip().startswith(f'<tr id="category-{paint.id}">') and "paints" in html
    # Renaming carries the products, order lines and rules along.
    assert db.session.scalar(select(Product.category)) == "paints"
    assert db.session.scalar(select(OrderLine.category)) == "paints"
    assert ("title_or_tags", "acrylic", "category", "paints") in rules_in_db()


def test_category_add_delete_and_duplicate_name(owner_client):
    token = csrf_from(owner_client.get("/catalog/categories"))
    added = owner_client.post(
        "/catalog/categories", data={"name": "Pastels", "craft": "drawing", "csrf_token": token}
    )
    assert added.status_code == 303
    pastels = db.session.scalars(select(Category).where(Category.name == "pastels")).one()
    assert pastels.craft == "drawing"

    duplicate = owner_client.post(
        "/catalog/categories", data={"name": "YARN", "craft": "", "csrf_token": token}
    )
    assert duplicate.status_code == 200
    assert "There is already a category named &#39;yarn&#39;." in duplicate.get_data(as_text=True)

    empty = owner_client.post("/catalog/categories", data={"name": " ", "csrf_token": token})
    assert 'id="name-error"' in empty.get_data(as_text=True)

    deleted = owner_client.post(
        f"/catalog/categories/{pastels.id}/delete", data={"csrf_token": token}
    )
    assert deleted.status_code == 303
    assert db.session.get(Category, pastels.id) is None


def test_rules_editor_adds_edits_and_deletes_rules(owner_client):
    token = csrf_from(owner_client.get("/catalog/rules"))

    added = owner_client.post(
        "/catalog/rules",
        data={
            "field": "title",
            "pattern": " Deluxe ",
            "target": "tier",
            "value": "Premium",
            "csrf_token": token,
        },
    )
    assert added.status_code == 303
    assert rules_in_db()[-1] == ("title", "Deluxe", "tier", "premium")
    rule = db.session.scalars(select(CategoryRule).where(CategoryRule.pattern == "Deluxe")).one()

    edited = owner_client.post(
        f"/catalog/rules/{rule.id}",
        data={
            f"rule{rule.id}-field": "tags",
            f"rule{rule.id}-pattern": "luxury",
            f"rule{rule.id}-target": "tier",
            f"rule{rule.id}-value": "premium",
            "csrf_token": token,
        },
    )
    assert edited.status_code == 303
    assert rules_in_db()[-1] == ("tags", "luxury", "tier", "premium")

    deleted = owner_client.post(f"/catalog/rules/{rule.id}/delete", data={"csrf_token": token})
    assert deleted.status_code == 303
    assert db.session.get(CategoryRule, rule.id) is None


def test_rules_editor_reorders_rules(owner_client):
    token = csrf_from(owner_client.get("/catalog/rules"))
    before = rules_in_db()
    yarn_rule = db.session.scalars(select(CategoryRule).where(CategoryRule.pattern == "yarn")).one()

    up = owner_client.post(
        f"/catalog/rules/{yarn_rule.id}/move", data={"direction": "up", "csrf_token": token}
    )
    assert up.status_code == 303
    assert rules_in_db() == [before[1], before[0], before[2]]

    down = owner_client.post(
        f"/catalog/rules/{yarn_rule.id}/move",
        data={"direction": "down"},
        headers={"HX-Request": "true", "HX-Target": "rules", "X-CSRFToken": token},
    )
    html = down.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="rules">')
    assert rules_in_db() == before
    # The last rule cannot go further down.
    owner_client.post(
        f"/catalog/rules/{yarn_rule.id}/move", data={"direction": "down", "csrf_token": token}
    )
    owner_client.post(
        f"/catalog/rules/{yarn_rule.id}/move", data={"direction": "down", "csrf_token": token}
    )
    assert rules_in_db()[-1] == before[1]


@pytest.mark.parametrize(
    "data, field_id, message",
    [
        ({"field": "title", "pattern": "  ", "target": "category", "value": "paint"},
         "pattern", "Enter the text to look for."),
        ({"field": "title", "pattern": "x", "target": "tier", "value": "gold"},
         "value", "A tier is one of: starter, standard, premium."),
        ({"field": "title", "pattern": "x", "target": "colour", "value": "red"},
         "target", "Choose category or tier."),
        ({"field": "price", "pattern": "x", "target": "tier", "value": "starter"},
         "field", "Choose title or tags, title, tags, type or SKU."),
        ({"field": "title", "pattern": "x", "target": "category", "value": "rockets"},
         "value", "There is no category &#39;rockets&#39;: add it under Categories first."),
    ],
)  # fmt: skip
def test_rules_editor_shows_errors_next_to_the_field(owner_client, data, field_id, message):
    token = csrf_from(owner_client.get("/catalog/rules"))
    before = rules_in_db()

    response = owner_client.post("/catalog/rules", data={**data, "csrf_token": token})

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert f'<small class="field-error" id="{field_id}-error">{message}</small>' in html
    assert rules_in_db() == before


def test_an_invalid_inline_edit_keeps_the_row_open_with_its_error(owner_client):
    rule = db.session.scalars(select(CategoryRule).where(CategoryRule.pattern == "kit")).one()
    token = csrf_from(owner_client.get("/catalog/rules"))
    response = owner_client.post(
        f"/catalog/rules/{rule.id}",
        data={
            f"rule{rule.id}-field": "tags",
            f"rule{rule.id}-pattern": "kit",
            f"rule{rule.id}-target": "tier",
            f"rule{rule.id}-value": "beginner",
        },
        headers={"HX-Request": "true", "X-CSRFToken": token},
    )
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith(f'<tr id="rule-{rule.id}">')
    assert f'id="rule{rule.id}-value-error"' in html
    assert 'value="beginner"' in html  # what the owner typed is kept
    db.session.refresh(rule)
    assert rule.value == "starter"


def test_reapply_rules_updates_rule_products_and_order_lines(owner_client):
    ruled = add_product("KIT-1", "Chunky knitting kit", tags="kit", category=None)
    from_file = add_product(
        "CLAY-1", "Acrylic glazed clay", category="clay", category_source="file"
    )
    add_order(
        "#1001",
        ("KIT-1", "Chunky knitting kit"),  # in the catalogue
        ("GONE-1", "Acrylic paint tubes"),  # SKU not in the catalogue: rules on the name
        (None, "Gift wrap"),
    )
    # A new rule that the existing data predates.
    db.session.add(
        CategoryRule(
            position=10, field="title", pattern="knitting", target="category", value="needles"
        )
    )
    db.session.commit()
    token = csrf_from(owner_client.get("/catalog/rules"))

    response = owner_client.post("/catalog/rules/apply", data={"csrf_token": token})

    assert response.status_code == 303
    task_id = int(response.headers["Location"].rsplit("task=", 1)[1])
    assert response.headers["Location"] == f"/catalog/rules?task={task_id}"
    assert tasks.run_pending() == 1
    db.session.expire_all()
    assert (ruled.category, ruled.tier) == ("needles", "starter")
    assert (from_file.category, from_file.tier) == ("clay", "standard")  # the file wins
    lines = {
        line.name: (line.product_id, line.category, line.tier)
        for line in db.session.scalars(select(OrderLine))
    }
    assert lines == {
        "Chunky knitting kit": (ruled.id, "needles", "starter"),
        "Acrylic paint tubes": (None, "paint", "standard"),
        "Gift wrap": (None, None, "standard"),
    }
    page = owner_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Rules re-applied: 1 product and 3 order lines changed." in page

    # Nothing changed since: a second run changes nothing.
    owner_client.post("/catalog/rules/apply", data={"csrf_token": token})
    tasks.run_pending()
    from webapp.models import Task

    last = db.session.scalars(select(Task).order_by(Task.id.desc())).first()
    assert last.result == {"products_updated": 0, "lines_updated": 0}


def test_reapply_status_polls_over_htmx(owner_client):
    token = csrf_from(owner_client.get("/catalog/rules"))
    headers = {"HX-Request": "true", "X-CSRFToken": token}
    queued = owner_client.post("/catalog/rules/apply", headers=headers).get_data(as_text=True)
    assert 'id="apply-status"' in queued and 'hx-trigger="every 1s"' in queued
    tasks.run_pending()
    from webapp.models import Task

    task = db.session.scalars(select(Task)).one()
    done = owner_client.get(f"/catalog/tasks/{task.id}", headers=headers).get_data(as_text=True)
    assert "Rules re-applied" in done and "every 1s" not in done


@pytest.mark.parametrize(
    "url, status",
    [
        ("/catalog/?page=99999999999999999999", 200),
        ("/catalog/?page=-3", 200),
        ("/catalog/rules?edit=99999999999999999999", 404),
        ("/catalog/rules?task=99999999999999999999", 200),
        ("/catalog/categories?edit=99999999999999999999", 404),
        ("/catalog/rules/99999999999999999999/edit", 404),
        ("/catalog/tasks/99999999999999999999", 404),
    ],
)
def test_out_of_range_numbers_in_urls_are_not_errors(owner_client, url, status):
    assert owner_client.get(url).status_code == status


def test_a_page_past_the_end_shows_the_last_page(owner_client):
    add_product("P-1", "Acrylic paint set", category="paint")
    assert "Acrylic paint set" in owner_client.get("/catalog/?page=7").get_data(as_text=True)


def test_the_stock_craft_question_speaks_the_catalogues_craft_vocabulary():
    # Declared and observed evidence only meet when both name a craft the same way.
    from surveys.templates import template_survey
    from webapp.catalog import DEFAULT_CATEGORIES

    crafts = {t.value for o in template_survey("craft").questions[0].options for t in o.traits}
    assert crafts == {c for c in DEFAULT_CATEGORIES.values() if c}
