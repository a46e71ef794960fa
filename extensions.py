"""Every extension object and shared client, created once here and bound in ``create_app``.

``db`` is SQLAlchemy (models/); ``migrate``, ``csrf`` and ``login_manager``
are the Flask extensions; ``get_redis()`` gives the app's Redis client and
``get_sender()`` the process's one webhook Sender. Nothing else builds its
own. The sender is built on first use, so the web process loads libcurl
only when the Test button is pressed.
"""

import os
import sys

import click
import redis
from flask import current_app
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from models import db

csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to open the panel."
login_manager.login_message_category = "info"

__all__ = ["csrf", "db", "get_redis", "get_sender", "init_app", "init_migrate", "login_manager"]


def init_app(app) -> None:
    """Bind the extensions and create the app's Redis client (a connection pool, cheap to share)."""
    if "flask_migrate" in sys.modules:
        # Already paid for (tests, scripts that call flask_migrate.upgrade()): set it up now.
        init_migrate(app)
    else:
        app.cli.add_command(_LazyDbGroup("db", help="Perform database migrations."))
    csrf.init_app(app)
    login_manager.init_app(app)
    app.extensions["hookline_redis"] = redis.Redis.from_url(
        app.config["REDIS_URL"], socket_timeout=5, socket_connect_timeout=2
    )


def get_redis() -> redis.Redis:
    """The current app's Redis client."""
    return current_app.extensions["hookline_redis"]


def get_sender():
    """The process's one Sender for the current app (its connections are kept alive between uses)."""
    sender = current_app.extensions.get("hookline_sender")
    if sender is None:
        from tasks.netguard import parse_networks
        from tasks.sender import Sender

        config = current_app.config
        sender = Sender(
            allowed_networks=parse_networks(config["HOOKLINE_ALLOWED_NETWORKS"]),
            deadline=config["HOOKLINE_DELIVERY_TIMEOUT"],
            user_agent=config["HOOKLINE_USER_AGENT"],
            ca_bundle=config.get("HOOKLINE_CA_BUNDLE") or None,
        )
        current_app.extensions["hookline_sender"] = sender
    return sender


def init_migrate(app) -> None:
    """Give ``app`` Flask-Migrate (``flask db ...``, ``flask_migrate.upgrade()``); idempotent.

    Imported only when needed: Alembic, Mako and Pygments make a worker's
    memory and start-up noticeably bigger, and only migrations use them.
    """
    if "migrate" in app.extensions:
        return
    from flask_migrate import Migrate

    # Batch mode lets Alembic alter SQLite tables (it copies them).
    Migrate(render_as_batch=True).init_app(app, db, directory=os.path.join(app.root_path, "migrations"))


class _LazyDbGroup(click.Group):
    """``flask db``: Flask-Migrate's group, imported the first time it is asked for."""

    def _real(self) -> click.Group:
        app = current_app._get_current_object()
        init_migrate(app)
        return app.cli.commands["db"]  # init_app put Flask-Migrate's group there

    def parse_args(self, ctx, args):
        # Its options (-d DIRECTORY, -x ARG) and the callback that keeps them for the subcommands.
        real = self._real()
        self.params, self.callback = real.params, real.callback
        return super().parse_args(ctx, args)

    def list_commands(self, ctx):
        return self._real().list_commands(ctx)

    def get_command(self, ctx, name):
        return self._real().get_command(ctx, name)
