"""The owner's survey pages: the list, starting from a template, and the htmx builder.

Every edit saves the draft at once and the page shows `validate_definition`'s errors beside
the fields they concern, so inline edits and publish judge a survey by the same rules.
Each form works without JavaScript (post, then redirect back to the builder); with htmx a
form swaps only its own piece (a question card, the questions list, a section), updates
the status bar out of band, and fires `survey-changed` so the preview reloads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Blueprint, abort, make_response, redirect, render_template, request, url_for
from sqlalchemy import select
from wtforms.fields import SelectChoice

from surveys.definition import CHOICE_TYPES, DEFAULT_THANK_YOU, validate_definition
from surveys.errors import DefinitionInvalid, errors_by_path
from surveys.templates import TEMPLATES
from webapp.extensions import db, htmx
from webapp.models import Survey
from webapp.shop import get_shop
from webapp.surveys import drafts, manage
from webapp.surveys.builder_forms import (
    KIND_NAMES,
    QUESTION_TYPES,
    AddQuestionForm,
    DetailsForm,
    OptionForm,
    QuestionForm,
    TriggerForm,
    attach_errors,
)

bp = Blueprint("surveys", __name__, url_prefix="/surveys")

MAX_ID = 2**63 - 1
STATUS_LABELS = {"draft": "Draft", "active": "Active", "paused": "Paused"}


def survey_or_404(survey_id: int) -> Survey:
    survey = db.session.get(Survey, survey_id) if 0 < survey_id <= MAX_ID else None
    return survey or abort(404)


def question_or_404(survey: Survey, question_id: str) -> tuple[int, dict]:
    try:
        return drafts.find_question(survey.definition, question_id)
    except KeyError:
        abort(404)


# --- what the builder shows ------------------------------------------------------------------


@dataclass
class OptionView:
    id: str
    number: int
    form: OptionForm
    first: bool
    last: bool


@dataclass
class QuestionView:
    id: str
    number: int
    type: str
    form: QuestionForm
    options: list[OptionView]
    errors: list[str]  # about the question's options as a whole ("give at least two")
    type_locked: bool  # shoppers answered it as this type: a new type would change the meaning
    first: bool
    last: bool
    add_error: str | None = None

    @property
    def is_choice(self) -> bool:
        return self.type in CHOICE_TYPES

    @property
    def fields(self) -> list[str]:
        """The settings the form shows for this type, in the order the owner reads them."""
        keys = drafts.type_keys(self.type)
        order = (
            "allow_other",
            "other_label",
            "low_label",
            "high_label",
            "max_length",
            "placeholder",
            "consent_label",
        )
        return [name for name in order if name in keys]


@dataclass
class Builder:
    survey: Survey
    errors: dict[str, list[str]]
    locked: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, survey: Survey) -> Builder:
        errors = errors_by_path(validate_definition(survey.definition))
        return cls(survey, errors, manage.used_question_ids(db.session, survey))

    @property
    def definition(self) -> dict:
        return self.survey.definition

    def details_form(self) -> DetailsForm:
        # A template leaves the thank-you text to its default: show the text shoppers get.
        data = {"thank_you": DEFAULT_THANK_YOU, **self.definition}
        form = DetailsForm(formdata=None, data=data, prefix="details")
        attach_errors(form, self.errors, "")
        return form

    def trigger_form(self) -> TriggerForm:
        triggers = self.definition.get("triggers") or {}
        form = TriggerForm.for_triggers(triggers, formdata=None, prefix="triggers")
        attach_errors(form, self.errors, "triggers", triggers)
        return form

    def question(
        self,
        question_id: str,
        form: QuestionForm | None = None,
        option_form: OptionForm | None = None,
        add_error: str | None = None,
        focus: str | None = None,
    ) -> QuestionView:
        index, data = drafts.find_question(self.definition, question_id)
        path = f"questions[{index}]"
        if form is None:
            form = QuestionForm(formdata=None, data=data, prefix=f"q-{question_id}")
            attach_errors(form, self.errors, path)
        jumps = drafts.jump_targets(self.definition, question_id)
        options = []
        for j, option in enumerate(data.get("options") or []):
            prefix = f"o-{question_id}-{option['id']}"
            if option_form is not None and option_form.label.name == f"{prefix}-label":
                opt_form = option_form
            else:
                opt_form = OptionForm.for_option(option, formdata=None, prefix=prefix)
                attach_errors(opt_form, self.errors, f"{path}.options[{j}]", option)
            choices = list(jumps)
            if option.get("jump") and option["jump"] not in dict(choices):
                choices.append((option["jump"], f"{option['jump']} (not a later question)"))
            opt_form.jump.choices = [SelectChoice(value, label) for value, label in choices]
            count = len(data["options"])
            options.append(OptionView(option["id"], j + 1, opt_form, j == 0, j == count - 1))
        type_locked = question_id in self.locked
        if type_locked:
            form.type.render_kw = {"disabled": True}
        for input_field in [*form, *(o.form.label for o in options)]:
            if focus and input_field.id == focus:
                input_field.render_kw = {**(input_field.render_kw or {}), "autofocus": True}
        count = len(self.definition["questions"])
        return QuestionView(
            id=question_id,
            number=index + 1,
            type=data.get("type"),
            form=form,
            options=options,
            errors=self.errors.get(f"{path}.options", []),
            type_locked=type_locked,
            first=index == 0,
            last=index == count - 1,
            add_error=add_error,
        )

    def questions(self, focus: str | None = None) -> list[QuestionView]:
        return [
            self.question(q["id"], focus=focus)
            for q in self.definition.get("questions") or []
            if isinstance(q.get("id"), str)
        ]

    def problems(self) -> list[tuple[str, str]]:
        """(where, message) for every error, for the status bar's summary."""
        return [
            (describe_path(path), message)
            for path, messages in self.errors.items()
            for message in messages
        ]


def describe_path(path: str) -> str:
    """ "questions[1].options[0].traits[2]" -> "Question 2, option 1, traits"."""
    words = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        number = rest.split("]", 1)[0]
        if name == "questions" and number:
            words.append(f"Question {int(number) + 1}")
        elif name == "options" and number:
            words.append(f"option {int(number) + 1}")
        elif name:
            words.append(name.replace("_", " "))
    return ", ".join(words) if words else "Survey"


def page_context(builder: Builder, **extra) -> dict:
    questions = extra.pop("questions", None) or builder.questions()
    if (bound := extra.get("question")) is not None:  # a card re-shown with its form's errors
        questions = [bound if q.id == bound.id else q for q in questions]
    return {
        "builder": builder,
        "survey": builder.survey,
        "details_form": extra.pop("details_form", None) or builder.details_form(),
        "trigger_form": extra.pop("trigger_form", None) or builder.trigger_form(),
        "add_form": extra.pop("add_form", None) or AddQuestionForm(formdata=None, prefix="add"),
        "questions": questions,
        "status_labels": STATUS_LABELS,
        "question_types": QUESTION_TYPES,
        "cooldown_days": get_shop().survey_cooldown_days,
        **extra,
    }


def respond(
    survey: Survey,
    partial: str,
    anchor: str,
    *,
    done: bool = True,
    edited: bool = True,
    **context,
):
    """The answer to a builder POST.

    Without htmx: a redirect back to the builder when `done` (post/redirect/get), else the
    whole page with the form's errors. With htmx: the piece that changed plus the status bar
    out of band; `edited` (the draft changed) fires `survey-changed`, reloading the preview.
    """
    builder = Builder.of(survey)
    if not htmx:
        if done:
            return redirect(url_for("surveys.builder", survey_id=survey.id, _anchor=anchor), 303)
        return render_template("surveys/builder.html", **page_context(builder, **context))
    context = page_context(builder, **context)
    html = render_template(partial, **context)
    if partial != "surveys/_status.html":
        html += render_template("surveys/_status.html", oob=True, **context)
    response = make_response(html)
    if done and edited:
        response.headers["HX-Trigger"] = "survey-changed"
    return response


def save(survey: Survey, definition: dict) -> None:
    manage.save_draft(survey, definition)
    db.session.commit()


# --- the list and new surveys ----------------------------------------------------------------


@bp.get("/")
def index():
    surveys = db.session.scalars(
        select(Survey).order_by(Survey.created_at.desc(), Survey.id.desc())
    )
    return render_template(
        "surveys/index.html",
        surveys=list(surveys),
        counts=manage.response_counts(db.session),
        status_labels=STATUS_LABELS,
        kind_names=KIND_NAMES,
    )


@bp.route("/new", methods=["GET", "POST"])
def new():
    if request.method == "POST":
        key = request.form.get("template", "")
        if key != "blank" and key not in TEMPLATES:
            return render_template(
                "surveys/new.html", templates=TEMPLATES, error="Choose a template from the list."
            ), 400
        survey = manage.create_survey(db.session, None if key == "blank" else key)
        db.session.commit()
        return redirect(url_for("surveys.builder", survey_id=survey.id), 303)
    return render_template("surveys/new.html", templates=TEMPLATES, error=None)


@bp.get("/<int:survey_id>")
def builder(survey_id: int):
    survey = survey_or_404(survey_id)
    return render_template("surveys/builder.html", **page_context(Builder.of(survey)))


# --- the survey as a whole -------------------------------------------------------------------


@bp.post("/<int:survey_id>/details")
def details(survey_id: int):
    survey = survey_or_404(survey_id)
    form = DetailsForm(prefix="details")
    if not form.validate():
        return respond(survey, "surveys/_details.html", "details", done=False, details_form=form)
    save(survey, drafts.set_details(survey.definition, form.title.data, form.thank_you.data))
    return respond(survey, "surveys/_details.html", "details")


@bp.post("/<int:survey_id>/triggers")
def triggers(survey_id: int):
    survey = survey_or_404(survey_id)
    form = TriggerForm(prefix="triggers")
    if not form.validate():
        return respond(survey, "surveys/_triggers.html", "triggers", done=False, trigger_form=form)
    save(survey, drafts.set_triggers(survey.definition, form.to_triggers()))
    return respond(survey, "surveys/_triggers.html", "triggers")


@bp.post("/<int:survey_id>/publish")
def publish(survey_id: int):
    survey = survey_or_404(survey_id)
    try:
        manage.publish(survey)
    except DefinitionInvalid as exc:
        db.session.rollback()
        refused = f"Not published: {len(exc.errors)} problem(s) to fix first, listed below."
        return respond(
            survey, "surveys/_status.html", "status", done=False, publish_refused=refused
        )
    db.session.commit()
    return respond(survey, "surveys/_status.html", "status", edited=False)


@bp.post("/<int:survey_id>/pause")
def pause(survey_id: int):
    survey = survey_or_404(survey_id)
    manage.pause(survey)
    db.session.commit()
    return respond(survey, "surveys/_status.html", "status", edited=False)


@bp.post("/<int:survey_id>/resume")
def resume(survey_id: int):
    survey = survey_or_404(survey_id)
    manage.resume(survey)
    db.session.commit()
    return respond(survey, "surveys/_status.html", "status", edited=False)


# --- questions -------------------------------------------------------------------------------


@bp.post("/<int:survey_id>/questions")
def add_question(survey_id: int):
    survey = survey_or_404(survey_id)
    form = AddQuestionForm(prefix="add")
    if form.validate():
        try:
            draft, question_id = drafts.add_question(
                survey.definition, form.type.data, manage.used_question_ids(db.session, survey)
            )
        except drafts.DraftError as exc:
            form.type.errors = [str(exc)]
        else:
            save(survey, draft)
            focus = f"q-{question_id}-prompt"
            return respond(
                survey,
                "surveys/_questions.html",
                f"question-{question_id}",
                questions=Builder.of(survey).questions(focus=focus),
            )
    return respond(survey, "surveys/_questions.html", "questions", done=False, add_form=form)


@bp.post("/<int:survey_id>/questions/<question_id>")
def update_question(survey_id: int, question_id: str):
    survey = survey_or_404(survey_id)
    question_or_404(survey, question_id)
    form = QuestionForm(prefix=f"q-{question_id}")
    builder = Builder.of(survey)
    if not form.validate():
        view = builder.question(question_id, form=form)
        return respond(
            survey, "surveys/_question.html", f"question-{question_id}", done=False, question=view
        )
    fields = form.to_fields()
    if question_id in builder.locked or not fields.get("type"):
        fields.pop("type")
    save(survey, drafts.update_question(survey.definition, question_id, fields))
    return respond(
        survey,
        "surveys/_question.html",
        f"question-{question_id}",
        question=Builder.of(survey).question(question_id),
    )


@bp.post("/<int:survey_id>/questions/<question_id>/move")
def move_question(survey_id: int, question_id: str):
    survey = survey_or_404(survey_id)
    question_or_404(survey, question_id)
    direction = request.form.get("direction", "")
    if direction not in drafts.DIRECTIONS:
        abort(400, "Move a question up or down.")
    save(survey, drafts.move_question(survey.definition, question_id, direction))
    return respond(survey, "surveys/_questions.html", f"question-{question_id}")


@bp.post("/<int:survey_id>/questions/<question_id>/delete")
def delete_question(survey_id: int, question_id: str):
    survey = survey_or_404(survey_id)
    question_or_404(survey, question_id)
    save(survey, drafts.delete_question(survey.definition, question_id))
    return respond(survey, "surveys/_questions.html", "questions")


# --- options ---------------------------------------------------------------------------------


def option_or_404(survey: Survey, question_id: str, option_id: str) -> None:
    _, question = question_or_404(survey, question_id)
    try:
        drafts.find_option(question, option_id)
    except KeyError:
        abort(404)


def respond_question(survey: Survey, question_id: str, done: bool = True, **view):
    return respond(
        survey,
        "surveys/_question.html",
        f"question-{question_id}",
        done=done,
        question=Builder.of(survey).question(question_id, **view),
    )


@bp.post("/<int:survey_id>/questions/<question_id>/options")
def add_option(survey_id: int, question_id: str):
    survey = survey_or_404(survey_id)
    question_or_404(survey, question_id)
    try:
        draft, option_id = drafts.add_option(
            survey.definition, question_id, manage.used_option_ids(survey, question_id)
        )
    except drafts.DraftError as exc:
        return respond_question(survey, question_id, done=False, add_error=str(exc))
    save(survey, draft)
    return respond_question(survey, question_id, focus=f"o-{question_id}-{option_id}-label")


@bp.post("/<int:survey_id>/questions/<question_id>/options/<option_id>")
def update_option(survey_id: int, question_id: str, option_id: str):
    survey = survey_or_404(survey_id)
    option_or_404(survey, question_id, option_id)
    form = OptionForm(prefix=f"o-{question_id}-{option_id}")
    if not form.validate():
        return respond_question(survey, question_id, done=False, option_form=form)
    draft = drafts.update_option(
        survey.definition,
        question_id,
        option_id,
        label=form.label.data,
        traits=drafts.split_traits(form.traits.data),
        jump=form.jump.data or None,
    )
    save(survey, draft)
    return respond_question(survey, question_id)


@bp.post("/<int:survey_id>/questions/<question_id>/options/<option_id>/move")
def move_option(survey_id: int, question_id: str, option_id: str):
    survey = survey_or_404(survey_id)
    option_or_404(survey, question_id, option_id)
    direction = request.form.get("direction", "")
    if direction not in drafts.DIRECTIONS:
        abort(400, "Move an option up or down.")
    save(survey, drafts.move_option(survey.definition, question_id, option_id, direction))
    return respond_question(survey, question_id)


@bp.post("/<int:survey_id>/questions/<question_id>/options/<option_id>/delete")
def delete_option(survey_id: int, question_id: str, option_id: str):
    survey = survey_or_404(survey_id)
    option_or_404(survey, question_id, option_id)
    save(survey, drafts.delete_option(survey.definition, question_id, option_id))
    return respond_question(survey, question_id)
