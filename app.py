"""The application factory: config, extensions, blueprints, CLI. Nothing else."""

import os

from flask import Flask
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect

import cli
import models
import tasks
import views
from config import check_production_safety, load_config

csrf = CSRFProtect()
# Batch mode lets Alembic alter SQLite tables (it copies them).
migrate = Migrate(render_as_batch=True)


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
    migrate.init_app(app, models.db, directory=os.path.join(app.root_path, "migrations"))
    csrf.init_app(app)
    tasks.init_app(app)
    views.init_app(app)
    cli.init_app(app)
    return app
