"""Catalogue pages: products, the category -> craft table, and the category rules.

Each page works as plain forms and links; htmx swaps only the piece that changed (a table
row, the rules table, the product results), which the page itself includes.
"""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy import func, or_, select
from wtforms import SelectField, StringField
from wtforms.fields import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from webapp.catalog import (
    RULE_FIELDS,
    RULE_TARGETS,
    TIERS,
    crafts_in_use,
    move_rule,
    next_rule_position,
    normalise_name,
    reapply_rules,
    rename_category,
)
from webapp.extensions import db, htmx
from webapp.models import Category, CategoryRule, Product, Task
from webapp.tasks import enqueue, handler

bp = Blueprint("catalog", __name__, url_prefix="/catalog")

PAGE_SIZE = 50
MAX_ID = 2**63 - 1  # what both databases can bind; larger numbers in a URL are not ours


def get_or_404(model, ident: int | None):
    row = db.session.get(model, ident) if ident is not None and 0 < ident <= MAX_ID else None
    if row is None:
        abort(404)
    return row


def normalised(value: str | None) -> str | None:
    return normalise_name(value) if isinstance(value, str) else value


class NoCsrfForm(FlaskForm):
    """CSRFProtect already checks every POST (form field or the htmx header), so the many
    small row forms on one page need no token of their own."""

    class Meta:
        csrf = False


class CategoryForm(NoCsrfForm):
    name = StringField(
        "Category",
        filters=[normalised],
        validators=[DataRequired("Enter a category name."), Length(max=80)],
    )
    craft = StringField("Craft", filters=[normalised], validators=[Optional(), Length(max=80)])

    def __init__(self, *args, category_id: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.category_id = category_id

    def validate_name(self, field) -> None:
        clash = db.session.scalar(select(Category.id).where(Category.name == field.data))
        if clash is not None and clash != self.category_id:
            raise ValidationError(f"There is already a category named {field.data!r}.")


class RuleForm(NoCsrfForm):
    field = SelectField(
        "Looks at",
        choices=[SelectChoice(v, label) for v, label in RULE_FIELDS.items()],
        validate_choice=False,
    )
    pattern = StringField(
        "Contains",
        filters=[lambda v: v.strip() if isinstance(v, str) else v],
        validators=[DataRequired("Enter the text to look for."), Length(max=200)],
    )
    target = SelectField(
        "Sets", choices=[SelectChoice(t, t) for t in RULE_TARGETS], validate_choice=False
    )
    value = StringField(
        "To",
        filters=[normalised],
        validators=[DataRequired("Enter the category or tier to set."), Length(max=80)],
    )

    def validate_field(self, field) -> None:
        if field.data not in RULE_FIELDS:
            raise ValidationError("Choose title or tags, title, tags, type or SKU.")

    def validate_target(self, field) -> None:
        if field.data not in RULE_TARGETS:
            raise ValidationError("Choose category or tier.")

    def validate_value(self, field) -> None:
        if self.target.data == "tier" and field.data not in TIERS:
            raise ValidationError(f"A tier is one of: {', '.join(TIERS)}.")
        if self.target.data == "category" and field.data:
            exists = db.session.scalar(select(Category.id).where(Category.name == field.data))
            if exists is None:
                raise ValidationError(
                    f"There is no category {field.data!r}: add it under Categories first."
                )


def htmx_target() -> str | None:
    return htmx.target if htmx else None


# --- products --------------------------------------------------------------------------


@bp.route("/")
def index():
    q = request.args.get("q", "").strip()
    category = request.args.get("category", "").strip()
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    query = select(Product)
    if q:
        query = query.where(
            or_(
                Product.title.icontains(q, autoescape=True),
                Product.sku.icontains(q, autoescape=True),
            )
        )
    if category == "-":
        query = query.where(Product.category.is_(None))
    elif category:
        query = query.where(Product.category == category)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    page = min(page, max(1, -(-total // PAGE_SIZE)))  # a page past the end shows the last
    products = db.session.scalars(
        query.order_by(Product.title, Product.sku).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
    ).all()
    context = {
        "products": products,
        "q": q,
        "category": category,
        "page": page,
        "total": total,
        "has_next": page * PAGE_SIZE < total,
        "categories": db.session.scalars(select(Category.name).order_by(Category.name)).all(),
    }
    if htmx_target() == "product-results":
        return render_template("catalog/_products.html", **context)
    return render_template("catalog/index.html", **context)


# --- categories ------------------------------------------------------------------------


def categories_context(**extra) -> dict:
    counts = dict(
        db.session.execute(select(Product.category, func.count()).group_by(Product.category)).all()
    )
    return {
        "categories": db.session.scalars(select(Category).order_by(Category.name)).all(),
        "counts": counts,
        "crafts": crafts_in_use(db.session),
        "add_form": extra.pop("add_form", None) or CategoryForm(formdata=None),
        **extra,
    }


def category_or_404(category_id: int) -> Category:
    return get_or_404(Category, category_id)


def category_edit_form(category: Category, formdata=None) -> CategoryForm:
    return CategoryForm(
        formdata=formdata,
        obj=category,
        prefix=f"category{category.id}",
        category_id=category.id,
    )


@bp.route("/categories")
def categories():
    editing = request.args.get("edit", type=int)
    edit_form = None
    if editing is not None:
        edit_form = category_edit_form(category_or_404(editing))
    return render_template(
        "catalog/categories.html", **categories_context(editing=editing, edit_form=edit_form)
    )


@bp.post("/categories")
def add_category():
    form = CategoryForm()
    if form.validate():
        db.session.add(Category(name=form.name.data, craft=form.craft.data or None))
        db.session.commit()
        if not htmx:
            return redirect(url_for("catalog.categories"), 303)
        form = CategoryForm(formdata=None)
    template = "catalog/_categories.html" if htmx else "catalog/categories.html"
    return render_template(template, **categories_context(add_form=form))


@bp.get("/categories/<int:category_id>/edit")
def edit_category(category_id: int):
    category = category_or_404(category_id)
    if not htmx:
        return redirect(url_for("catalog.categories", edit=category_id))
    return render_category_row(category, form=category_edit_form(category))


@bp.get("/categories/<int:category_id>")
def category_row(category_id: int):
    category = category_or_404(category_id)
    if not htmx:
        return redirect(url_for("catalog.categories"))
    return render_category_row(category)


def render_category_row(category: Category, form: CategoryForm | None = None) -> str:
    count = db.session.scalar(
        select(func.count()).select_from(Product).where(Product.category == category.name)
    )
    return render_template(
        "catalog/_category_row.html",
        category=category,
        count=count,
        form=form,
        crafts=crafts_in_use(db.session),
    )


@bp.post("/categories/<int:category_id>")
def update_category(category_id: int):
    category = category_or_404(category_id)
    form = category_edit_form(category, formdata=request.form)
    if form.validate():
        rename_category(db.session, category, form.name.data)
        category.craft = form.craft.data or None
        db.session.commit()
        if htmx:
            return render_category_row(category)
        return redirect(url_for("catalog.categories"), 303)
    if htmx:
        return render_category_row(category, form=form)
    return render_template(
        "catalog/categories.html",
        **categories_context(editing=category_id, edit_form=form),
    )


@bp.post("/categories/<int:category_id>/delete")
def delete_category(category_id: int):
    category = category_or_404(category_id)
    db.session.delete(category)
    db.session.commit()
    if htmx:
        return ""
    return redirect(url_for("catalog.categories"), 303)


# --- rules -----------------------------------------------------------------------------


def rules_context(**extra) -> dict:
    task_id = extra.pop("task_id", None) or request.args.get("task", type=int)
    return {
        "rules": db.session.scalars(
            select(CategoryRule).order_by(CategoryRule.position, CategoryRule.id)
        ).all(),
        "field_labels": RULE_FIELDS,
        "categories": db.session.scalars(select(Category.name).order_by(Category.name)).all(),
        "tiers": TIERS,
        "add_form": extra.pop("add_form", None) or RuleForm(formdata=None),
        "task": db.session.get(Task, task_id) if task_id and 0 < task_id <= MAX_ID else None,
        **extra,
    }


def rule_or_404(rule_id: int) -> CategoryRule:
    return get_or_404(CategoryRule, rule_id)


def rule_edit_form(rule: CategoryRule, formdata=None) -> RuleForm:
    return RuleForm(formdata=formdata, obj=rule, prefix=f"rule{rule.id}")


def render_rules(**extra):
    """The rules table for htmx, else the whole page."""
    template = "catalog/_rules.html" if htmx else "catalog/rules.html"
    return render_template(template, **rules_context(**extra))


@bp.route("/rules")
def rules():
    editing = request.args.get("edit", type=int)
    edit_form = rule_edit_form(rule_or_404(editing)) if editing is not None else None
    return render_template(
        "catalog/rules.html", **rules_context(editing=editing, edit_form=edit_form)
    )


@bp.post("/rules")
def add_rule():
    form = RuleForm()
    if form.validate():
        rule = CategoryRule(position=next_rule_position(db.session))
        form.populate_obj(rule)
        db.session.add(rule)
        db.session.commit()
        if not htmx:
            return redirect(url_for("catalog.rules"), 303)
        form = RuleForm(formdata=None)
    return render_rules(add_form=form)


@bp.get("/rules/<int:rule_id>/edit")
def edit_rule(rule_id: int):
    rule = rule_or_404(rule_id)
    if not htmx:
        return redirect(url_for("catalog.rules", edit=rule_id))
    return render_rule_row(rule, form=rule_edit_form(rule))


@bp.get("/rules/<int:rule_id>")
def rule_row(rule_id: int):
    rule = rule_or_404(rule_id)
    if not htmx:
        return redirect(url_for("catalog.rules"))
    return render_rule_row(rule)


def render_rule_row(rule: CategoryRule, form: RuleForm | None = None) -> str:
    rules = db.session.scalars(
        select(CategoryRule.id).order_by(CategoryRule.position, CategoryRule.id)
    ).all()
    return render_template(
        "catalog/_rule_row.html",
        rule=rule,
        form=form,
        number=rules.index(rule.id) + 1,
        first=rules[0] == rule.id,
        last=rules[-1] == rule.id,
        field_labels=RULE_FIELDS,
        categories=db.session.scalars(select(Category.name).order_by(Category.name)).all(),
        tiers=TIERS,
    )


@bp.post("/rules/<int:rule_id>")
def update_rule(rule_id: int):
    rule = rule_or_404(rule_id)
    form = rule_edit_form(rule, formdata=request.form)
    if form.validate():
        form.populate_obj(rule)
        db.session.commit()
        if htmx:
            return render_rule_row(rule)
        return redirect(url_for("catalog.rules"), 303)
    if htmx:
        return render_rule_row(rule, form=form)
    return render_template("catalog/rules.html", **rules_context(editing=rule_id, edit_form=form))


@bp.post("/rules/<int:rule_id>/delete")
def delete_rule(rule_id: int):
    db.session.delete(rule_or_404(rule_id))
    db.session.commit()
    if not htmx:
        return redirect(url_for("catalog.rules"), 303)
    return render_rules()


@bp.post("/rules/<int:rule_id>/move")
def move(rule_id: int):
    rule_or_404(rule_id)
    move_rule(db.session, rule_id, request.form.get("direction", ""))
    db.session.commit()
    if not htmx:
        return redirect(url_for("catalog.rules"), 303)
    return render_rules()


@bp.post("/rules/apply")
def apply_rules():
    task = enqueue("apply_category_rules", {})
    if htmx:
        return render_template("catalog/_task.html", task=task)
    return redirect(url_for("catalog.rules", task=task.id), 303)


@bp.get("/tasks/<int:task_id>")
def task_status(task_id: int):
    task = get_or_404(Task, task_id)
    if task.kind != "apply_category_rules":
        abort(404)
    if not htmx:
        return redirect(url_for("catalog.rules", task=task_id))
    return render_template("catalog/_task.html", task=task)


@handler("apply_category_rules")
def run_apply_category_rules(task, progress) -> dict:
    progress(0, 1, "Re-applying the category rules")
    result = reapply_rules(db.session)
    progress(1, 1, "Done")
    return result
