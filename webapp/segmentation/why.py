"""A customer's profile in words: why each behaviour and trait, from what the refresh kept.

Pure functions over profile and trait rows (anything with the same attributes), so the
wording is tested without a database. Dates are shown as the shop's calendar days.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from webapp.segmentation.profiles import (
    CLASSES_CATEGORY,
    ENGAGED_WINDOW_DAYS,
    NEW_CUSTOMER_DAYS,
    SEASONAL_PERCENT,
    TIER_SKILL,
    VIP_REVENUE_PERCENT,
)
from webapp.segmentation.traits import MIXED, UNKNOWN

SKILL_TIER = {skill: tier for tier, skill in TIER_SKILL.items()}
# The dimensions every shop has, listed (as unknown) even before anyone has them.
CORE_DIMENSIONS = ("craft", "skill", "occasion", "objection")
WINDOWS = {
    "365d": "in the last 365 days",
    "all": "over all their orders (none in the last 365 days)",
}


class ProfileFacts(Protocol):
    frequency: int
    recency_days: int | None
    first_order_on: date | None
    last_order_on: date | None
    r: int | None
    f: int | None
    rfm_segment: str | None
    lifecycle: str
    is_frequent: bool
    is_seasonal: bool
    seasonal_quarter: int | None
    is_vip: bool
    is_cart_abandoner: bool
    objection: str | None
    abandoned_at: datetime | None
    is_class_taker: bool
    is_engaged: bool


class TraitEvidence(Protocol):
    dimension: str
    value: str
    score: float
    declared_values: str | None
    declared_at: datetime | None
    observed_value: str | None
    observed_share: float | None
    observed_window: str | None


@dataclass(frozen=True)
class Reason:
    """One line of the why: a label ("VIP") and what put the customer there."""

    label: str
    text: str

    def __str__(self) -> str:
        return f"{self.label}: {self.text}"


@dataclass(frozen=True)
class TraitWhy:
    dimension: str  # "Craft"
    value: str  # "knitting", "mixed", "unknown"
    score: float | None  # None when unknown
    text: str  # the evidence in words

    def __str__(self) -> str:
        score = "" if self.score is None else f" ({self.score:.2f})"
        return f"{self.dimension}: {self.value}{score} — {self.text}"


@dataclass(frozen=True)
class Engagement:
    """The latest open or click that counts towards "engaged"."""

    event: str  # open|click
    at: datetime
    campaign: str | None  # the campaign's name; None when it is no longer there


# --- words -------------------------------------------------------------------------------


def words(value: str) -> str:
    """A stored value as the owner reads it: "shipping_cost" -> "shipping cost"."""
    return value.replace("_", " ").strip()


def title(value: str) -> str:
    text = words(value)
    return text[:1].upper() + text[1:]


def day_words(value: date | datetime | None, tz: ZoneInfo) -> str:
    """ "2 Oct 2026": a UTC instant as the shop's calendar day, or a date as it is."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(tz).date()
    return f"{value.day} {value:%b %Y}"


def percent(share: float) -> str:
    return f"{round(100 * share)}%"


def listing(items: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


# --- behaviours --------------------------------------------------------------------------


def behaviour_reasons(
    profile: ProfileFacts,
    tz: ZoneInfo,
    seasonal_share: float | None = None,
    class_orders: int | None = None,
    class_last_on: date | None = None,
    engagement: Engagement | None = None,
) -> list[Reason]:
    """Why the customer has each behaviour they have; empty when none.

    `seasonal_share` (orders in their season / all counted orders), the classes facts and
    the latest engagement are read by the caller from orders, category stats and email
    events; without them the rule is stated.
    """
    reasons = []
    if profile.is_vip:
        reasons.append(
            Reason(
                "VIP",
                f"among the customers who make the top {VIP_REVENUE_PERCENT}% of revenue",
            )
        )
    if profile.is_frequent:
        reasons.append(
            Reason(
                "Frequent",
                f"{plural(profile.frequency, 'order')}: among the fifth of customers "
                "with the most orders (F score 5)",
            )
        )
    if profile.is_seasonal and profile.seasonal_quarter:
        quarter = f"Q{profile.seasonal_quarter}"
        if seasonal_share is not None:
            text = f"{percent(seasonal_share)} of orders in {quarter}, across at least two years"
        else:
            text = f"at least {SEASONAL_PERCENT}% of orders in {quarter}, across at least two years"
        reasons.append(Reason("Seasonal", text))
    if profile.is_cart_abandoner:
        parts = [f"answered the exit survey on {day_words(profile.abandoned_at, tz)}"]
        if profile.objection:
            parts.append(f"objection: {words(profile.objection)}")
        parts.append("no order since")
        reasons.append(Reason("Cart abandoner", ", ".join(parts)))
    if profile.is_class_taker:
        text = f"bought from the “{CLASSES_CATEGORY}” category"
        if class_orders:
            text += f" ({plural(class_orders, 'order')}"
            text += f", last on {day_words(class_last_on, tz)})" if class_last_on else ")"
        reasons.append(Reason("Class taker", text))
    if profile.is_engaged:
        reasons.append(Reason("Engaged", _engaged_text(engagement, tz)))
    return reasons


def _engaged_text(engagement: Engagement | None, tz: ZoneInfo) -> str:
    within = f"within {ENGAGED_WINDOW_DAYS} days"
    if engagement is None:
        return f"opened or clicked a campaign {within}"
    verb = "clicked a link in" if engagement.event == "click" else "opened"
    campaign = f"“{engagement.campaign}”" if engagement.campaign else "a campaign"
    return f"{verb} {campaign} on {day_words(engagement.at, tz)}, {within}"


def lifecycle_reason(profile: ProfileFacts, as_of: date, tz: ZoneInfo) -> str:
    """Why the customer is at this stage, as of the run's day."""
    stage = profile.lifecycle
    if stage == "prospect" or profile.last_order_on is None:
        return "no counted orders yet"
    first = day_words(profile.first_order_on, tz)
    last = f"last order {plural(profile.recency_days or 0, 'day')} before {day_words(as_of, tz)}"
    if stage == "new":
        return f"first order on {first}, within {NEW_CUSTOMER_DAYS} days"
    if stage == "active":
        return f"{last}, within the churn window"
    if stage == "lapsed":
        return f"{last}: beyond the churn window, within twice it"
    if stage == "churned":
        return f"{last}: beyond twice the churn window"
    return last


def rfm_reason(profile: ProfileFacts) -> str:
    if profile.r is None or profile.f is None:
        return "no counted orders, so no R, F or M score"
    cell = f"R {profile.r}, F {profile.f}"
    if profile.rfm_segment:
        return f"{cell}: {profile.rfm_segment} in your RFM map"
    return f"{cell}: no row of your RFM map names this cell"


# --- traits ------------------------------------------------------------------------------


def _observed_thing(dimension: str, value: str) -> str:
    if dimension == "skill" and value in SKILL_TIER:
        return f"{SKILL_TIER[value]} products"
    return words(value)


def trait_why(trait: TraitEvidence, tz: ZoneInfo) -> TraitWhy:
    """One trait and its evidence, e.g. "said Knitting on 2 Oct 2026; 64% of spend on
    knitting in the last 365 days"; "…; but 90% of spend on knitting …" when they differ."""
    declared = [v for v in (trait.declared_values or "").split(",") if v]
    parts = []
    if declared:
        said = listing([title(v) for v in declared])
        when = f" on {day_words(trait.declared_at, tz)}" if trait.declared_at else ""
        parts.append(f"said {said}{when}")
    if trait.observed_value and trait.observed_share is not None:
        window = WINDOWS.get(trait.observed_window or "", "")
        spent = (
            f"{percent(trait.observed_share)} of spend on "
            f"{_observed_thing(trait.dimension, trait.observed_value)} {window}"
        ).strip()
        if declared and trait.observed_value not in declared:
            spent = "but " + spent
        parts.append(spent)
    text = "; ".join(parts) or "no evidence kept"
    if trait.value == MIXED:
        text += ": no single value stands out"
    return TraitWhy(title(trait.dimension), words(trait.value), trait.score, text)


def unknown_trait(dimension: str) -> TraitWhy:
    return TraitWhy(title(dimension), UNKNOWN, None, "no answer and no purchases to go by")


def traits_why(
    traits: Iterable[TraitEvidence], tz: ZoneInfo, dimensions: Iterable[str] = CORE_DIMENSIONS
) -> list[TraitWhy]:
    """Every trait the customer has, then every other known dimension as unknown."""
    by_dimension = {t.dimension: t for t in traits}
    ordered = list(dict.fromkeys([*dimensions, *sorted(by_dimension)]))
    return [
        trait_why(by_dimension[d], tz) if d in by_dimension else unknown_trait(d) for d in ordered
    ]
