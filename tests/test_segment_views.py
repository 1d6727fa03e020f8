"""The segment pages: list and templates, the builder (form <-> tree, structural edits, live
counts, messages by the rule at fault), a segment's figures and members, delete, and the
partials for the customer page and the dashboard."""

from __future__ import annotations

import html as html_lib
import re
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from tests.conftest import csrf_from
from tests.factories import add_customer, add_survey
from tests.test_segments import AS_OF, answer, at, cond, everyone, shop
from webapp import segment_views
from webapp.extensions import db
from webapp.models import Category, Segment, SegmentMember, SegmentRunStat
from webapp.segment_forms import (
    FIELD_GROUPS,
    EditError,
    FormError,
    apply_edit,
    draft_from_rules,
    draft_from_stored,
    node_id,
    parse_action,
    read_tree,
    split_known,
)
from webapp.segmentation import segments
from webapp.segmentation.refresh import run_refresh
from webapp.segmentation.rules import FIELDS, validate

HX_EDITOR = {"HX-Request": "true", "HX-Target": "rule-editor"}
HX = {"HX-Request": "true"}


# --- helpers ---------------------------------------------------------------------------------


class FormValues(HTMLParser):
    """What a browser posts for the form with id `form_id`: its successful controls."""

    def __init__(self, form_id: str):
        super().__init__()
        self.form_id, self.inside, self.values = form_id, False, []
        self.select: str | None = None
        self.options: list[tuple[str, bool]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside:
            return
        if tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind == "checkbox" and "checked" not in a:
                return
            self.values.append((a["name"], a.get("value", "on" if kind == "checkbox" else "")))
        elif tag == "select":
            self.select, self.options = a.get("name"), []
        elif tag == "option" and self.select is not None:
            self.options.append((a.get("value", ""), "selected" in a))
        elif tag == "textarea":
            self.values.append((a["name"], ""))

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        if tag == "select" and self.select is not None:
            chosen = [v for v, selected in self.options if selected]
            first = chosen or [v for v, _ in self.options[:1]]
            self.values += [(self.select, v) for v in first[:1]]
            self.select = None

    def handle_data(self, data):
        if self.inside and self.values and self.values[-1][0] == "description":
            name, value = self.values.pop()
            self.values.append((name, value + data))


def form_of(html: str, form_id: str = "segment-form") -> MultiDict:
    parser = FormValues(form_id)
    parser.feed(html)
    return MultiDict(parser.values)


def text(html: str) -> str:
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def error_at(html: str, path: str) -> str:
    """The message shown beside the rule at `path`."""
    found = re.search(rf'<small id="{node_id(path)}-error"[^>]*>([^<]*)</small>', html)
    assert found, f"no message slot for rule {path!r}"
    return html_lib.unescape(found.group(1))


def post_builder(client, url: str, form: MultiDict, action: str, headers=None):
    data = MultiDict(form)
    data.setlist("action", [action])
    return client.post(url, data=data, headers=headers or {})


def open_builder(client, url: str = "/segments/new"):
    page = client.get(url)
    assert page.status_code == 200
    return form_of(page.get_data(as_text=True))


def saved(name: str) -> Segment:
    db.session.expire_all()
    return db.session.scalars(select(Segment).where(Segment.name == name)).one()


@pytest.fixture
def refreshed(app):
    """The test_segments shop, refreshed as of AS_OF."""
    people = shop()
    run_refresh(as_of=AS_OF)
    return SimpleNamespace(**dict(zip(("ada", "bob", "cy", "di"), people, strict=True)))


# --- the form <-> tree module, without a database ---------------------------------------------


def test_every_field_is_in_exactly_one_menu_group():
    listed = [key for _, keys in FIELD_GROUPS for key in keys]
    assert sorted(listed) == sorted(FIELDS)


def test_a_posted_form_becomes_the_draft_tree_in_path_order():
    form = MultiDict(
        [
            ("rules[].match", "all"),
            ("rules[2].match", "any"),
            ("rules[2.1].field", "country"),
            ("rules[2.1].shown", "country"),
            ("rules[2.1].op", "in"),
            ("rules[2.1].text", " France, , Spain "),
            ("rules[1].field", "monetary"),
            ("rules[1].shown", "monetary"),
            ("rules[1].op", "between"),
            ("rules[1].low", "10"),
            ("rules[1].high", "99.50"),
            ("rules[1.1].field", "frequency"),  # inside a condition: dropped
            ("rules[7.1].field", "frequency"),  # no parent: dropped
            ("csrf_token", "x"),
        ]
    )
    assert read_tree(form) == {
        "match": "all",
        "rules": [
            {"field": "monetary", "op": "between", "value": ["10", "99.50"]},
            {
                "match": "any",
                "rules": [{"field": "country", "op": "in", "value": ["France", "Spain"]}],
            },
        ],
    }


@pytest.mark.parametrize(
    ("posted", "expected"),
    [
        # Another field picked: the old field's inputs mean nothing for it.
        (
            {"field": "lifecycle", "shown": "frequency", "op": "ge", "num": "3"},
            {"field": "lifecycle", "op": "in", "value": []},
        ),
        # Same kind of operator kept across fields.
        (
            {"field": "country", "shown": "lifecycle", "op": "not_in", "choice": "active"},
            {"field": "country", "op": "not_in", "value": []},
        ),
        # One number becomes between's lower bound, and back.
        (
            {"field": "r", "shown": "r", "op": "between", "num": "2"},
            {"field": "r", "op": "between", "value": ["2", ""]},
        ),
        (
            {"field": "r", "shown": "r", "op": "ge", "low": "2", "high": "4"},
            {"field": "r", "op": "ge", "value": "2"},
        ),
        (
            {"field": "behaviour", "shown": "frequency", "op": "ge"},
            {"field": "behaviour", "op": "is", "value": "frequent"},
        ),
        (
            {"field": "consent", "shown": "consent", "op": "is_not"},
            {"field": "consent", "op": "is_not", "value": "sendable"},
        ),
        # A new dimension drops the old dimension's values; the same keeps boxes and typed.
        (
            {"field": "trait", "shown": "trait", "op": "in", "dimension": "skill",
             "shown_dimension": "craft", "choice": "knitting"},
            {"field": "trait", "op": "in", "dimension": "skill", "value": []},
        ),
        (
            {"field": "trait", "shown": "trait", "op": "in", "dimension": "Craft",
             "shown_dimension": "craft", "choice": "knitting", "other": "tatting"},
            {"field": "trait", "op": "in", "dimension": "craft", "value": ["knitting", "tatting"]},
        ),
        # A new survey drops the question and options; a new question drops the options.
        (
            {"field": "answer", "shown": "answer", "op": "answered", "survey_id": "2",
             "shown_survey": "1", "question_id": "craft", "shown_question": "craft",
             "choice": "knitting", "within_days": "30"},
            {"field": "answer", "op": "answered", "survey_id": "2", "question_id": "",
             "value": [], "within_days": "30"},
        ),
        (
            {"field": "answer", "shown": "answer", "op": "answered", "survey_id": "1",
             "shown_survey": "1", "question_id": "skill", "shown_question": "craft",
             "choice": "knitting"},
            {"field": "answer", "op": "answered", "survey_id": "1", "question_id": "skill",
             "value": [], "within_days": ""},
        ),
        (
            {"field": "category", "shown": "category", "op": "has", "category": "yarn",
             "min_orders": "2", "within_days": ""},
            {"field": "category", "op": "has", "category": "yarn", "min_orders": "2",
             "within_days": ""},
        ),
        ({"field": "nope", "op": "x"}, {"field": "nope", "op": "x"}),
    ],
)  # fmt: skip
def test_a_condition_reads_the_inputs_its_field_has(posted, expected):
    form = MultiDict([("rules[].match", "all")])
    for key, value in posted.items():
        form.add(f"rules[1].{key}", value)
    assert read_tree(form)["rules"] == [expected]


@pytest.mark.parametrize(
    "form",
    [
        MultiDict([("name", "x")]),  # no rules at all
        MultiDict([("rules[].match", "all")] + [(f"rules[{i}].field", "r") for i in range(1, 500)]),
        MultiDict([("rules[].match", "all"), ("rules[1.1.1.1.1.1.1.1.1].match", "all")]),
    ],
    ids=["no-root", "too-many-nodes", "too-deep"],
)
def test_a_form_the_builder_cannot_have_posted_is_refused(form):
    with pytest.raises(FormError):
        read_tree(form)


def test_saved_trees_show_amounts_in_units_and_numbers_as_text():
    tree = validate(
        everyone(
            cond("monetary", "between", ["12.5", "100"]),
            cond("category", "has", None, category="Yarn", min_orders=2, within_days=90),
            everyone(cond("frequency", "ge", 3), match="any"),
        )
    )
    draft = draft_from_rules(tree)
    assert draft["rules"][0]["value"] == ["12.50", "100.00"]
    assert draft["rules"][1] == {
        "field": "category", "op": "has", "category": "yarn", "min_orders": "2",
        "within_days": "90",
    }  # fmt: skip
    assert draft["rules"][2] == {"match": "any", "rules": [cond("frequency", "ge", "3")]}
    assert validate(draft) == tree


def test_a_stored_tree_that_no_longer_validates_still_opens():
    stored = {
        "match": "all",
        "rules": [
            {"field": "gone", "op": "eq", "value": 1},  # values kept as text
            {"match": "any", "rules": [cond("aov", "ge", 1250), "junk"]},
        ],
    }
    assert draft_from_stored(stored) == {
        "match": "all",
        "rules": [
            {"field": "gone", "op": "eq", "value": "1"},
            {"match": "any", "rules": [cond("aov", "ge", "12.50")]},
        ],
    }
    assert draft_from_stored(["not", "a", "tree"]) == {"match": "all", "rules": []}
    refused = {"field": "aov", "op": "between", "value": [5000, 100], "junk": {"x": 1}}
    assert draft_from_stored(everyone(refused))["rules"] == [
        {"field": "aov", "op": "between", "value": ["50.00", "1.00"]}  # cents shown as amounts
    ]


def test_structural_edits_add_and_remove_nodes_by_path():
    draft = {"match": "all", "rules": []}
    assert apply_edit(draft, "add-condition", "") == "1"
    assert apply_edit(draft, "add-group", "") == "2"
    assert apply_edit(draft, "add-group", "2") == "2.2"
    assert apply_edit(draft, "add-condition", "2.2") == "2.2.2"
    assert [len(draft["rules"]), len(draft["rules"][1]["rules"])] == [2, 2]
    assert apply_edit(draft, "remove", "2.1") == "2"
    assert draft["rules"][1]["rules"][0]["match"] == "all"  # the nested group moved up
    assert apply_edit(draft, "add-group", "2.1") == "2.1.3"  # the fourth level
    with pytest.raises(EditError) as caught:
        apply_edit(draft, "add-group", "2.1.3")  # no fifth
    assert (caught.value.path, str(caught.value)) == ("2.1.3", "Groups nest at most 4 deep.")
    for verb, path in [("remove", ""), ("remove", "9"), ("add-condition", "1"), ("remove", "2.x")]:
        with pytest.raises(FormError):
            apply_edit(draft, verb, path)


@pytest.mark.parametrize("raw", ["delete:1", "save:1", "add-group:1..2", "remove:a", "x" * 99])
def test_unknown_actions_are_refused(raw):
    with pytest.raises(FormError):
        parse_action(raw)


def test_values_no_longer_offered_are_kept_ticked_or_typed():
    known = [("active", "active"), ("new", "new")]
    assert split_known(["new", "zombie"], known, other=False) == (
        [*known, ("zombie", "zombie")],
        "",
    )
    assert split_known(["new", "tatting", "x"], known, other=True) == (known, "tatting, x")


def test_the_size_chart_scales_bars_to_the_largest():
    runs = [SimpleNamespace(id=i) for i in range(3)]
    chart = segment_views.size_chart(list(zip(runs, [50, 100, 0], strict=True)), 300, 100)
    assert chart.top == 100
    # Six slots at least: three refreshes take the left half, bars 80% of their slot.
    assert [(b.x, b.width, b.height, b.y) for b in chart.bars] == [
        (5.0, 40.0, 50.0, 50.0),
        (55.0, 40.0, 100.0, 0.0),
        (105.0, 40.0, 0.0, 100.0),
    ]
    wide = segment_views.size_chart([(runs[0], 1)] * 10, 300, 100)
    assert [b.x for b in wide.bars][:2] == [3.0, 33.0] and wide.bars[-1].width == 24.0
    assert segment_views.size_chart([]).bars == []


# --- the list and the templates ----------------------------------------------------------------


def test_segment_pages_need_the_owner_login(client, auth):
    auth.create_owner()
    for url in ("/segments/", "/segments/new", "/segments/summary", "/segments/for-customer/1"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.location


def test_before_the_first_refresh_the_list_says_counts_come_with_it(owner_client):
    segments.create_segment(db.session, "Buyers", everyone(cond("frequency", "ge", 1)))
    db.session.commit()
    html = owner_client.get("/segments/").get_data(as_text=True)
    assert "Member counts come with the first refresh" in text(html)
    assert 'href="/refresh/"' in html
    assert "Counted at the first refresh" in text(html)
    assert 'href="/segments/new"' in html and "New segment" in html


def test_the_list_shows_members_share_sendable_movement_and_warnings(owner_client, refreshed):
    buyers = segments.create_segment(db.session, "Buyers", everyone(cond("frequency", "ge", 1)))
    db.session.commit()
    run_refresh(as_of=AS_OF)
    run_refresh(as_of=AS_OF)
    later = segments.create_segment(db.session, "Later", everyone())
    db.session.commit()
    html = owner_client.get("/segments/").get_data(as_text=True)
    row = text(html.split(f'id="segment-{buyers.id}"', 1)[1].split("</tr>", 1)[0])
    # 2 of 4 customers (the erased one counts in the shop's total), both consented.
    assert "2 50.0% 2 0 0" in row
    assert "1 warning" in row and "Only 2 members" in html
    later_row = text(html.split(f'id="segment-{later.id}"', 1)[1].split("</tr>", 1)[0])
    assert "Computed at the next refresh" in later_row
    assert "Member counts come with the first refresh" not in text(html)


def test_one_click_on_a_template_creates_that_segment(owner_client, refreshed):
    token = csrf_from(owner_client.get("/segments/"))
    response = owner_client.post(
        "/segments/templates", data={"template": "champions", "csrf_token": token}
    )
    champions = saved("Champions")
    assert response.status_code == 303
    assert response.location.endswith(f"/segments/{champions.id}")
    assert champions.template == "champions"
    template = next(t for t in segments.templates([]) if t.key == "champions")
    assert champions.rules == validate(template.rules)
    page = owner_client.get("/segments/").get_data(as_text=True)
    card = page.split('id="template-champions"', 1)[1].split("</article>", 1)[0]
    assert "Added" in card and "<form" not in card


def test_a_template_whose_name_is_taken_says_so_and_adds_nothing(owner_client, app):
    segments.create_segment(db.session, "champions", everyone())
    db.session.commit()
    token = csrf_from(owner_client.get("/segments/"))
    response = owner_client.post(
        "/segments/templates", data={"template": "champions", "csrf_token": token}
    )
    assert response.status_code == 409
    assert "There is already a segment called 'Champions'" in text(response.get_data(as_text=True))
    assert db.session.scalar(select(func.count()).select_from(Segment)) == 1
    response = owner_client.post("/segments/templates", data={"template": "x", "csrf_token": token})
    assert response.status_code == 400
    assert "Choose a template from the gallery." in response.get_data(as_text=True)


def test_templates_need_the_csrf_token(owner_client, app):
    response = owner_client.post("/segments/templates", data={"template": "champions"})
    assert response.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(Segment)) == 0


def test_add_all_templates_adds_each_once(owner_client, refreshed):
    token = csrf_from(owner_client.get("/segments/"))
    first = owner_client.post("/segments/templates/all", data={"csrf_token": token})
    assert first.status_code == 303
    count = db.session.scalar(select(func.count()).select_from(Segment))
    assert count == len(segments.shop_templates(db.session)) >= 20
    assert f"Added {count} segments" in owner_client.get("/segments/").get_data(as_text=True)
    owner_client.post("/segments/templates/all", data={"csrf_token": token})
    assert db.session.scalar(select(func.count()).select_from(Segment)) == count
    assert "Every template is already one of your segments." in text(
        owner_client.get("/segments/").get_data(as_text=True)
    )


# --- the builder -------------------------------------------------------------------------------


def test_a_new_segment_built_with_buttons_is_saved_and_opens_its_page(owner_client, refreshed):
    form = open_builder(owner_client)
    form["name"] = "Loyal or French"
    # No JavaScript: each button posts the whole form and the page comes back.
    for action in ("add-condition:", "add-group:", "add-condition:2"):
        page = post_builder(owner_client, "/segments/new", form, action)
        assert page.status_code == 200 and "<html" in page.get_data(as_text=True)
        form = form_of(page.get_data(as_text=True))
    assert form["rules[2].match"] == "all"
    form["rules[2].match"] = "any"
    form["rules[2.1].field"] = "country"  # the old field's inputs are dropped on refresh
    form = form_of(post_builder(owner_client, "/segments/new", form, "refresh").get_data(True))
    form["rules[2.1].text"] = "France"
    form["rules[2.2].num"] = "3"
    form["rules[1].num"] = "1"
    page = post_builder(owner_client, "/segments/new", form, "refresh").get_data(as_text=True)
    assert re.search(r'id="live-members">2<', page)  # Ada (3 orders) and Bob (France)
    response = post_builder(owner_client, "/segments/new", form_of(page), "save")
    segment = saved("Loyal or French")
    assert response.status_code == 303
    assert response.location.endswith(f"/segments/{segment.id}")
    assert segment.rules == everyone(
        cond("frequency", "ge", 1),
        everyone(cond("country", "in", ["france"]), cond("frequency", "ge", 3), match="any"),
    )
    shown = owner_client.get(response.location).get_data(as_text=True)
    assert "Saved Loyal or French." in shown
    assert "(Country is france or Number of orders at least 3 orders)" in text(shown)


def test_structural_edits_with_htmx_return_the_editor_and_the_count(owner_client, refreshed):
    form = open_builder(owner_client)
    response = post_builder(owner_client, "/segments/new", form, "add-condition:", HX_EDITOR)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<div id="rule-editor">')
    assert 'id="node-1-field"' in html and "autofocus" in html
    assert 'hx-swap-oob="innerHTML"' in html and re.search(r'id="live-members">2<', html)
    # A select that reshapes a condition returns the editor alone: the count has its trigger.
    form = form_of(f'<form id="segment-form">{html}</form>') | {"csrf_token": form["csrf_token"]}
    form["rules[1].field"] = "lifecycle"
    html = post_builder(owner_client, "/segments/new", form, "refresh", HX_EDITOR).get_data(True)
    assert 'name="rules[1].choice" value="churned"' in html and "live-members" not in html


def test_groups_nest_to_the_limit_and_say_so_beside_the_group(owner_client, refreshed):
    form = open_builder(owner_client)
    for path in ("", "1", "1.2"):  # each new group comes with a condition first
        html = post_builder(owner_client, "/segments/new", form, f"add-group:{path}").get_data(True)
        form = form_of(html)
    assert 'value="add-group:1.2"' in html and 'value="add-group:1.2.2"' not in html
    response = post_builder(owner_client, "/segments/new", form, "add-group:1.2.2")
    assert response.status_code == 200
    assert error_at(response.get_data(as_text=True), "1.2.2") == "Groups nest at most 4 deep."
    removed = post_builder(owner_client, "/segments/new", form, "remove:1").get_data(True)
    assert "rules[1].match" not in removed and "No conditions yet: everyone" in removed


@pytest.mark.parametrize("action", ["remove:", "remove:5", "add-group:9.9", "explode:1", "save:1"])
def test_edits_of_rules_that_are_not_there_are_a_400(owner_client, app, action):
    form = open_builder(owner_client)
    assert post_builder(owner_client, "/segments/new", form, action).status_code == 400


def test_a_post_without_the_rules_is_a_400(owner_client, app):
    token = csrf_from(owner_client.get("/segments/new"))
    response = owner_client.post(
        "/segments/new", data={"name": "X", "action": "save", "csrf_token": token}
    )
    assert response.status_code == 400
    assert "holds no rules" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Give the segment a name."),
        ("   ", "Give the segment a name."),
        ("x" * 81, "A name is at most 80 characters."),
        ("buyers", "There is already a segment called 'buyers'."),  # any letter case
    ],
)
def test_a_bad_name_is_shown_beside_the_field_and_nothing_is_saved(
    owner_client, refreshed, name, message
):
    segments.create_segment(db.session, "Buyers", everyone())
    db.session.commit()
    form = open_builder(owner_client)
    form["name"] = name
    response = post_builder(owner_client, "/segments/new", form, "save")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert re.search(r'<small class="field-error" id="name-error">([^<]*)<', html)
    assert message in html_lib.unescape(html)
    assert db.session.scalar(select(func.count()).select_from(Segment)) == 1


@pytest.mark.parametrize(
    ("set_inputs", "path", "message"),
    [
        ({"rules[1].num": "two"}, "1", "Number of orders: 'two' is not a whole number."),
        ({"rules[2.1].num": "1.234"}, "2.1", "at most 2 decimals"),
        ({"rules[2].match": "some"}, "2", 'A group matches "all" or "any" of its rules.'),
        ({"rules[2.1].field": "gone", "rules[2.1].shown": "gone"}, "2.1", "Unknown field 'gone'"),
        ({"rules[1].op": "like"}, "1", "Number of orders: the operator must be one of"),
    ],
)
def test_invalid_conditions_are_shown_beside_the_rule_at_fault(
    owner_client, refreshed, set_inputs, path, message
):
    form = open_builder(owner_client)
    for action in ("add-condition:", "add-group:"):
        form = form_of(post_builder(owner_client, "/segments/new", form, action).get_data(True))
    form["rules[2.1].field"] = form["rules[2.1].shown"] = "monetary"
    form["name"] = "Broken"
    for key, value in set_inputs.items():
        form[key] = value
    response = post_builder(owner_client, "/segments/new", form, "save")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in error_at(html, path)
    assert "to count members" in html  # no count for rules that do not compile
    assert db.session.scalar(select(func.count()).select_from(Segment)) == 0


def test_the_live_count_follows_the_rules_as_typed(owner_client, refreshed):
    form = open_builder(owner_client)
    form = form_of(
        post_builder(owner_client, "/segments/new", form, "add-condition:").get_data(True)
    )
    token = csrf_from(owner_client.get("/segments/new"))
    headers = {"HX-Request": "true", "X-CSRFToken": token}

    def live(**inputs):
        data = MultiDict(form)
        for key, value in inputs.items():
            data[key] = value
        return owner_client.post("/segments/live", data=data, headers=headers).get_data(True)

    everyone_who_ordered = live()
    assert re.search(r'id="live-members">2<', everyone_who_ordered)
    assert re.search(r'id="live-sendable">2<', everyone_who_ordered)
    assert f'href="/customers/{refreshed.ada.id}">Ada<' in everyone_who_ordered
    only_ada = live(**{"rules[1].num": "3"})
    assert re.search(r'id="live-members">1<', only_ada) and ">Bob<" not in only_ada
    # Every rule's message slot comes along, out of band: set where at fault, else cleared.
    assert '<small id="node-1-error" class="node-error" hx-swap-oob="true"></small>' in only_ada
    bad = live(**{"rules[1].num": "lots"})
    assert error_at(bad, "1") == "Number of orders: 'lots' is not a whole number."
    assert "Fix rule 1 to count members" in bad and "live-members" not in bad
    response = owner_client.post("/segments/live", data={"x": "1"}, headers=headers)
    assert response.status_code == 400


def test_the_live_count_before_the_first_refresh_says_when_counts_come(owner_client, app):
    form = open_builder(owner_client)
    token = csrf_from(owner_client.get("/segments/new"))
    html = owner_client.post(
        "/segments/live", data=form, headers={"HX-Request": "true", "X-CSRFToken": token}
    ).get_data(as_text=True)
    assert "Member counts come with the first refresh" in text(html)


def test_widgets_offer_what_the_shop_has(owner_client, refreshed):
    survey = add_survey()
    answer(refreshed.ada, survey, "craft", "knitting", at(6, 25))
    db.session.add(Category(name="Hand Dyed  Yarn", craft="knitting"))
    db.session.commit()
    run_refresh(as_of=AS_OF)
    segment = segments.create_segment(
        db.session,
        "Everything",
        everyone(
            cond("rfm_segment", "in", ["Champions", "Old name"]),
            cond("trait", "in", ["knitting", "tatting"], dimension="craft"),
            cond("answer", "answered", ["knitting"], survey_id=survey.id, question_id="craft"),
            cond("category", "has", None, category="hand dyed yarn", within_days=30),
            cond("country", "in", ["United Kingdom", "France"]),
            cond("objection", "in", ["shipping_cost"]),
            cond("behaviour", "is_not", "vip"),
            cond("device", "in", ["mobile"]),
            cond("consent", "is"),
            cond("aov", "between", [1000, 2550]),
        ),
    )
    db.session.commit()
    html = owner_client.get(f"/segments/{segment.id}/edit").get_data(as_text=True)

    def node(path: str) -> str:
        return html.split(f'id="{node_id(path)}"', 1)[1].split('class="node-error"', 1)[0]

    assert re.search(r'value="Champions" checked', node("1"))
    assert 'value="Hibernating" ' in node("1") and re.search(r'value="Old name" checked', node("1"))
    assert re.search(r'value="knitting" checked', node("2")) and 'value="tatting"' in node("2")
    assert 'value="mixed"' in node("2") and 'value="unknown"' in node("2")
    assert 'value="skill"' in node("2") and 'value="occasion"' in node("2")  # dimensions
    assert "What are you making?" in node("3") and re.search(r'value="knitting" checked', node("3"))
    assert '<option value="hand dyed yarn" selected>Hand Dyed  Yarn</option>' in node("4")
    assert 'value="30"' in node("4")
    assert 'value="united kingdom, france"' in node("5") and "<datalist" in node("5")
    assert '<option value="France">' in node("5")  # known countries suggested
    assert 'name="rules[6].other" id="node-6-other" value="shipping_cost"' in node("6")
    assert re.search(r'value="vip" selected', node("7"))
    assert re.search(r'value="mobile" checked', node("8")) and 'value="tablet"' in node("8")
    assert 'value="10.00"' in node("10") and 'value="25.50"' in node("10")
    # What the page posts back is the same tree: the template and the reader agree.
    response = post_builder(owner_client, f"/segments/{segment.id}/edit", form_of(html), "save")
    assert response.status_code == 303
    before = segment.rules
    assert saved("Everything").rules == before


def test_editing_a_segment_saves_it_and_says_members_follow_at_the_next_refresh(
    owner_client, refreshed
):
    segment = segments.create_segment(db.session, "Buyers", everyone(cond("frequency", "ge", 1)))
    db.session.commit()
    run_refresh(as_of=AS_OF)
    form = open_builder(owner_client, f"/segments/{segment.id}/edit")
    assert form["name"] == "Buyers" and form["rules[1].num"] == "1"
    form["rules[1].num"] = "3"
    form["description"] = "The most loyal"
    response = post_builder(owner_client, f"/segments/{segment.id}/edit", form, "save")
    assert response.status_code == 303
    assert saved("Buyers").rules == everyone(cond("frequency", "ge", 3))
    assert saved("Buyers").description == "The most loyal"
    page = text(owner_client.get(response.location).get_data(as_text=True))
    assert "The rules changed after this refresh began" in page
    assert "Members at the last refresh" in page and "Bob" in page  # still the old members


def test_an_amount_saved_in_the_builder_keeps_its_value_through_a_refresh(owner_client, refreshed):
    # Stored trees hold cents; the refresh, the why and the pages validate them again, which
    # must not scale the amount a second time.
    form = open_builder(owner_client)
    form = form_of(
        post_builder(owner_client, "/segments/new", form, "add-condition:").get_data(True)
    )
    form["rules[1].field"] = form["rules[1].shown"] = "monetary"
    form["rules[1].num"] = "80"
    form["name"] = "Big spenders"
    assert post_builder(owner_client, "/segments/new", form, "save").status_code == 303
    segment = saved("Big spenders")
    assert segment.rules == everyone(cond("monetary", "ge", 8000))
    run_refresh(as_of=AS_OF)
    page = owner_client.get(f"/segments/{segment.id}").get_data(as_text=True)
    assert "Customers who match: Total spend at least 80.00." in text(page)
    assert re.search(r'id="figure-members">1<', page)  # Bob spent 90.00, Ada 75.00
    why = owner_client.get(f"/segments/for-customer/{refreshed.bob.id}").get_data(as_text=True)
    assert "✓ Total spend at least 80.00 (met)" in text(why)
    editor = form_of(owner_client.get(f"/segments/{segment.id}/edit").get_data(as_text=True))
    assert editor["rules[1].num"] == "80.00"


# --- a segment's page --------------------------------------------------------------------------


def test_the_segment_page_shows_figures_warnings_the_size_chart_and_members(
    owner_client, refreshed
):
    buyers = segments.create_segment(db.session, "Buyers", everyone(cond("frequency", "ge", 1)))
    db.session.commit()
    first = run_refresh(as_of=AS_OF)
    second = run_refresh(as_of=AS_OF)
    html = owner_client.get(f"/segments/{buyers.id}").get_data(as_text=True)
    page = text(html)
    assert "Customers who match: Number of orders at least 1 orders." in page
    assert "As of 2025-06-30" in page and "0 joined, 0 left" in page
    figures = {
        key: re.search(rf'id="figure-{key}">([^<]*)<', html).group(1)
        for key in ("members", "share", "revenue-share", "aov", "orders-per-customer",
                    "repeat-rate", "clv")
    }  # fmt: skip
    assert figures == {
        "members": "2",
        "share": "50.0%",
        "revenue-share": "94.3%",  # 16,500 of the shop's 17,500
        "aov": "41.25 USD",
        "orders-per-customer": "2.00",
        "repeat-rate": "50.0%",
        "clv": "82.50 USD",
    }
    assert "Only 2 members" in page
    assert '<svg viewBox="0 0 600 162" role="img"' in html
    assert html.count("<rect ") == 2
    assert f'href="/refresh/{first.id}">#{first.id}<' in html
    assert f'href="/refresh/{second.id}">#{second.id}<' in html
    members = html.split('<div id="members">', 1)[1]
    assert f'href="/customers/{refreshed.ada.id}">Ada<' in members and ">Bob<" in members
    assert f'hx-get="/segments/{buyers.id}/count" hx-trigger="load"' in html
    count = owner_client.get(f"/segments/{buyers.id}/count", headers={"HX-Request": "true"})
    assert re.search(r'id="live-members">2<', count.get_data(as_text=True))
    assert "<html" not in count.get_data(as_text=True)
    full = owner_client.get(f"/segments/{buyers.id}/count").get_data(as_text=True)
    assert "<html" in full and re.search(r'id="live-members">2<', full)


def test_members_are_paged_by_customer_id(owner_client, refreshed, monkeypatch):
    monkeypatch.setattr(segment_views, "MEMBERS_PAGE", 2)
    everybody = segments.create_segment(db.session, "Everybody", everyone())
    db.session.commit()
    run_refresh(as_of=AS_OF)
    first = owner_client.get(f"/segments/{everybody.id}").get_data(as_text=True)
    assert ">Ada<" in first and ">Bob<" in first and ">Cy<" not in first
    next_url = re.search(r'id="members-next" href="([^"#]+)', first).group(1)
    assert next_url == f"/segments/{everybody.id}?after={refreshed.bob.id}"
    second = owner_client.get(next_url, headers={"HX-Request": "true", "HX-Target": "members"})
    html = second.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="members">')
    assert ">Cy<" in html and ">Ada<" not in html and "members-next" not in html


@pytest.mark.parametrize("after", ["abc", "-1", "0", "1.5", str(2**40)])
def test_bad_paging_parameters_are_a_400(owner_client, refreshed, after):
    segment = segments.create_segment(db.session, "All", everyone())
    db.session.commit()
    response = owner_client.get(f"/segments/{segment.id}", query_string={"after": after})
    assert response.status_code == 400


@pytest.mark.parametrize(
    "url",
    ["/segments/999", "/segments/999/edit", "/segments/999/delete", "/segments/999/count",
     f"/segments/{2**40}", "/segments/for-customer/999"],
)  # fmt: skip
def test_unknown_segments_and_customers_are_a_404(owner_client, app, url):
    assert owner_client.get(url).status_code == 404


def test_a_segment_whose_rules_no_longer_compile_says_so(owner_client, refreshed):
    segment = segments.create_segment(db.session, "Old", everyone())
    db.session.commit()
    segment.rules = {"match": "all", "rules": [{"field": "gone", "op": "eq"}]}
    db.session.commit()
    page = text(owner_client.get(f"/segments/{segment.id}").get_data(as_text=True))
    assert "These rules no longer work" in page and "Unknown field 'gone'" in page
    editor = owner_client.get(f"/segments/{segment.id}/edit").get_data(as_text=True)
    assert "Unknown field 'gone'" in error_at(editor, "1")


def test_delete_asks_first_then_deletes_the_segment_and_its_results(owner_client, refreshed):
    segment = segments.create_segment(db.session, "All", everyone())
    db.session.commit()
    run_refresh(as_of=AS_OF)
    confirm = owner_client.get(f"/segments/{segment.id}/delete")
    assert "Delete All?" in confirm.get_data(as_text=True)
    assert owner_client.post(f"/segments/{segment.id}/delete").status_code == 400  # no CSRF
    response = owner_client.post(
        f"/segments/{segment.id}/delete", data={"csrf_token": csrf_from(confirm)}
    )
    assert response.status_code == 303 and response.location.endswith("/segments/")
    assert db.session.scalar(select(func.count()).select_from(Segment)) == 0
    assert db.session.scalar(select(func.count()).select_from(SegmentMember)) == 0
    assert db.session.scalar(select(func.count()).select_from(SegmentRunStat)) == 0
    assert "Deleted All." in owner_client.get("/segments/").get_data(as_text=True)


# --- the partials ------------------------------------------------------------------------------


def test_the_customer_partial_lists_their_segments_first_with_why(owner_client, refreshed):
    segments.create_segment(
        db.session,
        "A: loyal or French",
        everyone(
            cond("frequency", "ge", 2),
            everyone(
                cond("country", "in", ["france"]), cond("behaviour", "is", "vip"), match="any"
            ),
            match="any",
        ),
    )
    segments.create_segment(db.session, "B: knitters", everyone(cond("frequency", "ge", 3)))
    db.session.commit()
    run_refresh(as_of=AS_OF)
    url = f"/segments/for-customer/{refreshed.bob.id}"
    html = owner_client.get(url, headers=HX).get_data(as_text=True)
    assert "<html" not in html and 'href="/static/segments.css' in html
    assert html.lstrip().startswith('<section id="customer-segments"')
    page = owner_client.get(url).get_data(as_text=True)  # a plain link: the same, in a page
    assert "<html" in page and f'href="/customers/{refreshed.bob.id}">← Customer<' in page
    assert 'id="customer-segment-' in page
    assert html.index("A: loyal or French") < html.index("B: knitters")
    first = text(html.split('class="customer-segment"', 2)[1])
    assert first.lstrip("> ").startswith("In A: loyal or French")
    assert "✓ Any of these (met)" in first
    assert "✗ Number of orders at least 2 orders (not met)" in first
    assert "✓ Country is france (met)" in first
    depths = re.findall(r'style="--depth: (\d)"', html.split('class="customer-segment"', 2)[1])
    assert depths == ["0", "1", "1", "2", "2"]
    second = text(html.split('class="customer-segment"', 2)[2])
    assert "Not in B: knitters" in second
    ada = owner_client.get(f"/segments/for-customer/{refreshed.ada.id}").get_data(as_text=True)
    assert "In 2 of 2 segments" in text(ada)
    erased = text(owner_client.get(f"/segments/for-customer/{refreshed.di.id}").get_data(True))
    assert "An erased customer is in no segment." in erased and "B: knitters" not in erased
    newcomer = add_customer("Eve", email="eve@example.com")
    late = owner_client.get(f"/segments/for-customer/{newcomer.id}").get_data(as_text=True)
    assert "was not part of the last refresh" in text(late)


def test_the_customer_partial_before_the_first_refresh(owner_client, app):
    customer = add_customer("Eve", email="eve@example.com")
    html = owner_client.get(f"/segments/for-customer/{customer.id}").get_data(as_text=True)
    assert "Member counts come with the first refresh" in text(html)


def test_the_dashboard_summary_lists_segments_with_members_and_share(owner_client, refreshed):
    assert "No segments yet" in owner_client.get("/segments/summary").get_data(as_text=True)
    segments.create_segment(db.session, "Buyers", everyone(cond("frequency", "ge", 1)))
    db.session.commit()
    before = text(owner_client.get("/segments/summary").get_data(as_text=True))
    assert "Buyers – –" in before
    run_refresh(as_of=AS_OF)
    html = owner_client.get("/segments/summary", headers=HX).get_data(as_text=True)
    assert "<html" not in html
    assert html.lstrip().startswith('<section id="segment-summary"')
    assert "Buyers warning 2 50.0%" in text(html)
    assert "<html" in owner_client.get("/segments/summary").get_data(as_text=True)


def test_a_stored_condition_with_a_bad_value_opens_for_mending(owner_client, refreshed):
    segment = segments.create_segment(db.session, "Scores", everyone())
    db.session.commit()
    segment.rules = everyone(cond("r", "between", [5, 1]), cond("lifecycle", "in", "zombie"))
    db.session.commit()
    response = owner_client.get(f"/segments/{segment.id}/edit")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "must not exceed the second" in error_at(html, "1")
    assert 'name="rules[1].low"' in html and 'name="rules[2].choice" value="churned"' in html
