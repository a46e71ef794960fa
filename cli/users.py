"""``flask create-admin`` and ``flask ensure-admin``."""

import json
import secrets
import sys

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import func, select

from models import db
from models.users import User

MIN_PASSWORD = 8


def _add_user(email: str, password: str) -> User:
    """Create and commit a user; refuse a duplicate email."""
    email = email.strip().lower()
    if "@" not in email:
        raise click.BadParameter(f"{email!r} is not an email address", param_hint="EMAIL")
    if User.by_email(email):
        raise click.ClickException(f"A user with email {email} already exists.")
    if len(password) < MIN_PASSWORD:
        raise click.ClickException(f"The password must have at least {MIN_PASSWORD} characters.")
    user = User(email=email)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


@click.command("create-admin")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def create_admin(email: str, password_stdin: bool) -> None:
    """Create a panel admin with EMAIL (password from a prompt or --password-stdin)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = _add_user(email, password)
    click.echo(json.dumps({"created": user.email}))


@click.command("ensure-admin")
@click.argument("email", default="admin@example.com")
@with_appcontext
def ensure_admin(email: str) -> None:
    """First run only: create EMAIL with a generated password and print it once."""
    if db.session.scalar(select(func.count()).select_from(User)):
        return
    password = secrets.token_urlsafe(12)
    _add_user(email, password)
    click.echo("")
    click.echo("  First run: an admin was created. Sign in with")
    click.echo(f"    email:    {email}")
    click.echo(f"    password: {password}")
    # make dev is the usual first run: give the command that works from its checkout.
    how = ("make flask ARGS='create-admin EMAIL'" if current_app.config["HOOKLINE_ENV"] == "development"
           else "flask create-admin EMAIL")
    click.echo(f"  (shown once; add more admins with `{how}`)")
    click.echo("")
