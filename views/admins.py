"""Settings > Admins: who can sign in to the panel, and your own password.

Every form is CSRF-protected (Flask-WTF); every change is confirmed by a
message, and removing an admin asks "Yes, remove" first. An admin cannot
remove themselves, so the panel always keeps at least one admin.
"""

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user, login_required, login_user
from sqlalchemy import func, select

from forms import AddAdminForm, ChangePasswordForm, ConfirmForm
from models import db
from models.users import User

bp = Blueprint("admins", __name__, url_prefix="/settings/admins")


@bp.before_request
@login_required
def require_login():
    """Every page of this blueprint needs a signed-in admin."""


def _render(add_form=None, password_form=None, status=200):
    admins = db.session.scalars(select(User).order_by(User.email)).all()
    return render_template("admins/admins.html", admins=admins, add_form=add_form or AddAdminForm(formdata=None),
                           password_form=password_form or ChangePasswordForm(formdata=None),
                           confirm_form=ConfirmForm()), status


@bp.get("")
def admins():
    """List the admins, with the add form and your password form."""
    return _render()


@bp.post("")
def add():
    """Add an admin; nothing is written unless the email is new and the password long enough."""
    form = AddAdminForm()
    if form.validate():
        email = form.email.data.strip().lower()
        if User.by_email(email) is not None:
            form.email.errors.append(f"{email} is already an admin.")
        else:
            user = User(email=email)
            user.set_password(form.password.data)
            db.session.add(user)
            db.session.commit()
            flash(f"{email} is now an admin and can sign in with the password you chose.", "success")
            return redirect(url_for("admins.admins"))
    flash("No admin was added: please correct the fields marked below.", "danger")
    return _render(add_form=form, status=400)


@bp.post("/<int:user_id>/remove")
def remove(user_id: int):
    """Remove another admin (never yourself, never the last one)."""
    if not ConfirmForm().validate():
        flash("The form expired; nothing was removed.", "danger")
        return redirect(url_for("admins.admins"))
    user = db.session.get(User, user_id)
    if user is None:
        flash("That admin no longer exists.", "warning")
    elif user.id == current_user.id:
        flash("You cannot remove yourself: ask another admin to do it.", "danger")
    elif db.session.scalar(select(func.count()).select_from(User)) <= 1:
        flash("The panel needs at least one admin.", "danger")
    else:
        db.session.delete(user)
        db.session.commit()
        flash(f"{user.email} was removed and can no longer sign in.", "success")
    return redirect(url_for("admins.admins"))


@bp.post("/password")
def change_password():
    """Change your own password; your other sessions end (see User.end_other_sessions)."""
    form = ChangePasswordForm()
    if form.validate():
        if not current_user.check_password(form.current.data):
            form.current.errors.append("That is not your current password.")
        else:
            current_user.set_password(form.new.data)
            current_user.end_other_sessions()
            db.session.commit()
            login_user(current_user)  # this session goes on with the new token
            flash("Your password was changed. Your other sessions were signed out.", "success")
            return redirect(url_for("admins.admins"))
    flash("Your password was not changed: please correct the fields marked below.", "danger")
    return _render(password_form=form, status=400)
