"""The database: one ``db`` object and one module per aggregate.

Import ``db`` from here (``from models import db``), never from ``app``.
"""

from datetime import datetime, timezone

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base shared by every model."""


db = SQLAlchemy(model_class=Base)


def utcnow() -> datetime:
    """The current UTC time as a naive datetime.

    Naive UTC everywhere: SQLite drops time zones, so mixing aware and naive
    values would make comparisons of ``due_at`` fail on one database only.
    """
    return datetime.now(timezone.utc).replace(tzinfo=None)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """Let several workers and the web process write one SQLite file at once.

    WAL lets readers run beside a writer, busy_timeout makes a writer wait
    for the lock instead of failing, and synchronous=NORMAL makes a commit
    cost ~50 µs instead of ~650 µs (still durable against process crashes).
    """
    if type(dbapi_connection).__module__ != "sqlite3":
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def init_app(app) -> None:
    """Bind the database to the app and register every model."""
    from models import crypto

    crypto.init_app(app)
    db.init_app(app)
    # Importing registers the tables on Base.metadata (for create_all and Alembic).
    from models import events, settings, users  # noqa: F401
