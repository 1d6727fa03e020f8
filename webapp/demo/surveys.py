"""The demo shop's surveys and about a year of answers to them.

Three published surveys from the stock templates: the post-purchase profile, the exit-intent
"what stopped you today?" and an NPS survey, with a few thousand answers.

Recording them one by one through webapp.surveys.responses costs a minute (a flush per
answer), so they are written in bulk instead, but by the same rules, from the same domain
functions: each answer is checked by validate_answer and stored as Answer.to_value(), the
survey moves on by next_question (jumps and completion included), choices and declared traits
come from the answer and trait_evidence, a post-purchase response carries its order id signed
with the shop's secret (checked by identity_verified) and so its order and customer, and a
visitor who answered the exit survey anonymously is linked once they are identified
(link_visitor's rule).

Answers follow what the demo's customers bought: the craft is the one most of their lines
belong to, the skill follows the tiers they buy, gifts peak in Q4, repeat customers score
higher.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from surveys.answers import Answer, next_question, validate_answer
from surveys.definition import SurveyDefinition
from surveys.traits import trait_evidence
from webapp.catalog import DEFAULT_CATEGORIES
from webapp.models import (
    AnswerChoice,
    DeclaredTrait,
    Order,
    OrderLine,
    ShopSettings,
    Survey,
    SurveyAnswer,
    SurveyResponse,
)
from webapp.surveys.manage import create_survey, publish
from webapp.surveys.responses import (
    Identity,
    dismiss_response,
    identity_verified,
    live_definition,
    sign_identity,
)

# Where the demo shop's own site would live: the page each response was shown on.
SHOP_SITE = "https://loopanddaub.example"
DEVICES = {"mobile": 58, "desktop": 35, "tablet": 7}
SKILL_BY_TIER = {"starter": "beginner", "standard": "intermediate", "premium": "experienced"}
OTHER_CRAFTS = ("Macramé", "Candle making", "Bookbinding", "Needle felting", "Punch needle")
HEARD_FROM = {
    "instagram": 24, "search": 16, "pinterest": 14, "friend": 12, "facebook": 10,
    "youtube": 9, "tiktok": 8, "craft_fair": 5, "blog_or_podcast": 2, "other": 2,
}  # fmt: skip
OTHER_HEARD_FROM = ("Our local yarn shop", "A magazine", "The newsletter of my guild")
OBJECTIONS = {
    "shipping_cost": 30, "just_browsing": 28, "price": 18, "not_found": 12, "come_back_later": 12,
}  # fmt: skip
LOOKING_FOR = (
    "Chunky wool in dark green",
    "Size 2.5 mm circular needles",
    "Oil paints, not acrylics",
    "A gift card",
    "Glazes for stoneware",
    "Embroidery hoops bigger than 12 inches",
    "Sock yarn without nylon",
    "Watercolour paper in A3",
    "Beginner crochet kit",
)
EXIT_PAGES = (
    "/",
    "/collections/yarn",
    "/collections/paint",
    "/collections/fabric",
    "/products/merino-worsted-yarn",
    "/products/acrylic-paint-set",
    "/cart",
)
# How likely each score 0..10 is, for one-off buyers; repeat buyers are promoters more often.
NPS_WEIGHTS = (2, 1, 1, 2, 2, 4, 6, 12, 20, 22, 28)

PROFILE_DAYS = 365
EXIT_DAYS = 200
NPS_DAYS = 300
EXIT_SHOWINGS = 1600


@dataclass(slots=True)
class Buyer:
    """What a customer's lines say about them."""

    crafts: list[str]  # most bought first, as survey option ids
    skill: str
    orders: int
    visitor: str


@dataclass(frozen=True, slots=True)
class Purchase:
    order_id: int
    order_ref: str
    customer_id: int
    placed_at: datetime


def demo_surveys_built(session: Session) -> bool:
    return session.scalar(select(Survey.id).limit(1)) is not None


def build_demo_surveys(
    session: Session, shop: ShopSettings, now: datetime, seed: int = 42
) -> dict[str, int]:
    """Publish the three surveys and record their responses; returns what was made."""
    rng = random.Random(seed)
    buyers = _buyers(session, rng)
    profile = _published(session, "post_purchase_profile", now - timedelta(days=PROFILE_DAYS))
    exit_survey = _published(session, "exit_intent_objection", now - timedelta(days=EXIT_DAYS))
    nps = _published(session, "nps", now - timedelta(days=NPS_DAYS))
    session.flush()

    post_purchase = _first_purchases(session, profile.published_at, buyers)
    recorder = _Recorder(session, shop, rng, now)
    # Exit answers first: a visitor who later buys is linked to them when the profile
    # survey on their order page identifies them.
    buyers_later = [p for p in post_purchase if p.placed_at - exit_survey.published_at > _DAY]
    for _ in range(EXIT_SHOWINGS):
        recorder.exit_intent(exit_survey, buyers, buyers_later)
    for purchase in post_purchase:
        if rng.random() < 0.65:
            recorder.profile(profile, purchase, buyers[purchase.customer_id])
    for purchase in _first_purchases(session, nps.published_at, buyers):
        if rng.random() < 0.45:
            recorder.nps(nps, purchase, buyers[purchase.customer_id])
    recorder.write()
    session.commit()
    return {"surveys": 3, "responses": recorder.responses, "answers": recorder.answers}


_DAY = timedelta(days=1)


def _published(session: Session, template_key: str, when: datetime) -> Survey:
    survey = create_survey(session, template_key)
    survey.created_at = when - timedelta(days=2)
    publish(survey, now=when)
    return survey


def _buyers(session: Session, rng: random.Random) -> dict[int, Buyer]:
    """Each customer's crafts (by lines bought) and skill (by the tiers they buy)."""
    crafts: dict[int, Counter] = defaultdict(Counter)
    tiers: dict[int, Counter] = defaultdict(Counter)
    rows = session.execute(
        select(Order.customer_id, OrderLine.category, OrderLine.tier, func.count())
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(Order.customer_id.is_not(None))
        .group_by(Order.customer_id, OrderLine.category, OrderLine.tier)
    )
    for customer_id, category, tier, count in rows:
        if craft := DEFAULT_CATEGORIES.get(category or ""):
            crafts[customer_id][craft] += count
        if tier in SKILL_BY_TIER:
            tiers[customer_id][SKILL_BY_TIER[tier]] += count
    orders = dict(
        session.execute(
            select(Order.customer_id, func.count())
            .where(Order.customer_id.is_not(None))
            .group_by(Order.customer_id)
        ).all()
    )
    return {
        customer_id: Buyer(
            crafts=[craft for craft, _ in crafts[customer_id].most_common()] or ["knitting"],
            skill=(tiers[customer_id].most_common(1) or [("intermediate", 0)])[0][0],
            orders=count,
            visitor=f"{rng.getrandbits(64):016x}",
        )
        for customer_id, count in orders.items()
    }


def _first_purchases(session: Session, since: datetime, buyers: dict[int, Buyer]) -> list[Purchase]:
    """Each customer's first order since `since`, oldest first (the survey shows once)."""
    first = (
        select(Order.customer_id, func.min(Order.placed_at).label("placed_at"))
        .where(
            Order.placed_at >= since,
            Order.customer_id.is_not(None),
            Order.cancelled_at.is_(None),
        )
        .group_by(Order.customer_id)
        .subquery()
    )
    rows = session.execute(
        select(Order.id, Order.external_id, Order.customer_id, Order.placed_at)
        .join(
            first,
            (first.c.customer_id == Order.customer_id) & (first.c.placed_at == Order.placed_at),
        )
        .order_by(Order.placed_at, Order.id)
    )
    seen: set[int] = set()
    purchases = []
    for order_id, order_ref, customer_id, placed_at in rows:
        if customer_id in seen or customer_id not in buyers:
            continue
        seen.add(customer_id)
        purchases.append(Purchase(order_id, order_ref, customer_id, placed_at))
    return purchases


class _Recorder:
    """Shows surveys and answers them as shoppers would, a few seconds apart; `write` stores
    everything at once."""

    def __init__(
        self, session: Session, shop: ShopSettings, rng: random.Random, now: datetime
    ) -> None:
        self.session, self.shop, self.rng, self.now = session, shop, rng, now
        self.definitions: dict[int, SurveyDefinition] = {}
        self.shown: list[SurveyResponse] = []
        self.answered: dict[SurveyResponse, list[tuple[SurveyAnswer, Answer]]] = defaultdict(list)

    @property
    def responses(self) -> int:
        return len(self.shown)

    @property
    def answers(self) -> int:
        return sum(len(answers) for answers in self.answered.values())

    def _definition(self, survey: Survey) -> SurveyDefinition:
        if survey.id not in self.definitions:
            self.definitions[survey.id] = live_definition(survey)
        return self.definitions[survey.id]

    def _show(
        self,
        survey: Survey,
        at: datetime,
        visitor: str,
        page: str,
        purchase: Purchase | None = None,
    ) -> SurveyResponse:
        response = SurveyResponse(
            public_id=f"{self.rng.getrandbits(128):032x}",
            survey_id=survey.id,
            channel="embed",
            visitor_id=visitor,
            device=self.rng.choices(list(DEVICES), list(DEVICES.values()))[0],
            page_url=page,
            next_question=self._definition(survey).questions[0].id,
            shown_at=at,
        )
        if purchase is not None:
            identity = Identity(order_ref=purchase.order_ref)
            signed = Identity(
                order_ref=purchase.order_ref,
                signature=sign_identity(self.shop.embed_secret, identity),
            )
            response.order_ref = purchase.order_ref
            response.identity_verified = identity_verified(self.shop.embed_secret, signed)
            response.customer_id, response.order_id = purchase.customer_id, purchase.order_id
        self.shown.append(response)
        return response

    def _answer(self, response: SurveyResponse, at: datetime, question_id: str, raw) -> datetime:
        """record_answer's rules for a response answered in order, a few seconds later."""
        at += timedelta(seconds=self.rng.randint(3, 25))
        definition = self.definitions[response.survey_id]
        assert question_id == response.next_question, "answer the questions in order"
        answer = validate_answer(definition.question(question_id), raw)
        row = SurveyAnswer(
            survey_id=response.survey_id,
            question_id=question_id,
            value=answer.to_value(),
            number=answer.number,
            answered_at=at,
        )
        response.answers.append(row)
        self.answered[response].append((row, answer))
        response.started_at = response.started_at or at
        response.next_question = next_question(definition, question_id, answer)
        if response.next_question is None:
            response.completed_at = at
        return at

    def write(self) -> None:
        """Store the responses, their answers, choices and declared traits in bulk."""
        # link_visitor's rule: an identified visitor's anonymous responses are theirs too.
        identified = {r.visitor_id: r.customer_id for r in self.shown if r.customer_id is not None}
        for response in self.shown:
            if response.customer_id is None and response.visitor_id in identified:
                response.customer_id = identified[response.visitor_id]
        self.session.add_all(self.shown)
        self.session.flush()
        choices, traits = [], []
        for response, answers in self.answered.items():
            definition = self.definitions[response.survey_id]
            for row, answer in answers:
                choices += [
                    {
                        "answer_id": row.id,
                        "option_id": option_id,
                        "survey_id": response.survey_id,
                        "question_id": row.question_id,
                    }
                    for option_id in answer.option_ids
                ]
                traits += [
                    {
                        "answer_id": row.id,
                        "response_id": response.id,
                        "dimension": item.trait.dimension,
                        "value": item.trait.value,
                        "declared_at": row.answered_at,
                    }
                    for item in trait_evidence(definition, [answer])
                ]
        if choices:
            self.session.execute(insert(AnswerChoice), choices)
        if traits:
            self.session.execute(insert(DeclaredTrait), traits)

    def exit_intent(self, survey, buyers, buyers_later) -> None:
        rng = self.rng
        if buyers_later and rng.random() < 0.08:
            # Someone who leaves today and buys a few days later.
            purchase = rng.choice(buyers_later)
            at = purchase.placed_at - timedelta(days=rng.uniform(0.5, 20))
            visitor = buyers[purchase.customer_id].visitor
        else:
            at = self.now - timedelta(days=rng.uniform(0, EXIT_DAYS - 1))
            visitor = f"{rng.getrandbits(64):016x}"
        at = max(at, survey.published_at + timedelta(minutes=5))
        response = self._show(survey, at, visitor, SHOP_SITE + rng.choice(EXIT_PAGES))
        if rng.random() < 0.55:
            dismiss_response(response, at + timedelta(seconds=rng.randint(1, 8)))
            return
        objection = rng.choices(list(OBJECTIONS), list(OBJECTIONS.values()))[0]
        at = self._answer(response, at, "objection", objection)
        if objection == "not_found":
            text = rng.choice(LOOKING_FOR) if rng.random() < 0.7 else None
            self._answer(response, at, "looking_for", text)

    def profile(self, survey: Survey, purchase: Purchase, buyer: Buyer) -> None:
        rng = self.rng
        at = purchase.placed_at + timedelta(seconds=rng.randint(20, 600))
        if at > self.now:
            return
        response = self._show(
            survey, at, buyer.visitor, f"{SHOP_SITE}/checkouts/thank-you", purchase
        )
        if rng.random() < 0.25:
            dismiss_response(response, at + timedelta(seconds=rng.randint(1, 10)))
            return
        crafts = buyer.crafts[: 2 if rng.random() < 0.3 else 1]
        craft = {"options": crafts}
        if rng.random() < 0.05:
            craft = {"options": [*crafts, "other"], "other": rng.choice(OTHER_CRAFTS)}
        at = self._answer(response, at, "craft", craft)
        gift_share = 0.45 if purchase.placed_at.month in (11, 12) else 0.2
        heard = rng.choices(list(HEARD_FROM), list(HEARD_FROM.values()))[0]
        if heard == "other":
            heard = {"option": "other", "other": rng.choice(OTHER_HEARD_FROM)}
        skill = buyer.skill if rng.random() < 0.8 else rng.choice(list(SKILL_BY_TIER.values()))
        steps = [
            ("skill", skill),
            ("occasion", "gift" if rng.random() < gift_share else "self"),
            ("heard_from", heard),
        ]
        for question_id, raw in steps:
            if rng.random() < 0.07:  # wandered off: a partial response, closed or not
                if rng.random() < 0.5:
                    dismiss_response(response, at + timedelta(seconds=5))
                return
            at = self._answer(response, at, question_id, raw)

    def nps(self, survey: Survey, purchase: Purchase, buyer: Buyer) -> None:
        rng = self.rng
        at = purchase.placed_at + timedelta(days=rng.randint(7, 21))
        if at > self.now:
            return
        response = self._show(survey, at, buyer.visitor, f"{SHOP_SITE}/account/orders", purchase)
        if rng.random() < 0.3:
            dismiss_response(response, at + timedelta(seconds=rng.randint(1, 10)))
            return
        weights = list(NPS_WEIGHTS)
        if buyer.orders >= 3:  # loyal customers recommend the shop more
            weights[9] += 15
            weights[10] += 25
        score = rng.choices(range(11), weights)[0]
        self._answer(response, at, "recommend", score)
