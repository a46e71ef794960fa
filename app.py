"""The application factory: config, extensions, blueprints, CLI. Nothing else."""

import os
import sys

import click
from flask import Flask, current_app
from flask_wtf.csrf import CSRFProtect

import cli
import models
import tasks
import views
from config import check_production_safety, load_config

csrf = CSRFProtect()


def init_migrate(app: Flask) -> None:
    """Give ``app`` Flask-Migrate (``flask db ...``, ``flask_migrate.upgrade()``); idempotent.

    Imported only when needed: Alembic, Mako and Pygments cost a worker
    ~11 MB of RSS and ~0.3 s of start-up, and only migrations use them.
    """
    if "migrate" in app.extensions:
        return
    from flask_migrate import Migrate

    # Batch mode lets Alembic alter SQLite tables (it copies them).
    Migrate(render_as_batch=True).init_app(app, models.db, directory=os.path.join(app.root_path, "migrations"))


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


def create_app(test_config: dict | None = None) -> Flask:
    """Create and configure a Hookline app.

    ``test_config`` overrides what the environment gives (tests use it).
    """
    app = Flask(__name__, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(load_config(app.instance_path))
    if test_config:
        app.config.from_mapping(test_config)
    check_production_safety(app.config)

    models.init_app(app)
    if "flask_migrate" in sys.modules:
        # Already paid for (tests, scripts that call flask_migrate.upgrade()): set it up now.
        init_migrate(app)
    else:
        app.cli.add_command(_LazyDbGroup("db", help="Perform database migrations."))
    csrf.init_app(app)
    tasks.init_app(app)
    views.init_app(app)
    cli.init_app(app)
    return app
