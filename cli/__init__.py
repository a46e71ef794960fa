"""Operator commands (``flask ...``); each prints JSON where it prints data."""

from cli import dev, devtools, tokens, users, webhook, worker


def init_app(app) -> None:
    """Register every command group on the app's CLI."""
    app.cli.add_command(users.create_admin)
    app.cli.add_command(users.ensure_admin)
    app.cli.add_command(webhook.webhook)
    app.cli.add_command(dev.dev)
    app.cli.add_command(worker.worker)
    app.cli.add_command(tokens.tokens)
    app.cli.add_command(devtools.events_cli)
    app.cli.add_command(devtools.simulate_call)
