"""Recording responses: who answered (identity and linking), and each answer as it arrives.

Every public way in (the embed's JSON endpoints, the iframe's form steps, the hosted link)
goes through these functions, so the rules live once:
- a response is created when its survey is shown, and remembers who the shopper is as far as
  the shop's page told us (verified by its HMAC signature, or an unverified claim);
- each answer is stored at once, one row per question, so partial responses count and the
  same answer sent twice is stored once;
- an email given with consent records that consent on the customer.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import Session, aliased

from surveys.answers import Answer, AnswerError, next_question, validate_answer
from surveys.definition import SurveyDefinition, parse_definition
from surveys.traits import trait_evidence
from webapp.models import (
    AnswerChoice,
    Customer,
    DeclaredTrait,
    ErasedEmail,
    Order,
    ShopSettings,
    Survey,
    SurveyAnswer,
    SurveyResponse,
)
from webapp.models._types import UTCDateTime, utcnow

REF_MAX = 120
VISITOR_ID_MAX = 64
PAGE_URL_MAX = 2000


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the shop's page says the shopper is; every field optional."""

    order_ref: str | None = None  # the order's Name ("#1001") or Shopify id
    email: str | None = None
    customer_ref: str | None = None  # the shop's customer id
    signature: str | None = None  # hex HMAC-SHA256 of "order_ref|email|customer_ref"

    @property
    def given(self) -> bool:
        return bool(self.order_ref or self.email or self.customer_ref)

    def message(self) -> str:
        return f"{self.order_ref or ''}|{self.email or ''}|{self.customer_ref or ''}"


def sign_identity(secret: str, identity: Identity) -> str:
    """The signature a shop's page sends with `identity` (what Liquid's hmac_sha256 gives)."""
    return hmac.new(secret.encode(), identity.message().encode(), hashlib.sha256).hexdigest()


def identity_verified(secret: str, identity: Identity) -> bool:
    if not (identity.given and identity.signature and secret):
        return False
    return hmac.compare_digest(sign_identity(secret, identity), identity.signature.lower())


def live_definition(survey: Survey) -> SurveyDefinition:
    """What shoppers see: the published copy (a paused survey keeps answering its tokens).

    Parsed once per publish and kept: every answer needs it, and `publish` is the only way
    the published copy changes (it sets a new published_at).
    """
    if survey.published is None:
        return parse_definition(survey.definition)
    definition = cached_live_definition(survey.id, survey.published_at)
    if definition is None:
        if len(_published_cache) >= _PUBLISHED_CACHE_SIZE:
            _published_cache.clear()
        key = (survey.id, survey.published_at)
        definition = _published_cache[key] = parse_definition(survey.published)
    return definition


def cached_live_definition(survey_id: int, published_at: datetime) -> SurveyDefinition | None:
    """The published definition `live_definition` parsed for this publish, if it has."""
    return _published_cache.get((survey_id, published_at))


_PUBLISHED_CACHE_SIZE = 256
_published_cache: dict[tuple[int, datetime | None], SurveyDefinition] = {}


# --- identity --------------------------------------------------------------------------------


def _order_for_ref(session: Session, ref: str) -> Order | None:
    """The order a page names by its Name ("#1001", also given as "1001") or Shopify id."""
    names = {ref, ref if ref.startswith("#") else f"#{ref}"}
    return session.scalars(
        select(Order).where(or_(Order.external_id.in_(names), Order.shopify_id == ref)).limit(1)
    ).first()


def _resolve(session: Session, identity: Identity) -> tuple[int | None, int | None]:
    """(customer_id, order_id) the identity names, the order first: it is the strongest."""
    if identity.order_ref and (order := _order_for_ref(session, identity.order_ref)):
        return order.customer_id, order.id
    if identity.customer_ref:
        found = session.scalar(
            select(Customer.id).where(Customer.external_id == identity.customer_ref)
        )
        if found:
            return found, None
    if identity.email:
        found = session.scalar(
            select(Customer.id).where(Customer.email_norm == identity.email.strip().lower())
        )
        if found:
            return found, None
    return None, None


def link_visitor(session: Session, visitor_id: str | None, customer_id: int | None) -> None:
    """Once a visitor is identified, their earlier anonymous responses are theirs too."""
    if not visitor_id or not customer_id:
        return
    session.execute(
        update(SurveyResponse)
        .where(SurveyResponse.visitor_id == visitor_id, SurveyResponse.customer_id.is_(None))
        .values(customer_id=customer_id)
    )


def link_pending_responses(session: Session, shop: ShopSettings) -> int:
    """Link responses whose order had not been imported when they were given.

    Set-based (one UPDATE per step), so an import can call it after every batch. Returns the
    number of responses newly linked to an order.
    """
    trusted = or_(SurveyResponse.identity_verified, shop.trust_unsigned_identity)
    ref = SurveyResponse.order_ref

    def matching_order(column):
        return (
            select(column)
            .where(
                or_(
                    Order.external_id == ref,
                    Order.external_id == "#" + ref,
                    Order.shopify_id == ref,
                )
            )
            .limit(1)
            .scalar_subquery()
        )

    pending = and_(SurveyResponse.order_id.is_(None), ref.is_not(None), trusted)
    result = session.execute(
        update(SurveyResponse)
        .where(pending, exists(matching_order(Order.id)))
        .values(
            order_id=matching_order(Order.id),
            customer_id=matching_order(Order.customer_id),
        )
        .execution_options(synchronize_session=False)
    )
    linked = result.rowcount or 0
    if linked:
        _spread_to_visitors(session)
    return linked


def _spread_to_visitors(session: Session) -> None:
    """Give each visitor's anonymous responses the customer of their latest identified one."""
    identified = aliased(SurveyResponse)
    customer = (
        select(identified.customer_id)
        .where(
            identified.visitor_id == SurveyResponse.visitor_id,
            identified.customer_id.is_not(None),
        )
        .order_by(identified.shown_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    session.execute(
        update(SurveyResponse)
        .where(
            SurveyResponse.customer_id.is_(None),
            SurveyResponse.visitor_id.is_not(None),
            customer.is_not(None),
        )
        .values(customer_id=customer)
        .execution_options(synchronize_session=False)
    )


# --- showing ---------------------------------------------------------------------------------


def start_response(
    session: Session,
    survey: Survey,
    shop: ShopSettings,
    *,
    channel: str = "embed",
    visitor_id: str | None = None,
    identity: Identity = Identity(),
    device: str = "desktop",
    page_url: str | None = None,
    now: datetime | None = None,
) -> SurveyResponse:
    """Record that `survey` was shown, with who it was shown to; returns the new response.

    The caller has validated the lengths of what it passes (see the *_MAX limits).
    """
    definition = live_definition(survey)
    verified = identity_verified(shop.embed_secret, identity)
    response = SurveyResponse(
        public_id=uuid.uuid4().hex,
        survey_id=survey.id,
        channel=channel,
        visitor_id=visitor_id or None,
        device=device,
        page_url=(page_url or None) and page_url[:PAGE_URL_MAX],
        next_question=definition.questions[0].id,
        order_ref=identity.order_ref or None,
        claimed_email=identity.email or None,
        claimed_customer_ref=identity.customer_ref or None,
        identity_verified=verified,
        shown_at=now or utcnow(),
    )
    if verified or (identity.given and shop.trust_unsigned_identity):
        response.customer_id, response.order_id = _resolve(session, identity)
    session.add(response)
    session.flush()
    link_visitor(session, response.visitor_id, response.customer_id)
    return response


def dismiss_response(response: SurveyResponse, now: datetime | None = None) -> None:
    """The shopper closed the survey; the first dismissal is the one that counts."""
    if response.dismissed_at is None and response.completed_at is None:
        response.dismissed_at = now or utcnow()


# --- answering -------------------------------------------------------------------------------


class AnswerRejected(AnswerError):
    """The answer is valid on its own but not at this point of this response."""


def answered_question_ids(session: Session, response: SurveyResponse) -> set[str]:
    return set(
        session.scalars(
            select(SurveyAnswer.question_id).where(SurveyAnswer.response_id == response.id)
        )
    )


def record_answer(
    session: Session,
    response: SurveyResponse,
    question_id: object,
    raw: object,
    *,
    now: datetime | None = None,
) -> Answer:
    """Validate and store one answer; move the response on. Raises AnswerError (4xx).

    A shopper may answer the question the response is waiting for, or change an earlier
    answer (the back button); never jump ahead past a required question. Storing the same
    answer again changes nothing.
    """
    now = now or utcnow()
    definition = live_definition(response.survey)
    if not isinstance(question_id, str):
        raise AnswerError("Say which question this answers.", "unknown_question")
    try:
        question = definition.question(question_id)
    except KeyError:
        raise AnswerError("This survey has no such question.", "unknown_question") from None
    answer = validate_answer(question, raw)

    value = answer.to_value()
    # The usual step answers the question the response waits for: insert straight away, and
    # read the stored row only when it is there already (a retry, or the back button).
    answer_id = None
    if question_id == response.next_question:
        answer_id = _insert_answer(session, response, question_id, value, answer.number, now)
    stored = None if answer_id is not None else _stored_answer(session, response, question_id)
    if answer_id is not None:
        moved = True
        _write_choices_and_traits(session, response, definition, answer_id, answer, now)
    elif stored is None:
        raise AnswerRejected("Answer the questions in order.", "out_of_order")
    elif stored.value != value:  # the shopper went back and changed it
        moved = True
        stored.value, stored.number, stored.answered_at = value, answer.number, now
        session.execute(delete(AnswerChoice).where(AnswerChoice.answer_id == stored.id))
        session.execute(delete(DeclaredTrait).where(DeclaredTrait.answer_id == stored.id))
        _write_choices_and_traits(session, response, definition, stored.id, answer, now)
    else:
        moved = False  # a retry of the same answer: nothing to do

    if response.started_at is None:
        response.started_at = now
    if moved and response.completed_at is None:
        response.next_question = next_question(definition, question_id, answer)
        if response.next_question is None:
            response.completed_at = now
    if answer.email and answer.consent:
        _record_consent(session, response, answer.email, now)
    session.flush()
    return answer


def _stored_answer(
    session: Session, response: SurveyResponse, question_id: str
) -> SurveyAnswer | None:
    return session.scalar(
        select(SurveyAnswer).where(
            SurveyAnswer.response_id == response.id, SurveyAnswer.question_id == question_id
        )
    )


def _insert_answer(
    session: Session, response: SurveyResponse, question_id: str, value, number, now
) -> int | None:
    """Insert the answer row and return its id; None if a concurrent request stored it first.

    ON CONFLICT DO NOTHING rather than a savepoint: one statement, and the loser of a race
    simply leaves the winner's row.
    """
    connection = session.connection()
    insert_into = postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert
    table = SurveyAnswer.__table__
    return connection.scalar(
        insert_into(table)
        .values(
            response_id=response.id,
            survey_id=response.survey_id,
            question_id=question_id,
            value=value,
            number=number,
            answered_at=now,
        )
        .on_conflict_do_nothing(index_elements=["response_id", "question_id"])
        .returning(table.c.id)
    )


def _write_choices_and_traits(
    session: Session,
    response: SurveyResponse,
    definition: SurveyDefinition,
    answer_id: int,
    answer: Answer,
    now: datetime,
) -> None:
    """Two executemany INSERTs in Core: the ORM's bookkeeping would cost more than the writes."""
    connection = session.connection()
    if answer.option_ids:
        connection.execute(
            AnswerChoice.__table__.insert(),
            [
                {
                    "answer_id": answer_id,
                    "option_id": option_id,
                    "survey_id": response.survey_id,
                    "question_id": answer.question_id,
                }
                for option_id in answer.option_ids
            ],
        )
    evidence = trait_evidence(definition, [answer])
    if evidence:
        connection.execute(
            DeclaredTrait.__table__.insert(),
            [
                {
                    "answer_id": answer_id,
                    "response_id": response.id,
                    "dimension": item.trait.dimension,
                    "value": item.trait.value,
                    "declared_at": now,
                }
                for item in evidence
            ],
        )


# --- the usual step, in a few statements ------------------------------------------------------
#
# Nearly every answer is the first answer to the question its response waits for. That step
# runs as hand-written SQL on a pooled DBAPI connection of its own: one SELECT, then the
# writes (a single statement on PostgreSQL, four quick ones on SQLite) and the commit, with no
# Session and no ORM objects, whose bookkeeping would cost more than the work. Anything else
# (a retry, a changed answer, an answer out of order, an email given with consent, a survey
# whose published copy this process has not parsed yet) ends the attempt having written
# nothing, and the caller takes the full way (`record_answer`) in a transaction of its own; so
# the rules stay there, and this is only a shortcut through them.


@dataclass(frozen=True, slots=True)
class WaitingResponse:
    """What the usual step needs of a response, read in one SELECT."""

    id: int
    survey_id: int
    next_question: str
    published_at: datetime | None
    allowed_origins: str | None  # the shop's setting, read along for the caller's CORS check


@dataclass(frozen=True, slots=True)
class StepTaken:
    next_question: str | None
    completed: bool


class QuickStep:
    """One attempt at the usual step, on a pooled connection of its own (a context manager).

    `waiting` reads the response; `record` validates the answer and stores it for good, or
    returns None having stored nothing. On PostgreSQL the connection runs in autocommit for
    the attempt: the read needs no transaction and the writes are one statement, atomic on
    its own, so the BEGIN and COMMIT round trips are saved.
    """

    def __init__(self, engine: Engine) -> None:
        self._sql = _step_sql(engine.dialect)
        self._connection = engine.raw_connection()
        if self._sql.postgresql:
            self._connection.driver_connection.autocommit = True

    def __enter__(self) -> QuickStep:
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._sql.postgresql:
                self._connection.driver_connection.autocommit = False
        except Exception:  # a broken connection: never hand it out again
            self._connection.invalidate()
            raise
        finally:
            self._connection.close()  # back to the pool, which rolls back what is left

    def waiting(self, public_id: str) -> WaitingResponse | None:
        """The response `public_id` names, if it waits for an answer to a published survey."""
        sql = self._sql
        cursor = self._connection.cursor()
        try:
            cursor.execute(sql.select_waiting, {"public_id": public_id})
            row = cursor.fetchone()
        finally:
            cursor.close()
        if row is None:
            return None
        return WaitingResponse(row[0], row[1], row[2], sql.time_out(row[3]), row[4])

    def record(
        self,
        waiting: WaitingResponse,
        question_id: object,
        raw: object,
        *,
        now: datetime | None = None,
    ) -> StepTaken | None:
        """What `record_answer` does for the usual step, committed; None (nothing stored)
        for any other case."""
        if question_id != waiting.next_question:
            return None
        definition = cached_live_definition(waiting.survey_id, waiting.published_at)
        if definition is None:
            return None
        try:
            answer = validate_answer(definition.question(waiting.next_question), raw)
        except (KeyError, AnswerError):
            return None
        if answer.email and answer.consent:
            return None
        following = next_question(definition, answer.question_id, answer)
        evidence = trait_evidence(definition, [answer])
        sql = self._sql
        at = sql.time_in(now or utcnow())
        step = {
            "response_id": waiting.id,
            "survey_id": waiting.survey_id,
            "question_id": answer.question_id,
            "value": sql.json_in(answer.to_value()),
            "number": answer.number,
            "now": at,
            "next_question": following,
            "completed_at": at if following is None else None,
        }
        cursor = self._connection.cursor()
        try:
            if sql.postgresql:
                step["option_ids"] = list(answer.option_ids)
                step["dimensions"] = [item.trait.dimension for item in evidence]
                step["values"] = [item.trait.value for item in evidence]
                cursor.execute(sql.write_step, step)
                if cursor.fetchone() is None:  # stored already: a retry, or a concurrent request
                    return None
            else:
                cursor.execute(sql.insert_answer, step)
                row = cursor.fetchone()
                if row is None:
                    return None
                if answer.option_ids:
                    cursor.executemany(
                        sql.insert_choice,
                        [
                            (row[0], option_id, waiting.survey_id, answer.question_id)
                            for option_id in answer.option_ids
                        ],
                    )
                if evidence:
                    cursor.executemany(
                        sql.insert_trait,
                        [
                            (row[0], waiting.id, item.trait.dimension, item.trait.value, at)
                            for item in evidence
                        ],
                    )
                cursor.execute(sql.move_response, step)
                self._connection.commit()
        finally:
            cursor.close()
        return StepTaken(following, following is None)


_SELECT_WAITING = """
SELECT r.id, r.survey_id, r.next_question, s.published_at,
       (SELECT allowed_origins FROM shop_settings WHERE id = 1)
FROM survey_responses AS r JOIN surveys AS s ON s.id = r.survey_id
WHERE r.public_id = %(public_id)s AND r.next_question IS NOT NULL
  AND r.completed_at IS NULL AND s.published IS NOT NULL"""

_INSERT_ANSWER = """
INSERT INTO survey_answers (response_id, survey_id, question_id, value, number, answered_at)
VALUES (%(response_id)s, %(survey_id)s, %(question_id)s, %(value)s, %(number)s, %(now)s)
ON CONFLICT (response_id, question_id) DO NOTHING
RETURNING id"""

_MOVE_RESPONSE = """
UPDATE survey_responses
SET started_at = COALESCE(started_at, %(now)s), next_question = %(next_question)s,
    completed_at = %(completed_at)s
WHERE id = %(response_id)s"""

# PostgreSQL: all the writes in one round trip. Each part hangs on the inserted answer, so when
# the answer was there already (ON CONFLICT) none of them writes anything.
_WRITE_STEP_POSTGRESQL = """
WITH answer AS (
  INSERT INTO survey_answers (response_id, survey_id, question_id, value, number, answered_at)
  VALUES (%(response_id)s::integer, %(survey_id)s::integer, %(question_id)s::varchar,
          %(value)s::json, %(number)s::integer, %(now)s::timestamptz)
  ON CONFLICT (response_id, question_id) DO NOTHING
  RETURNING id
), choices AS (
  INSERT INTO survey_answer_choices (answer_id, option_id, survey_id, question_id)
  SELECT answer.id, chosen.option_id, %(survey_id)s::integer, %(question_id)s::varchar
  FROM answer, unnest(%(option_ids)s::varchar[]) WITH ORDINALITY AS chosen(option_id, n)
  ORDER BY chosen.n
), traits AS (
  INSERT INTO declared_traits (answer_id, response_id, dimension, value, declared_at)
  SELECT answer.id, %(response_id)s::integer, declared.dimension, declared.value,
         %(now)s::timestamptz
  FROM answer, unnest(%(dimensions)s::varchar[], %(values)s::varchar[])
       WITH ORDINALITY AS declared(dimension, value, n)
  ORDER BY declared.n
), moved AS (
  UPDATE survey_responses
  SET started_at = COALESCE(started_at, %(now)s::timestamptz),
      next_question = %(next_question)s::varchar, completed_at = %(completed_at)s::timestamptz
  WHERE id = %(response_id)s::integer AND EXISTS (SELECT 1 FROM answer)
)
SELECT id FROM answer"""


def _same(value):
    return value


def _colon_style(sql: str) -> str:
    """%(name)s (psycopg) as :name (sqlite3)."""
    return re.sub(r"%\((\w+)\)s", r":\1", sql)


class _StepSQL:
    """The usual step's statements and value conversions for one dialect, made once."""

    def __init__(self, dialect: Dialect) -> None:
        self.postgresql = dialect.name == "postgresql"
        # The columns' own conversions, so that the rows are the ones the ORM would store.
        time = UTCDateTime().dialect_impl(dialect)
        self.time_in = time.bind_processor(dialect) or _same
        self.time_out = time.result_processor(dialect, None) or _same
        value = SurveyAnswer.__table__.c.value.type.dialect_impl(dialect)
        self.json_in = value.bind_processor(dialect) or _same
        if self.postgresql:
            self.select_waiting = _SELECT_WAITING
            self.write_step = _WRITE_STEP_POSTGRESQL
        else:
            self.select_waiting = _colon_style(_SELECT_WAITING)
            self.insert_answer = _colon_style(_INSERT_ANSWER)
            self.move_response = _colon_style(_MOVE_RESPONSE)
            self.insert_choice = (
                "INSERT INTO survey_answer_choices (answer_id, option_id, survey_id, question_id)"
                " VALUES (?, ?, ?, ?)"
            )
            self.insert_trait = (
                "INSERT INTO declared_traits"
                " (answer_id, response_id, dimension, value, declared_at) VALUES (?, ?, ?, ?, ?)"
            )


_step_sqls: weakref.WeakKeyDictionary[Dialect, _StepSQL] = weakref.WeakKeyDictionary()


def _step_sql(dialect: Dialect) -> _StepSQL:
    sql = _step_sqls.get(dialect)
    if sql is None:
        sql = _step_sqls[dialect] = _StepSQL(dialect)
    return sql


def _record_consent(session: Session, response: SurveyResponse, email: str, now) -> None:
    """An address given with the consent box ticked: the customer (created if new) consents.

    An erased person's address never comes back as a customer.
    """
    from webapp.privacy import email_hash

    norm = email.strip().lower()
    customer = session.scalar(select(Customer).where(Customer.email_norm == norm))
    if customer is None:
        if session.get(ErasedEmail, email_hash(norm)) is not None:
            return
        customer = Customer(email=email.strip(), email_norm=norm)
        session.add(customer)
        session.flush()
    if not customer.accepts_marketing or customer.unsubscribed_at is not None:
        customer.accepts_marketing = True
        customer.unsubscribed_at = None
        customer.consent_source = "survey"
        customer.consent_at = now
    if response.customer_id is None:
        response.customer_id = customer.id
        link_visitor(session, response.visitor_id, customer.id)
