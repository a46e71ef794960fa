"""``flask tokens create|revoke``: API tokens for the telephony engine."""

import json

import click
from flask.cli import AppGroup
from sqlalchemy import select

from models import db
from models.users import ApiToken

tokens = AppGroup("tokens", help="API tokens for POST /api/v1/events.")


@tokens.command("create")
@click.argument("name")
def create(name: str) -> None:
    """Create token NAME and print it once (only its hash is stored)."""
    if db.session.scalar(select(ApiToken).where(ApiToken.name == name)):
        raise click.ClickException(f"A token named {name!r} exists; revoke it first.")
    token, plain = ApiToken.issue(name)
    db.session.add(token)
    db.session.commit()
    click.echo(json.dumps({"name": name, "token": plain,
                           "note": "Store this token now; it will not be shown again."}, indent=2))


@tokens.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Delete token NAME; requests using it get 401 from now on."""
    token = db.session.scalar(select(ApiToken).where(ApiToken.name == name))
    if token is None:
        raise click.ClickException(f"No token named {name!r}.")
    db.session.delete(token)
    db.session.commit()
    click.echo(json.dumps({"revoked": name}))
