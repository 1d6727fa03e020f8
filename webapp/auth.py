"""Setup of the first owner, login and logout, and the login gate on every owner page."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import delete, select
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Email, EqualTo, Length

from webapp.extensions import db, login_manager
from webapp.models import LoginFailure, User

bp = Blueprint("auth", __name__)

MIN_PASSWORD = 10


def public(view: Callable) -> Callable:
    """Mark a view as reachable without an owner login (it protects itself otherwise)."""
    view.is_public = True  # type: ignore[attr-defined]
    return view


def strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


def normalise_email(email: str) -> str:
    return email.strip().lower()


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id))


def require_login():
    """Deny by default: every endpoint needs a login unless its view is marked @public."""
    if request.endpoint is None or request.endpoint == "static":
        return None
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "is_public", False):
        return None
    if not owner_exists():
        return redirect(url_for("auth.setup"))
    if current_user.is_authenticated:
        return None
    login_url = url_for("auth.login", next=request.full_path.rstrip("?"))
    if request.headers.get("HX-Request"):
        return "", 401, {"HX-Redirect": login_url}
    return redirect(login_url)


def owner_exists() -> bool:
    # Once an owner exists it always will: remember it for the life of the process.
    if current_app.extensions.get("patchwork_owner_exists"):
        return True
    exists = db.session.scalar(select(User.id).limit(1)) is not None
    if exists:
        current_app.extensions["patchwork_owner_exists"] = True
    return exists


def create_user(email: str, password: str, role: str = "staff") -> User:
    user = User(
        email=normalise_email(email), password_hash=generate_password_hash(password), role=role
    )
    db.session.add(user)
    db.session.commit()
    return user


class SetupForm(FlaskForm):
    email = EmailField(
        "Email", filters=[strip], validators=[DataRequired(), Email(check_deliverability=False)]
    )
    password = PasswordField(
        "Password",
        validators=[
            DataRequired(),
            Length(min=MIN_PASSWORD, message=f"At least {MIN_PASSWORD} characters."),
        ],
    )
    confirm = PasswordField(
        "Repeat password", validators=[EqualTo("password", message="The passwords differ.")]
    )


class LoginForm(FlaskForm):
    email = EmailField(
        "Email", filters=[strip], validators=[DataRequired(), Email(check_deliverability=False)]
    )
    password = PasswordField("Password", validators=[DataRequired()])


@bp.route("/setup", methods=["GET", "POST"])
@public
def setup():
    if owner_exists():
        return redirect(url_for("auth.login"))
    form = SetupForm()
    if form.validate_on_submit():
        user = create_user(form.email.data, form.password.data, role="owner")
        login_user(user)
        flash("Welcome to Patchwork. Start by importing your products and orders.", "success")
        return redirect(url_for("web.home"))
    return render_template("auth/setup.html", form=form)


def seconds_until_allowed(email: str, ip: str) -> int:
    """0 when a login may be tried now, else the seconds until the oldest failure expires."""
    window = timedelta(seconds=current_app.config["LOGIN_WINDOW_SECONDS"])
    limit = current_app.config["LOGIN_MAX_FAILURES"]
    now = datetime.now(UTC)
    since = now - window
    waits = []
    for column, value in ((LoginFailure.email, email), (LoginFailure.ip, ip)):
        recent = db.session.scalars(
            select(LoginFailure.at)
            .where(column == value, LoginFailure.at > since)
            .order_by(LoginFailure.at.desc())
            .limit(limit)
        ).all()
        if len(recent) >= limit:
            waits.append((recent[-1] + window - now).total_seconds())
    return max(1, int(max(waits)) + 1) if waits else 0


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    if not owner_exists():
        return redirect(url_for("auth.setup"))
    form = LoginForm()
    if form.validate_on_submit():
        email = normalise_email(form.email.data)
        ip = request.remote_addr or "unknown"
        wait = seconds_until_allowed(email, ip)
        if wait:
            minutes = (wait + 59) // 60
            return (
                render_template("auth/login.html", form=form, wait_minutes=minutes),
                429,
                {"Retry-After": str(wait)},
            )
        user = db.session.scalar(select(User).where(User.email == email))
        if user is not None and check_password_hash(user.password_hash, form.password.data):
            db.session.execute(delete(LoginFailure).where(LoginFailure.email == email))
            db.session.commit()
            login_user(user)
            return redirect(safe_next(request.args.get("next")))
        window = timedelta(seconds=current_app.config["LOGIN_WINDOW_SECONDS"])
        db.session.execute(delete(LoginFailure).where(LoginFailure.at < datetime.now(UTC) - window))
        db.session.add(LoginFailure(email=email, ip=ip))
        db.session.commit()
        form.password.errors.append("Wrong email or password.")
    return render_template("auth/login.html", form=form)


def safe_next(target: str | None) -> str:
    """Only follow a local path after login, never another site."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("web.home")


@bp.route("/logout", methods=["POST"])
def logout():
    logout_user()
    flash("You are logged out.", "success")
    return redirect(url_for("auth.login"))
