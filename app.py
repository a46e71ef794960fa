"""The application factory: config, extensions, blueprints, CLI. Nothing else."""

import os

from flask import Flask

import cli
import extensions
import models
import views
from config import check_production_safety, load_config


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
    extensions.init_app(app)
    views.init_app(app)
    cli.init_app(app)
    return app
