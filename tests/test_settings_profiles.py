"""Settings for customer profiles: the trait weights and the RFM map editor."""

from __future__ import annotations

import re

import pytest

from tests.conftest import csrf_from
from tests.test_refresh import AS_OF, profile, small_shop
from webapp.extensions import db
from webapp.models import ShopSettings
from webapp.segmentation import rfm
from webapp.segmentation.refresh import run_refresh
from webapp.settings import edit_map_rows, preview_map

HTMX = {"HX-Request": "true", "HX-Target": "rfm-map"}


def shop() -> ShopSettings:
    db.session.expire_all()
    return db.session.get(ShopSettings, 1)


def saved_map() -> list[tuple]:
    """The map as stored (seeded with the default the first time, as the app does)."""
    db.session.expire_all()
    return [
        (row.name, row.r_min, row.r_max, row.f_min, row.f_max)
        for row in rfm.segment_map(db.session)
    ]


def error_of(html: str, field_id: str) -> str:
    match = re.search(rf'<small class="field-error" id="{re.escape(field_id)}-error">([^<]*)', html)
    assert match, f"no error next to {field_id}"
    return match.group(1)


# --- trait weights -----------------------------------------------------------------------


def post_traits(client, declared, observed, threshold):
    data = {
        "csrf_token": csrf_from(client.get("/settings/")),
        "trait_declared_weight_pct": declared,
        "trait_observed_weight_pct": observed,
        "trait_threshold_pct": threshold,
    }
    return client.post("/settings/traits", data=data)


def test_the_page_says_changes_take_effect_at_the_next_refresh(owner_client):
    html = owner_client.get("/settings/").get_data(as_text=True)
    assert (
        html.count("take effect at the next refresh")
        + html.count("takes effect at the next refresh")
        >= 3
    )  # traits, the RFM map, the churn window
    assert 'value="60"' in html and 'value="40"' in html


def test_trait_weights_are_saved(owner_client):
    response = post_traits(owner_client, "25", "75", "50")
    assert response.status_code == 302
    assert response.headers["Location"] == "/settings/#traits"
    saved = shop()
    assert (
        saved.trait_declared_weight_pct,
        saved.trait_observed_weight_pct,
        saved.trait_threshold_pct,
    ) == (25, 75, 50)


@pytest.mark.parametrize(
    "values, field, message",
    [
        (("70", "40", "40"), "trait_observed_weight_pct", "must add up to 100 (now 70 + 40 = 110)"),
        (("-1", "101", "40"), "trait_declared_weight_pct", "Between 0 and 100."),
        (("-1", "101", "40"), "trait_observed_weight_pct", "Between 0 and 100."),
        (("60", "40", "101"), "trait_threshold_pct", "Between 0 and 100."),
        (("sixty", "40", "40"), "trait_declared_weight_pct", "Not a valid integer value."),
        (("60", "40", ""), "trait_threshold_pct", "Enter a percentage."),
    ],
)
def test_bad_trait_weights_are_refused_next_to_the_field(owner_client, values, field, message):
    response = post_traits(owner_client, *values)
    assert response.status_code == 200
    assert message in error_of(response.get_data(as_text=True), field)
    assert shop().trait_declared_weight_pct == 60 and shop().trait_threshold_pct == 40


def test_the_new_weights_are_used_by_the_next_refresh(owner_client):
    from tests.test_profiles import declare
    from tests.test_refresh import add_customer, add_order
    from webapp.models import CustomerTrait

    post_traits(owner_client, "20", "80", "40")
    ada = add_customer("Ada", email="ada@example.com")
    lines = [("Yarn", "y", 1, 9000, "yarn"), ("Zine", "z", 1, 1000, "zines")]
    add_order(ada, "#1", 10000, lines=lines)
    from datetime import UTC, datetime

    declare(ada, datetime(2025, 2, 1, tzinfo=UTC), "craft:painting")
    run = run_refresh(as_of=AS_OF)
    trait = db.session.get(CustomerTrait, (run.id, ada.id, "craft"))
    assert (trait.value, round(trait.score, 2)) == ("knitting", 0.72)


# --- the RFM map -------------------------------------------------------------------------


def map_form(client, rows, action="save") -> dict:
    data = {"csrf_token": csrf_from(client.get("/settings/")), "action": action}
    for i, row in enumerate(rows):
        for field, value in zip(("name", "r_min", "r_max", "f_min", "f_max"), row, strict=True):
            data[f"rows-{i}-{field}"] = str(value)
    return data


def post_map(client, rows, action="save", headers=None):
    return client.post("/settings/rfm-map", data=map_form(client, rows, action), headers=headers)


FOUR_CORNERS = [
    ("Best", 4, 5, 4, 5),
    ("Recent", 4, 5, 1, 3),
    ("Slipping", 1, 3, 3, 5),
    ("Gone", 1, 3, 1, 2),
]


def test_the_default_map_is_shown_as_a_table(owner_client):
    html = owner_client.get("/settings/").get_data(as_text=True)
    names = re.findall(r'id="rows-\d+-name"[^>]*value="([^"]*)"', html)
    assert names == [name.replace("'", "&#39;") for name, *_ in rfm.DEFAULT_MAP]
    assert "of the 25 cells" not in html  # the default covers every cell


def test_saving_the_map_replaces_it_in_order_and_the_next_refresh_uses_it(owner_client):
    ada, bob, cy = small_shop()
    response = post_map(owner_client, FOUR_CORNERS)
    assert response.status_code == 302
    assert response.headers["Location"] == "/settings/#rfm-map"
    assert saved_map() == FOUR_CORNERS
    run = run_refresh(as_of=AS_OF)
    # Of two customers with orders, Ada ranks R3 F3 and Bob R1 F1.
    assert (profile(run.id, ada).rfm_segment, profile(run.id, bob).rfm_segment) == (
        "Slipping",
        "Gone",
    )


def test_uncovered_cells_are_listed_in_a_warning(owner_client):
    post_map(owner_client, [("Best", 4, 5, 4, 5), ("Gone", 1, 2, 1, 2)])
    html = owner_client.get("/settings/").get_data(as_text=True)
    warning = re.search(r'<p class="warning" role="alert">([^<]*)</p>', html).group(1)
    assert warning.startswith("17 of the 25 cells have no segment: R1 F3, R1 F4, R1 F5, R2 F3")
    assert "R5 F3. Customers in them get no RFM segment." in warning
    assert "R4 F4" not in warning and "R1 F1" not in warning


def test_a_row_that_names_no_cell_is_pointed_out(owner_client):
    html = post_map(
        owner_client, [*FOUR_CORNERS, ("Shadowed", 5, 5, 5, 5)], action="add", headers=HTMX
    ).get_data(as_text=True)
    assert "“Shadowed” names no cell: rows above it cover all of its cells." in html


@pytest.mark.parametrize(
    "row, field, message",
    [
        (("", 1, 5, 1, 5), "name", "Name the segment."),
        (("Everyone", 0, 5, 1, 5), "r_min", "A score from 1 to 5."),
        (("Everyone", 1, 6, 1, 5), "r_max", "A score from 1 to 5."),
        (("Everyone", 1, 5, "x", 5), "f_min", "Not a valid integer value. A score from 1 to 5."),
        (("Everyone", 1, 5, 1, ""), "f_max", "A score from 1 to 5."),
        (("Everyone", 4, 2, 1, 5), "r_max", "At least 4: the range runs from min to max."),
        (("Everyone", 1, 5, 3, 1), "f_max", "At least 3: the range runs from min to max."),
        (("E" * 61, 1, 5, 1, 5), "name", "At most 60 characters."),
    ],
)
def test_a_bad_row_is_refused_next_to_its_field(owner_client, row, field, message):
    before = saved_map()
    response = post_map(owner_client, [FOUR_CORNERS[0], row])
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert error_of(html, f"rows-1-{field}") == message
    assert 'aria-invalid="true"' in html
    assert "Not saved yet" in html
    assert saved_map() == before


def test_the_map_keeps_at_least_one_row_and_at_most_25(owner_client):
    before = saved_map()
    html = post_map(owner_client, []).get_data(as_text=True)
    assert "Keep at least one row" in html
    html = post_map(owner_client, [("Cell", 1, 1, 1, 1)] * 26).get_data(as_text=True)
    assert "At most 25 rows" in html
    assert saved_map() == before


def test_add_remove_and_move_change_the_table_but_save_nothing(owner_client):
    before = saved_map()
    rows = FOUR_CORNERS

    def names(response) -> list[str]:
        assert response.status_code == 200
        return re.findall(
            r'id="rows-\d+-name"[^>]*value="([^"]*)"', response.get_data(as_text=True)
        )

    assert names(post_map(owner_client, rows, "up-2", HTMX)) == [
        "Best",
        "Slipping",
        "Recent",
        "Gone",
    ]
    assert names(post_map(owner_client, rows, "down-0", HTMX)) == [
        "Recent",
        "Best",
        "Slipping",
        "Gone",
    ]
    assert names(post_map(owner_client, rows, "up-0", HTMX)) == [r[0] for r in rows]
    assert names(post_map(owner_client, rows, "remove-1", HTMX)) == ["Best", "Slipping", "Gone"]
    added = post_map(owner_client, rows, "add", HTMX)
    assert names(added) == [*(r[0] for r in rows), ""]
    assert "Not saved yet" in added.get_data(as_text=True)
    reset = names(post_map(owner_client, rows, "reset", HTMX))
    assert reset == [name.replace("'", "&#39;") for name, *_ in rfm.DEFAULT_MAP]
    assert saved_map() == before


def test_htmx_gets_only_the_editor_and_a_saved_notice(owner_client):
    editor = post_map(owner_client, FOUR_CORNERS, "down-1", HTMX).get_data(as_text=True)
    assert editor.lstrip().startswith("<article") and "<html" not in editor
    saved = post_map(owner_client, FOUR_CORNERS, "save", HTMX)
    assert saved.status_code == 200
    assert "RFM map saved. It takes effect at the next refresh." in saved.get_data(as_text=True)
    assert saved_map() == FOUR_CORNERS


def test_without_htmx_a_change_renders_the_whole_page(owner_client):
    html = post_map(owner_client, FOUR_CORNERS, "remove-0").get_data(as_text=True)
    assert "<html" in html and 'value="Recent"' in html and 'value="Best"' not in html


@pytest.mark.parametrize("action", ["explode", "remove-9", "up-x", "remove--1", "sideways-1"])
def test_an_unknown_change_is_a_400(owner_client, action):
    assert post_map(owner_client, FOUR_CORNERS, action).status_code == 400


def test_edit_and_preview_helpers():
    rows = [
        dict(zip(("name", "r_min", "r_max", "f_min", "f_max"), r, strict=True))
        for r in FOUR_CORNERS
    ]
    assert edit_map_rows(rows, "down-3") == rows  # the last row cannot go further down
    assert len(edit_map_rows(rows * 7, "add")) == 28  # already too many: nothing added
    full = [{**rows[0], "name": f"r{i}"} for i in range(25)]
    assert len(edit_map_rows(full, "add")) == 25  # no 26th row
    preview = preview_map(
        [*rows, {"name": "Bad", "r_min": "3", "r_max": "1", "f_min": 1, "f_max": 5}]
    )
    assert preview.uncovered == [] and preview.unused == []
    assert preview.names[(5, 5)] == "Best" and preview.names[(1, 1)] == "Gone"
