"""The owner's segment pages: the list and template gallery, the htmx rule builder with live
counts, a segment's figures and members, and the partials the dashboard and the customer
page include.

Counts and memberships come from refresh runs (webapp.segmentation.segments); these views
only read them, except the builder's live count, which runs the segment's one compiled
statement against the current run. The form <-> tree conversion is webapp.segment_forms.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from webapp.customers import customer_or_404
from webapp.extensions import db, htmx
from webapp.models import RefreshRun, Segment, SegmentRunStat
from webapp.segment_forms import (
    FIELD_GROUPS,
    BuilderChoices,
    EditError,
    FormError,
    SegmentForm,
    allows_other,
    apply_edit,
    child_path,
    depth_of,
    draft_from_stored,
    input_name,
    name_taken,
    node_id,
    parse_action,
    read_tree,
    split_known,
    widget,
)
from webapp.segmentation import compiler, segments
from webapp.segmentation.rules import (
    FIELDS,
    MAX_DEPTH,
    Names,
    RulesError,
    describe,
    empty_tree,
    validate,
    walk,
)

bp = Blueprint("segments", __name__, url_prefix="/segments")

MEMBERS_PAGE = 50
_MAX_ID = 2**31 - 1


# --- reading what the current run computed ---------------------------------------------------


def current() -> tuple[compiler.Scope | None, RefreshRun | None]:
    """The current run's scope and row; (None, None) before the first refresh."""
    scope = segments.live_scope(db.session)
    return scope, (db.session.get(RefreshRun, scope.run_id) if scope else None)


@dataclass(frozen=True)
class SegmentRow:
    segment: Segment
    figures: segments.Figures | None  # None: not computed by the current run yet
    warnings: list[str]


def segment_rows(run: RefreshRun | None) -> list[SegmentRow]:
    """Every segment by name, with its figures at the current run."""
    all_segments = db.session.scalars(select(Segment).order_by(Segment.name)).all()
    names = {segment.id: segment.name for segment in all_segments}
    if run is not None:  # one query; figures() then finds each row in the session
        db.session.scalars(select(SegmentRunStat).where(SegmentRunStat.run_id == run.id)).all()
    rows = []
    for segment in all_segments:
        found = segments.figures(db.session, segment.id, run) if run else None
        notes = segments.warnings(db.session, found, names) if found else []
        rows.append(SegmentRow(segment, found, notes))
    return rows


def rules_in_words(segment: Segment, names: Names) -> tuple[str, str | None]:
    """(the rules in words, the reason they no longer compile or None)."""
    try:
        return describe(validate(segment.rules), names), None
    except RulesError as exc:
        return "", str(exc)


def changed_since(segment: Segment, run: RefreshRun | None) -> bool:
    """Edited after the run began: its members there may follow the old rules."""
    return run is not None and segment.updated_at > run.started_at


# --- the size chart ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    members: int
    run: RefreshRun


@dataclass(frozen=True)
class SizeChart:
    width: int
    height: int
    top: int  # the members the tallest bar stands for
    bars: list[Bar]


CHART_MIN_SLOTS = 6  # so that the first few refreshes do not draw one wall-wide bar


def size_chart(history: list[tuple[RefreshRun, int]], width=600, height=160) -> SizeChart:
    """Bars of a segment's members at each refresh, oldest first, scaled to the largest."""
    top = max((members for _, members in history), default=0)
    slot = width / max(len(history), CHART_MIN_SLOTS)
    bars = []
    for i, (run, members) in enumerate(history):
        tall = height * members / top if top else 0
        bars.append(Bar(i * slot + slot * 0.1, height - tall, slot * 0.8, tall, members, run))
    return SizeChart(width, height, top, bars)


# --- the builder -------------------------------------------------------------------------------


def tree_errors(draft: dict) -> tuple[dict | None, dict[str, str]]:
    """(the cleaned tree or None, {path: message}) for a draft."""
    try:
        return validate(draft), {}
    except RulesError as exc:
        return None, {exc.path: exc.args[0]}


@dataclass
class Live:
    """The builder's count: members now, sendable, a sample, against the current run."""

    scope: compiler.Scope | None
    run: RefreshRun | None
    count: segments.LiveCount | None
    error: str | None  # why there is no count

    @property
    def share(self) -> float | None:
        customers = ((self.run.counts or {}).get("customers") or 0) if self.run else 0
        return self.count.members / customers if self.count and customers else None


def live_for(tree: dict | None, errors: dict[str, str]) -> Live:
    scope, run = current()
    if scope is None:
        return Live(None, None, None, None)
    if tree is None:
        path, message = next(iter(errors.items()))
        where = f"rule {path}" if path else "the rules"
        return Live(scope, run, None, f"Fix {where} to count members: {message}")
    return Live(scope, run, segments.live_count(db.session, tree, scope), None)


def builder_context(
    form: SegmentForm, draft: dict, segment: Segment | None, errors=None, focus=None
) -> dict:
    tree, found = tree_errors(draft)
    errors = {**found, **(errors or {})}
    _, run = current()
    return {
        "form": form,
        "draft": draft,
        "segment": segment,
        "errors": errors,
        "focus": focus,
        "live": live_for(tree, errors),
        "choices": BuilderChoices(db.session, run),
        "action_url": request.path,
    }


# Names the templates use to draw the tree.
@bp.context_processor
def _builder_helpers() -> dict:
    return {
        "FIELDS": FIELDS,
        "FIELD_GROUPS": FIELD_GROUPS,
        "MAX_DEPTH": MAX_DEPTH,
        "input_name": input_name,
        "node_id": node_id,
        "child_path": child_path,
        "depth_of": depth_of,
        "widget": widget,
        "allows_other": allows_other,
        "split_known": split_known,
    }


def _builder(segment: Segment | None):
    form = SegmentForm(session=db.session, segment_id=segment.id if segment else None, obj=segment)
    if request.method == "GET":
        draft = draft_from_stored(segment.rules) if segment else empty_tree()
        return render_template("segments/builder.html", **builder_context(form, draft, segment))
    try:
        draft = read_tree(request.form)
        verb, path = parse_action(request.form.get("action", "refresh"))
    except FormError as exc:
        abort(400, str(exc))
    if verb == "save":
        return _save(form, draft, segment)
    errors, focus = {}, None
    if verb != "refresh":
        try:
            focus = apply_edit(draft, verb, path)
        except FormError as exc:
            abort(400, str(exc))
        except EditError as exc:
            errors = {exc.path: str(exc)}
    context = builder_context(form, draft, segment, errors, focus)
    if htmx and htmx.target == "rule-editor":
        # A structural edit changes the count too; a reshaping select's count comes from
        # the editor's own live trigger.
        return render_template("segments/_editor.html", with_live=verb != "refresh", **context)
    return render_template("segments/builder.html", **context)


def _save(form: SegmentForm, draft: dict, segment: Segment | None):
    tree, errors = tree_errors(draft)
    if form.validate() and tree is not None:
        if segment is None:
            segment = segments.create_segment(
                db.session, form.name.data, tree, form.description.data or ""
            )
        else:
            segment.name, segment.description, segment.rules = (
                form.name.data,
                form.description.data or "",
                tree,
            )
        try:
            db.session.commit()
        except IntegrityError:  # the same name saved by someone else meanwhile
            db.session.rollback()
            form.name.errors = [f"There is already a segment called {form.name.data!r}."]
        else:
            flash(f"Saved {segment.name}. Its members are recomputed at the next refresh.")
            return redirect(url_for("segments.show", segment_id=segment.id), 303)
    context = builder_context(form, draft, segment if segment and segment.id else None, errors)
    return render_template("segments/builder.html", **context), 422


# --- views ---------------------------------------------------------------------------------


def _segment_or_404(segment_id: int) -> Segment:
    segment = db.session.get(Segment, segment_id)
    if segment is None:
        abort(404, "There is no such segment.")
    return segment


def _index(error: str | None = None, status: int = 200):
    scope, run = current()
    rows = segment_rows(run)
    have = {row.segment.name.lower() for row in rows}
    return render_template(
        "segments/index.html",
        rows=rows,
        run=run,
        templates=segments.shop_templates(db.session),
        have=have,
        error=error,
    ), status


@bp.get("/")
def index():
    return _index()


@bp.post("/templates")
def add_template():
    key = request.form.get("template", "")
    template = next((t for t in segments.shop_templates(db.session) if t.key == key), None)
    if template is None:
        return _index("Choose a template from the gallery.", 400)
    if name_taken(db.session, template.name):
        return _index(
            f"There is already a segment called {template.name!r}: rename it to add the "
            "template again.",
            409,
        )
    segment = segments.create_segment(
        db.session, template.name, template.rules, template.description, template.key
    )
    db.session.commit()
    flash(f"Added {segment.name}. Its members are computed at the next refresh.")
    return redirect(url_for("segments.show", segment_id=segment.id), 303)


@bp.post("/templates/all")
def add_all_templates():
    added = segments.install_templates(db.session)
    if added:
        flash(f"Added {len(added)} segments from templates; members come with the next refresh.")
    else:
        flash("Every template is already one of your segments.")
    return redirect(url_for("segments.index"), 303)


@bp.route("/new", methods=["GET", "POST"])
def new():
    return _builder(None)


@bp.route("/<int:segment_id>/edit", methods=["GET", "POST"])
def edit(segment_id: int):
    return _builder(_segment_or_404(segment_id))


@bp.post("/live")
def live():
    """The builder's count, sample and rule messages for the rules as posted."""
    try:
        draft = read_tree(request.form)
    except FormError as exc:
        abort(400, str(exc))
    tree, errors = tree_errors(draft)
    paths = [path for path, _ in walk(draft)]
    return render_template(
        "segments/_live.html", live=live_for(tree, errors), errors=errors, oob_paths=paths
    )


def _after_param() -> int | None:
    raw = request.args.get("after")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or not 0 < int(raw) <= _MAX_ID:
        abort(400, "after must be the id of a customer in the list.")
    return int(raw)


@bp.get("/<int:segment_id>")
def show(segment_id: int):
    segment = _segment_or_404(segment_id)
    after = _after_param()
    scope, run = current()
    members, more = [], False
    if run is not None:
        page = segments.member_page(db.session, segment.id, run.id, after, MEMBERS_PAGE + 1)
        members, more = page[:MEMBERS_PAGE], len(page) > MEMBERS_PAGE
    context = {"segment": segment, "run": run, "members": members, "more": more, "after": after}
    if htmx and htmx.target == "members" and not htmx.history_restore_request:
        return render_template("segments/_members.html", **context)
    names = BuilderChoices(db.session, run).names
    words, broken = rules_in_words(segment, names)
    found = segments.figures(db.session, segment.id, run) if run else None
    response = Response(
        render_template(
            "segments/show.html",
            words=words,
            broken=broken,
            figures=found,
            warnings=segments.warnings(db.session, found) if found else [],
            chart=size_chart(segments.history(db.session, segment.id)),
            stale=found is not None and changed_since(segment, run),
            **context,
        )
    )
    response.vary.add("HX-Request")
    return response


@bp.get("/<int:segment_id>/count")
def count(segment_id: int):
    """The segment's members now (lazy-loaded on its page: the count can take a moment)."""
    segment = _segment_or_404(segment_id)
    tree, errors = tree_errors(segment.rules)
    context = {"segment": segment, "live": live_for(tree, errors), "errors": errors}
    template = "segments/_live.html" if htmx else "segments/count.html"
    response = Response(render_template(template, oob_paths=[], **context))
    response.vary.add("HX-Request")
    return response


@bp.route("/<int:segment_id>/delete", methods=["GET", "POST"])
def delete(segment_id: int):
    segment = _segment_or_404(segment_id)
    if request.method == "GET":
        return render_template("segments/delete.html", segment=segment)
    name = segment.name
    segments.delete_segment(db.session, segment)
    flash(f"Deleted {name}.")
    return redirect(url_for("segments.index"), 303)


@dataclass(frozen=True)
class CustomerSegment:
    segment: Segment
    member: bool
    counted: bool  # the current run computed this segment (else it is newer than the run)
    reasons: list[segments.Reason]
    broken: str | None  # the rules no longer compile
    stale: bool


@bp.get("/for-customer/<int:customer_id>")
def for_customer(customer_id: int):
    """Every segment for one customer, theirs first, each with why: a fragment."""
    customer = customer_or_404(customer_id)
    scope, run = current()
    rows: list[CustomerSegment] = []
    if scope is not None and customer.erased_at is None:
        names = BuilderChoices(db.session, run).names
        theirs = {s.id for s in segments.customer_segments(db.session, customer.id, run.id)}
        counted = set(
            db.session.scalars(
                select(SegmentRunStat.segment_id).where(SegmentRunStat.run_id == run.id)
            )
        )
        for segment in db.session.scalars(select(Segment).order_by(Segment.name)):
            try:
                reasons = segments.explain(db.session, segment, customer.id, scope, names)
                broken = None
            except RulesError as exc:
                reasons, broken = [], str(exc)
            known = segment.id in counted
            rows.append(
                CustomerSegment(
                    segment,
                    segment.id in theirs,
                    known,
                    reasons,
                    broken,
                    known and changed_since(segment, run),
                )
            )
        rows.sort(key=lambda row: not row.member)  # stable: by name within each half
    back = url_for("customers.show", customer_id=customer.id)
    return fragment(
        "segments/_for_customer.html",
        f"Segments of customer #{customer.id}",
        (back, "Customer"),
        customer=customer,
        rows=rows,
        run=run,
        scope=scope,
    )


@bp.get("/summary")
def summary():
    """Segments with members and share at the current run: a fragment for the dashboard."""
    _, run = current()
    return fragment(
        "segments/_summary.html",
        "Segments at a glance",
        (url_for("web.home"), "Home"),
        rows=segment_rows(run),
        run=run,
    )


def fragment(template: str, title: str, back: tuple[str, str], **context) -> Response:
    """A fragment for htmx to include; opened by a plain link, the same inside a page."""
    if htmx:
        html = render_template(template, **context)
    else:
        back_url, back_label = back
        html = render_template(
            "segments/fragment_page.html",
            fragment=template,
            title=title,
            back_url=back_url,
            back_label=back_label,
            **context,
        )
    response = Response(html)
    response.vary.add("HX-Request")
    return response
