"""A segment's rule tree: what may be in it, how it is checked, and how it reads in words.

A tree is JSON. A group is ``{"match": "all" | "any", "rules": [node, ...]}`` and may nest;
a condition is ``{"field": ..., "op": ..., "value": ...}`` plus the keys its field needs
(``dimension`` for a trait, ``survey_id``/``question_id`` for an answer, ``category`` for
an order fact, ``campaign_id`` for email engagement, ``within_days``, ``min_orders``).
`validate` returns a cleaned tree or raises RulesError naming the node at fault by its path
("1.2" = second rule of the first rule's group, counted from 1), so the builder can show the
message beside it.

The compiler (webapp.segmentation.compiler) turns a valid tree into one SQL statement;
nothing else evaluates a tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

MAX_DEPTH = 4
MAX_CONDITIONS = 50
MAX_VALUES = 50
MAX_DAYS = 36_500

NUMBER_OPS = {
    "lt": "less than",
    "le": "at most",
    "eq": "exactly",
    "ge": "at least",
    "gt": "more than",
    "ne": "not",
    "between": "between",
}
LIST_OPS = {"in": "is", "not_in": "is not"}
FLAG_OPS = {"is": "is", "is_not": "is not"}
HAS_OPS = {"has": "has", "has_not": "has not"}
# Opened means a person opened the mail (not a machine open) or clicked in it: a click
# implies an open that a mail client may not have reported. not_opened is the complement.
ENGAGEMENT_OPS = {"opened": "opened", "clicked": "clicked", "not_opened": "did not open"}
MAX_ID = 2**31 - 1  # an INTEGER column


@dataclass(frozen=True)
class Field:
    label: str
    kind: str  # number|money|list|flag|trait|answer|category|engagement
    ops: dict[str, str]
    choices: tuple[str, ...] = ()  # fixed values for list/flag fields; empty: free text
    unit: str = ""


LIFECYCLES = ("prospect", "new", "active", "lapsed", "churned")
BEHAVIOURS = {
    "frequent": "a frequent buyer",
    "seasonal": "a seasonal shopper",
    "vip": "a VIP (top 20% of revenue)",
    "cart_abandoner": "a cart abandoner",
    "class_taker": "a class taker",
    "engaged": "engaged with email (opened or clicked in 90 days)",
}
DEVICES = ("mobile", "tablet", "desktop")

FIELDS: dict[str, Field] = {
    "recency_days": Field("Days since last order", "number", NUMBER_OPS, unit="days"),
    "frequency": Field("Number of orders", "number", NUMBER_OPS, unit="orders"),
    "monetary": Field("Total spend", "money", NUMBER_OPS),
    "aov": Field("Average order value", "money", NUMBER_OPS),
    "r": Field("R score (1-5)", "number", NUMBER_OPS),
    "f": Field("F score (1-5)", "number", NUMBER_OPS),
    "m": Field("M score (1-5)", "number", NUMBER_OPS),
    "rfm_segment": Field("RFM segment", "list", LIST_OPS),
    "lifecycle": Field("Lifecycle", "list", LIST_OPS, LIFECYCLES),
    "behaviour": Field("Behaviour", "flag", FLAG_OPS, tuple(BEHAVIOURS)),
    "objection": Field("Objection given on exit", "list", LIST_OPS),
    "trait": Field("Preference", "trait", LIST_OPS),
    "answer": Field("Survey answer", "answer", {"answered": "answered", "not_answered": "not"}),
    "category": Field("Bought from category", "category", HAS_OPS),
    "country": Field("Country", "list", LIST_OPS),
    "city": Field("City", "list", LIST_OPS),
    "device": Field("Answers surveys on", "list", LIST_OPS, DEVICES),
    "consent": Field("Email consent", "flag", FLAG_OPS, ("sendable",)),
    "engagement": Field("Campaign email", "engagement", ENGAGEMENT_OPS),
}


class RulesError(ValueError):
    """A tree that cannot be compiled; `path` names the node ("" = the whole tree)."""

    def __init__(self, message: str, path: str = ""):
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        where = f"Rule {self.path}: " if self.path else ""
        return where + self.args[0]


def empty_tree() -> dict:
    return {"match": "all", "rules": []}


def is_group(node: dict) -> bool:
    return "match" in node


def validate(tree: object) -> dict:
    """The tree cleaned (values converted, unknown keys dropped), or RulesError."""
    counter = [0]
    return _group(tree, "", 1, counter)


def _group(node: object, path: str, depth: int, counter: list[int]) -> dict:
    if not isinstance(node, dict) or node.get("match") not in ("all", "any"):
        raise RulesError('A group matches "all" or "any" of its rules.', path)
    if depth > MAX_DEPTH:
        raise RulesError(f"Groups nest at most {MAX_DEPTH} deep.", path)
    rules = node.get("rules", [])
    if not isinstance(rules, list):
        raise RulesError("A group's rules are a list.", path)
    cleaned = []
    for index, child in enumerate(rules, start=1):
        child_path = f"{path}.{index}" if path else str(index)
        if isinstance(child, dict) and is_group(child):
            cleaned.append(_group(child, child_path, depth + 1, counter))
        else:
            counter[0] += 1
            if counter[0] > MAX_CONDITIONS:
                raise RulesError(f"A segment has at most {MAX_CONDITIONS} conditions.", path)
            cleaned.append(_condition(child, child_path))
    return {"match": node["match"], "rules": cleaned}


def _condition(node: object, path: str) -> dict:
    if not isinstance(node, dict):
        raise RulesError("A rule is a group or a condition.", path)
    name = node.get("field")
    field = FIELDS.get(name) if isinstance(name, str) else None
    if field is None:
        raise RulesError(f"Unknown field {name!r}.", path)
    op = node.get("op")
    if op not in field.ops:
        allowed = ", ".join(field.ops)
        raise RulesError(f"{field.label}: the operator must be one of {allowed}.", path)
    try:
        cleaned = {"field": name, "op": op, **_CLEANERS[field.kind](field, node)}
    except RulesError as exc:
        raise RulesError(f"{field.label}: {exc.args[0]}", path) from None
    return cleaned


def _number(value: object, money: bool) -> int:
    """A whole number, or for money a decimal amount in cents ("12.50" -> 1250).

    An int given for money is already cents, as a cleaned (stored) tree holds it, so that
    validating a stored tree again changes nothing; amounts the owner types arrive as text.
    """
    if isinstance(value, bool):
        raise RulesError("a number is needed.")
    if money and isinstance(value, int):
        cents = value
    elif money:
        try:
            amount = Decimal(str(value).strip().replace(",", ""))
        except InvalidOperation:
            raise RulesError(f"{value!r} is not an amount.") from None
        if not amount.is_finite() or amount.as_tuple().exponent < -2:
            raise RulesError(f"{value!r} is not an amount with at most 2 decimals.")
        cents = int(amount * 100)
    else:
        try:
            cents = int(str(value).strip())
        except ValueError:
            raise RulesError(f"{value!r} is not a whole number.") from None
    if not -(10**15) < cents < 10**15:
        raise RulesError(f"{value!r} is out of range.")
    return cents


def _clean_number(field: Field, node: dict) -> dict:
    money = field.kind == "money"
    value = node.get("value")
    if node["op"] == "between":
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise RulesError("between needs two numbers.")
        low, high = (_number(v, money) for v in value)
        if low > high:
            raise RulesError("the first number of between must not exceed the second.")
        return {"value": [low, high]}
    return {"value": _number(value, money)}


def _strings(value: object, choices: tuple[str, ...] = (), lower: bool = False) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise RulesError("choose at least one value.")
    if len(value) > MAX_VALUES:
        raise RulesError(f"at most {MAX_VALUES} values.")
    cleaned: list[str] = []
    for item in value:
        if not isinstance(item, str | int) or isinstance(item, bool) or not str(item).strip():
            raise RulesError("values are non-empty text.")
        text = str(item).strip()[:120]
        text = text.lower() if lower else text
        if choices and text not in choices:
            raise RulesError(f"{text!r} is not one of {', '.join(choices)}.")
        if text not in cleaned:
            cleaned.append(text)
    return cleaned


def _clean_list(field: Field, node: dict) -> dict:
    lower = node["field"] in ("country", "city", "objection")
    return {"value": _strings(node.get("value"), field.choices, lower)}


def _clean_flag(field: Field, node: dict) -> dict:
    value = node.get("value") or (field.choices[0] if len(field.choices) == 1 else None)
    if value not in field.choices:
        raise RulesError(f"choose one of {', '.join(field.choices)}.")
    return {"value": value}


def _days(node: dict) -> dict:
    days = node.get("within_days")
    if days in (None, ""):
        return {}
    number = _number(days, False)
    if not 0 < number <= MAX_DAYS:
        raise RulesError(f"within_days is between 1 and {MAX_DAYS}.")
    return {"within_days": number}


def _key(node: dict, name: str, what: str) -> str:
    value = node.get(name)
    if not isinstance(value, str) or not value.strip():
        raise RulesError(f"choose {what}.")
    return value.strip()[:80]


def _clean_trait(field: Field, node: dict) -> dict:
    dimension = _key(node, "dimension", "a dimension (craft, skill, ...)").lower()
    return {"dimension": dimension, "value": _strings(node.get("value"), lower=True)}


def _clean_answer(field: Field, node: dict) -> dict:
    survey_id = node.get("survey_id")
    if isinstance(survey_id, bool) or not str(survey_id or "").strip().isdigit():
        raise RulesError("choose a survey.")
    return {
        "survey_id": int(str(survey_id).strip()),
        "question_id": _key(node, "question_id", "a question"),
        "value": _strings(node.get("value")),
        **_days(node),
    }


def _clean_category(field: Field, node: dict) -> dict:
    minimum = node.get("min_orders", 1)
    minimum = 1 if minimum in (None, "") else _number(minimum, False)
    if not 1 <= minimum <= 100_000:
        raise RulesError("min_orders is at least 1.")
    return {
        "category": " ".join(_key(node, "category", "a category").split()).lower(),
        "min_orders": minimum,
        **_days(node),
    }


def _clean_engagement(field: Field, node: dict) -> dict:
    """No campaign_id (or an empty one): any campaign."""
    campaign_id = node.get("campaign_id")
    if campaign_id in (None, ""):
        return _days(node)
    text = "" if isinstance(campaign_id, bool) else str(campaign_id).strip()
    if not (text.isascii() and text.isdigit() and 0 < int(text) <= MAX_ID):
        raise RulesError("choose a campaign, or any campaign.")
    return {"campaign_id": int(text), **_days(node)}


_CLEANERS = {
    "number": _clean_number,
    "money": _clean_number,
    "list": _clean_list,
    "flag": _clean_flag,
    "trait": _clean_trait,
    "answer": _clean_answer,
    "category": _clean_category,
    "engagement": _clean_engagement,
}


# --- in words --------------------------------------------------------------------------------


def _money(cents: int) -> str:
    return f"{Decimal(cents) / 100:,.2f}"


@dataclass(frozen=True)
class Names:
    """The names of what conditions refer to by id, for reading them in words."""

    surveys: Mapping[int, str]
    campaigns: Mapping[int, str]


def describe(node: dict, names: Names | None = None) -> str:
    """One valid condition or group in words, for the builder, the "why" and the list."""
    names = names or Names({}, {})
    if is_group(node):
        joiner = " and " if node["match"] == "all" else " or "
        parts = [describe(child, names) for child in node["rules"]]
        if not parts:
            return "everyone" if node["match"] == "all" else "no one"
        return "(" + joiner.join(parts) + ")" if len(parts) > 1 else parts[0]
    field = FIELDS[node["field"]]
    op, value = node["op"], node.get("value")
    kind = field.kind
    if kind in ("number", "money"):
        show = _money if kind == "money" else (lambda v: f"{v:,}")
        if op == "between":
            amount = f"between {show(value[0])} and {show(value[1])}"
        else:
            amount = f"{NUMBER_OPS[op]} {show(value)}"
        return f"{field.label} {amount}{' ' + field.unit if field.unit else ''}"
    if kind == "flag":
        if node["field"] == "consent":
            verb = "can" if op == "is" else "cannot"
            return f"{verb} be emailed (consented, not unsubscribed)"
        return f"{FLAG_OPS[op]} {BEHAVIOURS[value]}"
    if kind == "trait":
        return f"{node['dimension'].capitalize()} {LIST_OPS[op]} {' or '.join(value)}"
    if kind == "answer":
        survey = names.surveys.get(node["survey_id"], f"survey {node['survey_id']}")
        verb = "answered" if op == "answered" else "did not answer"
        within = f" within {node['within_days']} days" if "within_days" in node else ""
        return f"{verb} {' or '.join(value)} to {node['question_id']} in {survey}{within}"
    if kind == "category":
        verb = "bought" if op == "has" else "did not buy"
        times = f" at least {node['min_orders']} times" if node["min_orders"] > 1 else ""
        within = f", last within {node['within_days']} days" if "within_days" in node else ""
        return f"{verb} from {node['category']}{times}{within}"
    if kind == "engagement":
        return _describe_engagement(node, names)
    return f"{field.label} {LIST_OPS[op]} {' or '.join(value)}"


def _describe_engagement(node: dict, names: Names) -> str:
    """ "opened campaign “Spring yarn” within 30 days", "clicked any campaign"."""
    if "campaign_id" in node:
        name = names.campaigns.get(node["campaign_id"])
        what = f"campaign “{name}”" if name else f"campaign {node['campaign_id']}"
    else:
        what = "any campaign"
    within = f" within {node['within_days']} days" if "within_days" in node else ""
    return f"{ENGAGEMENT_OPS[node['op']]} {what}{within}"


def walk(tree: dict, path: str = "") -> list[tuple[str, dict]]:
    """(path, node) for the tree and every node in it, depth first; the root's path is ""."""
    nodes = [(path, tree)]
    if is_group(tree):
        for index, child in enumerate(tree["rules"], start=1):
            nodes.extend(walk(child, f"{path}.{index}" if path else str(index)))
    return nodes
