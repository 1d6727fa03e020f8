"""The segment builder's form: a rule tree written into form fields and read back.

Each node of the tree is named by its path, as in webapp.segmentation.rules ("" the root
group, "1.2" the second rule of the first rule's group), and its inputs by
``rules[<path>].<key>``, so the whole tree posts back as one form and a RulesError's path
names the node whose inputs to mark. Until `validate` cleans it the tree is a *draft*: the
same shape with values as the owner typed them ("12.5", "France, Spain"), so a half-typed
condition is shown back as typed and never lost.

Which inputs a condition has depends on its field (and operator, survey, question or trait
dimension). Each condition posts hidden ``shown_*`` inputs saying what its inputs were drawn
for; when the owner picks another field, survey, question or dimension, the values drawn for
the old one are dropped instead of being misread for the new one.

`BuilderChoices` reads the values the widgets offer (RFM names, trait values, published
surveys' questions, categories, countries, campaigns), each only when a widget asks for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property

from flask_wtf import FlaskForm
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from surveys.definition import CHOICE_TYPES, OTHER_OPTION_ID
from surveys.traits import TraitError, parse_trait
from webapp.models import Campaign, Category, Customer, RefreshRun, Segment, Survey
from webapp.segmentation import rfm
from webapp.segmentation.profiles import TIER_SKILL
from webapp.segmentation.rules import (
    BEHAVIOURS,
    FIELDS,
    MAX_DEPTH,
    Names,
    RulesError,
    empty_tree,
    is_group,
    validate,
)
from webapp.segmentation.traits import MIXED, UNKNOWN
from webapp.segmentation.why import CORE_DIMENSIONS

NAME_MAX = 80
DESCRIPTION_MAX = 1000
# Far above what validate() accepts (50 conditions, 4 levels): a form beyond it was not
# posted by the builder, and is refused before any work is done on it.
MAX_NODES = 400
MAX_PATH_PARTS = 8

# The field menu, in the words of a shop owner; every field of rules.FIELDS is in one group.
FIELD_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Orders and spend", ("frequency", "monetary", "aov", "recency_days")),
    ("RFM and lifecycle", ("rfm_segment", "r", "f", "m", "lifecycle")),
    ("Behaviours and preferences", ("behaviour", "trait", "objection")),
    ("Purchases", ("category",)),
    ("Surveys", ("answer", "device")),
    ("Location", ("country", "city")),
    ("Email", ("consent",)),
    ("Email engagement", ("engagement",)),
)

NEW_CONDITION = {"field": "frequency", "op": "ge", "value": "1"}

_NAME = re.compile(r"rules\[((?:\d{1,4}(?:\.\d{1,4})*)?)\]\.([a-z_]{1,20})")


class FormError(ValueError):
    """A form the builder page cannot have posted: a 400, not a message by a rule."""


class EditError(ValueError):
    """A structural edit that cannot be made; `path` names the node to show it beside."""

    def __init__(self, message: str, path: str = ""):
        super().__init__(message)
        self.path = path


# --- names and ids ---------------------------------------------------------------------------


def input_name(path: str, key: str) -> str:
    return f"rules[{path}].{key}"


def node_id(path: str) -> str:
    """The HTML id of a node: "node-1-2" (dots would need escaping in CSS selectors)."""
    return "node-" + (path.replace(".", "-") or "root")


def child_path(path: str, index: int) -> str:
    return f"{path}.{index}" if path else str(index)


def depth_of(path: str) -> int:
    """A group's nesting level as rules.validate counts it: the root is 1."""
    return 1 + (path.count(".") + 1 if path else 0)


def widget(field: str) -> str:
    """Which inputs a condition on `field` shows and posts."""
    kind = FIELDS[field].kind
    if kind in ("number", "money"):
        return "number"
    if field in ("country", "city"):
        return "text"  # free text, comma-separated, with known values suggested
    if field == "consent":
        return "none"  # the operator says it all
    if kind == "flag":
        return "select"
    if kind in ("trait", "answer", "category", "engagement"):
        return kind
    return "choices"


def allows_other(field: str) -> bool:
    """Lists whose known values may not be all there are: typed values are allowed too."""
    return field in ("objection", "trait")


# --- form -> draft ---------------------------------------------------------------------------


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def read_tree(form: MultiDict) -> dict:
    """The draft tree posted by the builder form; FormError for a form it cannot have posted.

    Children are taken in path order and numbered afresh, so the draft's paths are the ones
    the page is rendered with next; a node whose parent is missing or not a group is dropped.
    """
    posted: dict[tuple[int, ...], dict[str, list[str]]] = {}
    for name in form:
        match = _NAME.fullmatch(name)
        if match is None:
            continue
        raw_path, key = match.groups()
        path = tuple(int(part) for part in raw_path.split(".")) if raw_path else ()
        if len(path) > MAX_PATH_PARTS:
            raise FormError("The rules nest deeper than any segment can.")
        posted.setdefault(path, {})[key] = form.getlist(name)
        if len(posted) > MAX_NODES:
            raise FormError("The form holds more rules than any segment can.")
    root = posted.get(())
    if root is None or "match" not in root:
        raise FormError("The form holds no rules (rules[].match is missing).")
    groups: dict[tuple[int, ...], dict] = {(): _group(root)}
    for path in sorted(posted):
        if not path:
            continue
        parent = groups.get(path[:-1])
        if parent is None:
            continue
        values = posted[path]
        if "match" in values:
            node = _group(values)
            groups[path] = node
        elif "field" in values:
            node = _condition(values)
        else:
            continue
        parent["rules"].append(node)
    return groups[()]


def _first(values: dict[str, list[str]], key: str) -> str:
    found = values.get(key) or [""]
    return found[0].strip()


def _group(values: dict[str, list[str]]) -> dict:
    return {"match": _first(values, "match"), "rules": []}


def _condition(values: dict[str, list[str]]) -> dict:
    def one(key: str) -> str:
        return _first(values, key)

    field, op = one("field"), one("op")
    node: dict = {"field": field, "op": op}
    spec = FIELDS.get(field)
    if spec is None:
        return node  # validate() names the unknown field beside the node
    fresh = one("shown") != field  # another field was picked: its old values mean nothing
    if fresh and op not in spec.ops:
        node["op"] = next(iter(spec.ops))
    shape = widget(field)
    checked = [v.strip() for v in values.get("choice", []) if v.strip()]
    if shape == "number":
        if fresh:
            node["value"] = ["", ""] if node["op"] == "between" else ""
        elif node["op"] == "between":
            # Switching from one number to between keeps it as the lower bound, and back.
            node["value"] = [one("low") or one("num"), one("high")]
        else:
            node["value"] = one("num") or one("low")
    elif shape == "select":
        node["value"] = spec.choices[0] if fresh or not checked else checked[0]
    elif shape == "none":
        node["value"] = spec.choices[0]
    elif shape == "text":
        node["value"] = [] if fresh else _split(one("text"))
    elif shape == "choices":
        node["value"] = [] if fresh else checked + _split(one("other"))
    elif shape == "trait":
        node["dimension"] = "" if fresh else one("dimension").lower()
        same = not fresh and one("shown_dimension") == node["dimension"]
        node["value"] = checked + _split(one("other")) if same else []
    elif shape == "answer":
        survey = "" if fresh else one("survey_id")
        question = one("question_id") if survey and one("shown_survey") == survey else ""
        same = question and one("shown_question") == question
        node |= {"survey_id": survey, "question_id": question, "value": checked if same else []}
        node["within_days"] = "" if fresh else one("within_days")
    elif shape == "category":
        node["category"] = "" if fresh else one("category")
        node["min_orders"] = "1" if fresh else one("min_orders")
        node["within_days"] = "" if fresh else one("within_days")
    elif shape == "engagement":
        node["campaign_id"] = "" if fresh else one("campaign_id")
        node["within_days"] = "" if fresh else one("within_days")
    return node


# --- tree -> draft ---------------------------------------------------------------------------


def _amount(cents: int) -> str:
    return f"{Decimal(cents) / 100:.2f}"


def draft_from_rules(tree: dict) -> dict:
    """A valid (cleaned) tree as the builder shows it: amounts in units, numbers as text."""
    if is_group(tree):
        return {"match": tree["match"], "rules": [draft_from_rules(c) for c in tree["rules"]]}
    node = dict(tree)
    kind = FIELDS[node["field"]].kind
    if kind in ("number", "money"):
        show = _amount if kind == "money" else str
        value = node["value"]
        node["value"] = [show(v) for v in value] if isinstance(value, list) else show(value)
    for key in ("survey_id", "campaign_id", "min_orders", "within_days"):
        if key in node:
            node[key] = str(node[key])
    return node


def draft_from_stored(rules: object) -> dict:
    """A stored tree as the builder shows it, also when it no longer validates (a field was
    removed since): each condition that still validates is shown as usual, the others by
    their field and operator only, so the page opens and validate() says what to mend."""
    try:
        return draft_from_rules(validate(rules))
    except RulesError:
        pass
    if not isinstance(rules, dict) or not is_group(rules):
        return empty_tree()
    return _stored_group(rules)


def _stored_group(node: dict) -> dict:
    children = node.get("rules") if isinstance(node.get("rules"), list) else []
    rules = []
    for child in children:
        if not isinstance(child, dict):
            continue
        if is_group(child):
            rules.append(_stored_group(child))
            continue
        try:
            cleaned = validate({"match": "all", "rules": [child]})["rules"][0]
            rules.append(draft_from_rules(cleaned))
        except RulesError:
            rules.append(_stored_condition(child))
    return {"match": str(node.get("match", "")), "rules": rules}


_CONDITION_KEYS = ("value", "dimension", "survey_id", "question_id", "category")
_CONDITION_KEYS += ("campaign_id", "min_orders", "within_days")


def _stored_condition(node: dict) -> dict:
    """A condition validate() refuses, with whatever plain values it holds, as text."""
    field = FIELDS.get(node.get("field")) if isinstance(node.get("field"), str) else None
    money = field is not None and field.kind == "money"

    def shown(value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, str | int):
            return None
        return _amount(value) if money and isinstance(value, int) else str(value)

    draft = {"field": str(node.get("field", "")), "op": str(node.get("op", ""))}
    for key in _CONDITION_KEYS:
        value = node.get(key)
        if isinstance(value, list):
            items = [shown(item) for item in value[:50]]
            if None not in items:
                draft[key] = items
        elif shown(value) is not None:
            draft[key] = shown(value)
    return draft


def split_known(
    values: list[str], known: list[tuple[str, str]], other: bool
) -> tuple[list[tuple[str, str]], str]:
    """The (value, label) boxes to show and the text of the "other values" input.

    A chosen value the shop no longer offers (a renamed RFM segment, a removed option) is
    kept: typed into "other" where typing is allowed, else as a box of its own, ticked.
    """
    offered = {value for value, _ in known}
    extra = [value for value in values if value not in offered]
    if other:
        return known, ", ".join(extra)
    return known + [(value, value) for value in extra], ""


# --- structural edits ------------------------------------------------------------------------


def find(draft: dict, path: str) -> dict | None:
    node = draft
    for part in path.split(".") if path else []:
        if not is_group(node) or not part.isdigit():
            return None
        index = int(part) - 1
        if not 0 <= index < len(node["rules"]):
            return None
        node = node["rules"][index]
    return node


def parse_action(raw: str) -> tuple[str, str]:
    """("save" | "refresh" | "add-condition" | "add-group" | "remove", path)."""
    verb, _, path = (raw or "refresh").partition(":")
    if verb in ("save", "refresh") and not path:
        return verb, ""
    if verb in ("add-condition", "add-group", "remove") and re.fullmatch(r"(\d+(\.\d+)*)?", path):
        return verb, path
    raise FormError(f"Unknown builder action {raw[:40]!r}.")


def apply_edit(draft: dict, verb: str, path: str) -> str:
    """Make one structural edit in place; the path of the node to focus next.

    FormError when the path is not in the tree (the page was stale or forged), EditError
    when the edit breaks a limit the owner should read beside the node.
    """
    node = find(draft, path)
    if node is None:
        raise FormError(f"There is no rule {path} to change.")
    if verb == "remove":
        if not path:
            raise FormError("The outermost group cannot be removed.")
        parent_path, _, index = path.rpartition(".")
        find(draft, parent_path)["rules"].pop(int(index) - 1)
        return parent_path
    if not is_group(node):
        raise FormError(f"Rule {path} is a condition: conditions go into groups.")
    if verb == "add-group":
        if depth_of(path) >= MAX_DEPTH:
            raise EditError(f"Groups nest at most {MAX_DEPTH} deep.", path)
        node["rules"].append({"match": "all", "rules": [dict(NEW_CONDITION)]})
    else:
        node["rules"].append(dict(NEW_CONDITION))
    return child_path(path, len(node["rules"]))


# --- name and description ---------------------------------------------------------------------


class SegmentForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[
            DataRequired("Give the segment a name."),
            Length(max=NAME_MAX, message=f"A name is at most {NAME_MAX} characters."),
        ],
        filters=[lambda v: " ".join(v.split()) if isinstance(v, str) else v],
    )
    description = TextAreaField(
        "Description (optional)",
        validators=[Length(max=DESCRIPTION_MAX, message=f"At most {DESCRIPTION_MAX} characters.")],
        filters=[lambda v: v.strip() if isinstance(v, str) else v],
    )

    def __init__(self, *args, session: Session, segment_id: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._session = session
        self._segment_id = segment_id

    def validate_name(self, field: StringField) -> None:
        if name_taken(self._session, field.data or "", self._segment_id):
            raise ValidationError(f"There is already a segment called {field.data!r}.")


def name_taken(session: Session, name: str, except_id: int | None = None) -> bool:
    """Names are unique regardless of letter case: two "Knitters" would only confuse."""
    query = select(Segment.id).where(func.lower(Segment.name) == name.strip().lower())
    if except_id is not None:
        query = query.where(Segment.id != except_id)
    return session.scalar(query.limit(1)) is not None


# --- what the widgets offer --------------------------------------------------------------------


@dataclass(frozen=True)
class QuestionChoice:
    id: str
    prompt: str
    options: tuple[tuple[str, str], ...]  # (option id, label)


@dataclass(frozen=True)
class SurveyChoice:
    id: int
    title: str
    questions: tuple[QuestionChoice, ...]

    def question(self, question_id: str) -> QuestionChoice | None:
        return next((q for q in self.questions if q.id == question_id), None)


# Countries and cities are suggested from this many most recent customers: enough to hold a
# shop's usual places, and a bounded read at a million customers.
PLACES_FROM = 20_000
PLACES_MAX = 300


class BuilderChoices:
    """What the condition widgets offer, read on first use (the live count needs none)."""

    def __init__(self, session: Session, run: RefreshRun | None):
        self.session = session
        self.run = run

    @cached_property
    def rfm_segments(self) -> list[str]:
        return list(dict.fromkeys(row.name for row in rfm.segment_map(self.session)))

    @cached_property
    def surveys(self) -> list[SurveyChoice]:
        """Published surveys and their choice questions, as shoppers see them."""
        found = []
        for survey in self.session.scalars(
            select(Survey).where(Survey.published.is_not(None)).order_by(Survey.id)
        ):
            questions = []
            for q in (survey.published or {}).get("questions") or []:
                if q.get("type") not in CHOICE_TYPES:
                    continue
                options = [(o["id"], o.get("label") or o["id"]) for o in q.get("options") or []]
                if q.get("allow_other"):
                    options.append((OTHER_OPTION_ID, q.get("other_label") or "Other"))
                questions.append(
                    QuestionChoice(q["id"], q.get("prompt") or q["id"], tuple(options))
                )
            found.append(SurveyChoice(survey.id, survey.title, tuple(questions)))
        return found

    def survey(self, survey_id: str) -> SurveyChoice | None:
        return next((s for s in self.surveys if str(s.id) == survey_id), None)

    @cached_property
    def survey_names(self) -> dict[int, str]:
        return {s.id: s.title for s in self.surveys}

    @cached_property
    def campaigns(self) -> list[tuple[int, str]]:
        """(id, name) of every campaign, by name."""
        rows = self.session.execute(
            select(Campaign.id, Campaign.name).order_by(Campaign.name, Campaign.id)
        )
        return [(campaign_id, name) for campaign_id, name in rows]

    @property
    def names(self) -> Names:
        """What conditions name by id, for reading rules in words."""
        return Names(self.survey_names, dict(self.campaigns))

    @cached_property
    def traits(self) -> dict[str, list[str]]:
        """Dimension -> values: those the current run found, those published surveys'
        options declare, the shop's crafts and the skills of product tiers; each dimension
        also offers `mixed` and `unknown`."""
        from webapp.catalog import crafts_in_use

        found: dict[str, set[str]] = {d: set() for d in CORE_DIMENSIONS}
        counted = ((self.run.counts or {}).get("traits") or {}) if self.run else {}
        for dimension, values in counted.items():
            found.setdefault(dimension, set()).update(values)
        for survey in self.session.scalars(
            select(Survey.published).where(Survey.published.is_not(None))
        ):
            for question in (survey or {}).get("questions") or []:
                for option in question.get("options") or []:
                    for text in option.get("traits") or []:
                        try:
                            trait = parse_trait(text)
                        except TraitError:
                            continue
                        found.setdefault(trait.dimension, set()).add(trait.value)
        found["craft"].update(crafts_in_use(self.session))
        found["skill"].update(TIER_SKILL.values())
        return {
            dimension: sorted(values - {MIXED, UNKNOWN}) + [MIXED, UNKNOWN]
            for dimension, values in sorted(found.items())
        }

    def trait_choices(self, dimension: str) -> list[tuple[str, str]]:
        values = self.traits.get(dimension) or [MIXED, UNKNOWN]
        return [(value, value.replace("_", " ")) for value in values]

    @cached_property
    def objections(self) -> list[str]:
        return [v for v in self.traits.get("objection", []) if v not in (MIXED, UNKNOWN)]

    @cached_property
    def categories(self) -> list[tuple[str, str]]:
        """(value as a condition stores it, name as the catalogue spells it)."""
        names = self.session.scalars(select(Category.name).order_by(Category.name))
        return [(" ".join(name.split()).lower(), name) for name in names]

    def _places(self, column) -> list[str]:
        recent = (
            select(column.label("place"))
            .where(column.is_not(None), column != "")
            .order_by(Customer.id.desc())
            .limit(PLACES_FROM)
            .subquery()
        )
        rows = self.session.scalars(
            select(recent.c.place)
            .group_by(recent.c.place)
            .order_by(func.count().desc(), recent.c.place)
            .limit(PLACES_MAX)
        )
        return sorted(set(rows), key=str.lower)

    @cached_property
    def countries(self) -> list[str]:
        return self._places(Customer.country)

    @cached_property
    def cities(self) -> list[str]:
        return self._places(Customer.city)

    def list_choices(self, field: str) -> list[tuple[str, str]]:
        """(value, label) for a "choices" or "select" widget."""
        if field == "rfm_segment":
            return [(name, name) for name in self.rfm_segments]
        if field == "objection":
            return [(v, v.replace("_", " ")) for v in self.objections]
        if field == "behaviour":
            return list(BEHAVIOURS.items())
        return [(v, v) for v in FIELDS[field].choices]

    def places(self, field: str) -> list[str]:
        return self.countries if field == "country" else self.cities
