"""Operator commands (``flask ...``); each prints JSON where it prints data."""

from cli import dev, users, webhook


def init_app(app) -> None:
    """Register every command group on the app's CLI."""
    app.cli.add_command(users.create_admin)
    app.cli.add_command(users.ensure_admin)
    app.cli.add_command(webhook.webhook)
    app.cli.add_command(dev.dev)
