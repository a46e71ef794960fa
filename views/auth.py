"""Sign in and out of the panel (Flask-Login, email + password).

Cookies carry the user's session token, not the user's id (``User.get_id``),
and signing out rotates it: a session or remember-me cookie captured before
a sign-out opens nothing after it.
"""

import logging
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from extensions import login_manager
from forms import ConfirmForm, LoginForm
from views import throttle
from models import db
from models.users import User

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)


@login_manager.user_loader
def load_user(session_token: str) -> User | None:
    """Flask-Login's hook: the user whose current session token the cookie holds."""
    return User.by_session_token(session_token)


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
        # Counted before the password is checked, so parallel guesses cannot slip past.
        wait = throttle.hit(email, address)
        if wait:
            minutes = max(1, round(wait / 60))
            form.password.errors.append(
                f"Too many sign-in attempts. Try again in {minutes} minute{'s' if minutes > 1 else ''}.")
            return render_template("auth/login.html", form=form), 429, {"Retry-After": str(wait)}
        user = User.by_email(email)
        correct = user is not None and user.check_password(form.password.data)
        log.info("sign-in attempt for %r from %s: %s", email, address,
                 "signed in" if correct else "wrong email or password")
        if correct:
            throttle.record_success(email, address)
            login_user(user, remember=form.remember.data)
            return redirect(_safe_next(request.args.get("next")))
        # One message for both cases: do not reveal which emails exist.
        form.password.errors.append("Wrong email or password.")
    if form.errors:
        status = 400
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Sign out everywhere (a POST with CSRF, so another site cannot sign you out)."""
    if ConfirmForm().validate_on_submit():
        current_user.end_all_sessions()
        db.session.commit()
        logout_user()
        flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
