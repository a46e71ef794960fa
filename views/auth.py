"""Sign in and out of the panel (Flask-Login, email + password)."""

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, current_user, login_required, login_user, logout_user

from forms import ConfirmForm, LoginForm
from views import throttle
from models import db
from models.users import User

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to open the panel."
login_manager.login_message_category = "info"


def init_app(app) -> None:
    """Wire Flask-Login into the app."""
    login_manager.init_app(app)


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """Flask-Login's hook: the user stored in the session cookie."""
    return db.session.get(User, int(user_id))


def _safe_next(target: str | None) -> str:
    """Only follow ?next= to a path on this site (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("settings.webhook")


@bp.route("/")
@login_required
def index():
    """The panel's home is the Custom Webhook page."""
    return redirect(url_for("settings.webhook"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the sign-in form; sign in on a valid email and password."""
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        email, address = form.email.data, request.remote_addr or "unknown"
        wait = throttle.retry_after(email, address)
        if wait:
            minutes = max(1, round(wait / 60))
            form.password.errors.append(
                f"Too many sign-in attempts. Try again in {minutes} minute{'s' if minutes > 1 else ''}.")
            return render_template("auth/login.html", form=form), 429, {"Retry-After": str(wait)}
        user = User.by_email(email)
        if user is not None and user.check_password(form.password.data):
            throttle.record_success(email)
            login_user(user, remember=form.remember.data)
            return redirect(_safe_next(request.args.get("next")))
        throttle.record_failure(email, address)
        # One message for both cases: do not reveal which emails exist.
        form.password.errors.append("Wrong email or password.")
    if form.errors:
        status = 400
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Sign out (a POST with CSRF, so another site cannot sign you out)."""
    if ConfirmForm().validate_on_submit():
        logout_user()
        flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
