"""The numbers behind a survey's results page and its CSV export, counted in SQL.

Every query takes the same `ResultsFilter`, so the funnel, the charts, the responses list and
the export always describe the same responses. Counting is GROUP BY over the narrow
answer-choice table and the answers' `number` column; Python only shapes the few rows that
come back.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import chain, repeat
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, String, and_, cast, exists, func, or_, select, true
from sqlalchemy.orm import Session, joinedload, selectinload

from surveys.answers import AnswerError, describe_answer, validate_answer
from surveys.definition import OTHER_OPTION_ID, Question, QuestionType, SurveyDefinition
from surveys.nps import NpsBreakdown, nps_breakdown
from webapp.models import AnswerChoice, Customer, Order, SurveyAnswer, SurveyResponse
from webapp.surveys.responses import live_definition

LATEST_TEXTS = 10
PAGE_SIZE = 25
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_INT = 2**63 - 1


# --- the filter ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResultsFilter:
    """Which responses the results describe; every field optional."""

    start: datetime | None = None  # UTC, inclusive: responses shown from then on
    end: datetime | None = None  # UTC, exclusive
    question_id: str | None = None  # with option_id: responses that chose this option
    option_id: str | None = None
    linked: bool | None = None  # True: linked to a customer; False: anonymous

    def conditions(self, survey_id: int) -> list[ColumnElement[bool]]:
        """WHERE clauses on SurveyResponse."""
        where = [SurveyResponse.survey_id == survey_id]
        if self.start is not None:
            where.append(SurveyResponse.shown_at >= self.start)
        if self.end is not None:
            where.append(SurveyResponse.shown_at < self.end)
        if self.linked is not None:
            column = SurveyResponse.customer_id
            where.append(column.is_not(None) if self.linked else column.is_(None))
        if self.question_id and self.option_id:
            where.append(
                exists(
                    select(AnswerChoice.answer_id)
                    .join(SurveyAnswer, SurveyAnswer.id == AnswerChoice.answer_id)
                    .where(
                        SurveyAnswer.response_id == SurveyResponse.id,
                        AnswerChoice.question_id == self.question_id,
                        AnswerChoice.option_id == self.option_id,
                    )
                )
            )
        return where


def day_bounds(
    since: date | None, until: date | None, tz: ZoneInfo
) -> tuple[datetime | None, datetime | None]:
    """UTC bounds of the shop's calendar days `since` to `until`, both included.

    A range typed backwards means the same days, so it is turned round rather than refused.
    """
    if since and until and since > until:
        since, until = until, since

    def midnight(day: date) -> datetime:
        return datetime.combine(day, time.min, tz).astimezone(UTC)

    return (
        midnight(since) if since else None,
        midnight(until + timedelta(days=1)) if until else None,
    )


def _answered() -> ColumnElement[bool]:
    """An answer that says something: a skipped optional question is stored as JSON null."""
    return and_(SurveyAnswer.value.is_not(None), cast(SurveyAnswer.value, String) != "null")


# --- the funnel ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Funnel:
    shown: int
    started: int
    completed: int
    dismissed: int

    def percent(self, count: int) -> float:
        """`count` as a share of the responses shown, 0 to 100."""
        return 100 * count / self.shown if self.shown else 0.0


def funnel(session: Session, survey_id: int, where: ResultsFilter) -> Funnel:
    row = session.execute(
        select(
            func.count(),
            func.count(SurveyResponse.started_at),
            func.count(SurveyResponse.completed_at),
            func.count(SurveyResponse.dismissed_at),
        ).where(*where.conditions(survey_id))
    ).one()
    return Funnel(*row)


# --- a chart per question --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    count: int
    percent: float  # of the answers to the question, 0 to 100


@dataclass(frozen=True, slots=True)
class TextAnswer:
    response_id: int
    answered_at: datetime
    text: str


@dataclass(slots=True)
class QuestionChart:
    """One question's results. `bars` for choice, rating and NPS questions."""

    question: Question
    answered: int = 0
    bars: list[Bar] = field(default_factory=list)
    average: float | None = None  # rating
    nps: NpsBreakdown | None = None
    texts: list[TextAnswer] = field(default_factory=list)  # short text, the latest first
    consented: int | None = None  # email


def _answers_of(survey_id: int, where: ResultsFilter):
    return (
        select()
        .select_from(SurveyAnswer)
        .join(SurveyResponse, SurveyResponse.id == SurveyAnswer.response_id)
        .where(SurveyAnswer.survey_id == survey_id, *where.conditions(survey_id))
    )


def _bars(labels: Mapping[object, str], counts: Mapping[object, int], answered: int) -> list[Bar]:
    return [
        Bar(label, counts.get(key, 0), 100 * counts.get(key, 0) / answered if answered else 0.0)
        for key, label in labels.items()
    ]


def question_charts(
    session: Session, survey_id: int, definition: SurveyDefinition, where: ResultsFilter
) -> list[QuestionChart]:
    """A chart for every question of `definition`, in its order."""
    answers = _answers_of(survey_id, where)
    answered = dict(
        session.execute(
            answers.add_columns(SurveyAnswer.question_id, func.count())
            .where(_answered())
            .group_by(SurveyAnswer.question_id)
        ).all()
    )
    choices: dict[str, dict[str, int]] = {}
    for question_id, option_id, count in session.execute(
        answers.join(AnswerChoice, AnswerChoice.answer_id == SurveyAnswer.id)
        .add_columns(AnswerChoice.question_id, AnswerChoice.option_id, func.count())
        .group_by(AnswerChoice.question_id, AnswerChoice.option_id)
    ):
        choices.setdefault(question_id, {})[option_id] = count
    numbers: dict[str, dict[int, int]] = {}
    for question_id, number, count in session.execute(
        answers.add_columns(SurveyAnswer.question_id, SurveyAnswer.number, func.count())
        .where(SurveyAnswer.number.is_not(None))
        .group_by(SurveyAnswer.question_id, SurveyAnswer.number)
    ):
        numbers.setdefault(question_id, {})[number] = count

    charts = []
    for question in definition.questions:
        chart = QuestionChart(question, answered.get(question.id, 0))
        if question.is_choice:
            labels = {o.id: o.label for o in question.options}
            if question.allow_other:
                labels[OTHER_OPTION_ID] = question.other_label
            chart.bars = _bars(labels, choices.get(question.id, {}), chart.answered)
        elif question.scale:
            low, high = question.scale
            counts = numbers.get(question.id, {})
            chart.bars = _bars({n: str(n) for n in range(low, high + 1)}, counts, chart.answered)
            if question.type is QuestionType.NPS:
                chart.nps = nps_breakdown(
                    chain.from_iterable(repeat(n, c) for n, c in counts.items())
                )
            elif chart.answered:
                chart.average = sum(n * c for n, c in counts.items()) / chart.answered
        elif question.type is QuestionType.SHORT_TEXT:
            chart.texts = latest_texts(session, survey_id, question, where)
        else:
            chart.consented = session.scalar(
                answers.add_columns(func.count()).where(
                    SurveyAnswer.question_id == question.id,
                    SurveyAnswer.value["consent"].as_boolean() == true(),
                )
            )
        charts.append(chart)
    return charts


def latest_texts(
    session: Session,
    survey_id: int,
    question: Question,
    where: ResultsFilter,
    limit: int = LATEST_TEXTS,
) -> list[TextAnswer]:
    rows = session.execute(
        _answers_of(survey_id, where)
        .add_columns(SurveyAnswer.response_id, SurveyAnswer.answered_at, SurveyAnswer.value)
        .where(SurveyAnswer.question_id == question.id, _answered())
        .order_by(SurveyAnswer.answered_at.desc(), SurveyAnswer.id.desc())
        .limit(limit)
    )
    return [
        TextAnswer(response_id, answered_at, answer_words(question, value))
        for response_id, answered_at, value in rows
    ]


def answer_words(question: Question, value: object) -> str:
    """A stored answer in words ("" when skipped), as the page and the export show it.

    The value is read back through the same validator that accepted it; one that no longer
    fits the question (an option removed since) is shown as stored rather than hidden.
    """
    if value is None:
        return ""
    try:
        return describe_answer(question, validate_answer(question, value))
    except AnswerError:
        if isinstance(value, Mapping):
            parts = value.get("options") or [value.get("text") or value.get("number")]
            return ", ".join(str(p) for p in parts if p is not None)
        return str(value)


# --- the responses ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    """A place in the responses list, newest first: (shown_at, id) of the last row seen."""

    shown_at: datetime
    id: int

    def encode(self) -> str:
        return f"{(self.shown_at - _EPOCH) // timedelta(microseconds=1)}_{self.id}"

    @classmethod
    def decode(cls, raw: str | None) -> Cursor | None:
        """The cursor of a page link, or None when it is missing or not one of ours."""
        micros, _, ident = (raw or "").partition("_")
        try:
            number, ident_int = int(micros), int(ident)
            if not (0 < ident_int <= _MAX_INT and abs(number) < 2**53):
                return None
            return cls(_EPOCH + timedelta(microseconds=number), ident_int)
        except (ValueError, OverflowError):
            return None


@dataclass(slots=True)
class ResponseRow:
    response: SurveyResponse
    customer: Customer | None
    order_name: str | None
    answers: dict[str, object]  # question id -> stored value


@dataclass(slots=True)
class ResponsesPage:
    rows: list[ResponseRow]
    next: Cursor | None  # None on the last page


def responses_page(
    session: Session,
    survey_id: int,
    where: ResultsFilter,
    after: Cursor | None = None,
    limit: int = PAGE_SIZE,
) -> ResponsesPage:
    """Responses newest first, `limit` at a time, walking the (survey, shown_at) index."""
    query = (
        select(SurveyResponse, Customer, Order.external_id)
        .outerjoin(Customer, Customer.id == SurveyResponse.customer_id)
        .outerjoin(Order, Order.id == SurveyResponse.order_id)
        .where(*where.conditions(survey_id))
        .order_by(SurveyResponse.shown_at.desc(), SurveyResponse.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(
            or_(
                SurveyResponse.shown_at < after.shown_at,
                and_(SurveyResponse.shown_at == after.shown_at, SurveyResponse.id < after.id),
            )
        )
    found = session.execute(query).all()
    rows = [ResponseRow(response, customer, name, {}) for response, customer, name in found]
    rows, more = rows[:limit], len(rows) > limit
    by_id = {row.response.id: row for row in rows}
    if by_id:
        for response_id, question_id, value in session.execute(
            select(SurveyAnswer.response_id, SurveyAnswer.question_id, SurveyAnswer.value).where(
                SurveyAnswer.response_id.in_(by_id)
            )
        ):
            by_id[response_id].answers[question_id] = value
    last = rows[-1].response if rows and more else None
    return ResponsesPage(rows, Cursor(last.shown_at, last.id) if last else None)


def all_responses(
    session: Session, survey_id: int, where: ResultsFilter, batch: int = 500
) -> Iterator[ResponseRow]:
    """Every matching response, newest first, read a batch at a time (for the export)."""
    after = None
    while True:
        page = responses_page(session, survey_id, where, after, batch)
        yield from page.rows
        if page.next is None:
            return
        after = page.next
        for row in page.rows:  # a long export must not hold every row it has written
            session.expunge(row.response)


# --- one customer's responses ----------------------------------------------------------------

CUSTOMER_RESPONSES = 20


@dataclass(frozen=True, slots=True)
class CustomerResponse:
    response: SurveyResponse
    survey_title: str
    answers: list[tuple[str, str]]  # (question, answer in words), in the survey's order


def customer_responses(
    session: Session, customer_id: int, limit: int = CUSTOMER_RESPONSES
) -> list[CustomerResponse]:
    """The customer's latest answered responses, newest first, with their answers in words."""
    responses = session.scalars(
        select(SurveyResponse)
        .where(SurveyResponse.customer_id == customer_id, SurveyResponse.started_at.is_not(None))
        .options(selectinload(SurveyResponse.answers), joinedload(SurveyResponse.survey))
        .order_by(SurveyResponse.shown_at.desc(), SurveyResponse.id.desc())
        .limit(limit)
    )
    found = []
    for response in responses:
        definition = live_definition(response.survey)
        stored = {answer.question_id: answer.value for answer in response.answers}
        answers = [
            (q.prompt, answer_words(q, stored[q.id]))
            for q in definition.questions
            if q.id in stored
        ]
        found.append(CustomerResponse(response, definition.title, answers))
    return found
