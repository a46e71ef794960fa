"""Run the migrations on an emptied database, as `flask db upgrade` does on a new one."""

import os

from flask import current_app
from flask_migrate import upgrade

from models import db


def migrations_directory() -> str:
    """The app's migrations/ folder."""
    return os.path.join(current_app.root_path, "migrations")


def upgrade_from_empty(revision: str = "head") -> None:
    """Drop every table (Alembic's own too), then upgrade to ``revision``; needs an app context."""
    db.drop_all()
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    upgrade(directory=migrations_directory(), revision=revision)
