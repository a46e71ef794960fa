"""The database: one ``db`` object and one module per aggregate.

Import ``db`` from here (``from models import db``), never from ``app``.
"""

import os
import time
from datetime import datetime, timedelta

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base shared by every model."""


db = SQLAlchemy(model_class=Base)


#: Tests only: a file holding seconds to add to utcnow(), read by every
#: process started with this variable set (tests/support/clock.py moves it),
#: so a test moves the outbox's clock instead of sleeping through a schedule.
CLOCK_FILE_ENV = "HOOKLINE_CLOCK_FILE"


#: 1970-01-01 as a naive UTC datetime: the models' times are this plus a timedelta.
EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def utcnow() -> datetime:
    """The current UTC time as a naive datetime (moved by HOOKLINE_CLOCK_FILE's seconds, in tests).

    Naive UTC everywhere: SQLite drops time zones, so mixing aware and naive
    values would make comparisons of ``due_at`` fail on one database only.
    Everything that decides what is due (claims, retries, holds, leases,
    alert windows) asks this, so moving it moves them all.
    """
    # The epoch plus the system clock's microseconds, floored: what
    # datetime.now(timezone.utc).replace(tzinfo=None) returns, without the
    # keyword parsing of replace() (every publish asks for the time); a
    # multiple of one microsecond parses no arguments, as timedelta() does.
    now = EPOCH + _MICROSECOND * (time.time_ns() // 1000)
    if path := os.environ.get(CLOCK_FILE_ENV):
        now += timedelta(seconds=_clock_offset(path))
    return now


def _clock_offset(path: str) -> float:
    try:
        with open(path) as file:
            return float(file.read() or 0)
    except (OSError, ValueError):
        return 0.0


#: How long a SQLite connection waits for another's write lock before "database is locked".
BUSY_TIMEOUT_SECONDS = 5.0


#: Bytes per page of a NEW SQLite database file (SQLite's default is 4096). A
#: publish dirties one page in each B-tree it touches (the event's table and id
#: index, the delivery's table and its indexes), and a commit writes each dirty
#: page whole into the WAL, checksummed: smaller pages, fewer bytes per
#: publish. Not smaller: the log's reads over a million rows walk more pages.
#: A file that already has tables keeps the size it was made with.
SQLITE_PAGE_SIZE = 2048

#: A commit that finds the WAL this many pages long copies it into the
#: database file (a checkpoint: two disk flushes). Each page is copied once
#: per checkpoint however many times it was rewritten since, and a publish or
#: a drain rewrites the same few pages over and over: a longer WAL copies
#: them fewer times. SQLite's default is 1,000 pages. The publisher's own
#: connection waits longer still (tasks.publish_sqlite.CHECKPOINT_PAGES).
WAL_CHECKPOINT_PAGES = 4000


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """Let several workers and the web process write one SQLite file at once.

    WAL lets readers run beside a writer, busy_timeout makes a writer wait
    for the lock instead of failing, and synchronous=NORMAL makes a commit
    cost ~50 µs instead of ~650 µs (still durable against process crashes).
    A new file gets SQLITE_PAGE_SIZE pages; the WAL is checkpointed at
    WAL_CHECKPOINT_PAGES.
    """
    if type(dbapi_connection).__module__ != "sqlite3":
        return
    _bind_none_and_bool_directly()
    cursor = dbapi_connection.cursor()
    # Before journal_mode: a file once in WAL mode keeps its page size. On a
    # file that has any page already this is a no-op.
    cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


#: The None adapter: a C-level call returning None ({}.get(None)), not a Python frame per NULL bound.
_null = {}.get


def _bind_none_and_bool_directly() -> None:
    """Register sqlite3 adapters for None and bool (idempotent; module-wide).

    sqlite3 binds an int, float or str as it is, but asks its adapter
    registry about any other value, and a None or a bool it finds nothing
    for is then looked for an __adapt__ and a __conform__ (raising and
    clearing an AttributeError): a drain binds four to six of them a
    delivery. With these, each is one lookup: None still binds as NULL, a
    bool as the integer it is. Registered on the first SQLite connection,
    not at import, so a PostgreSQL process never loads sqlite3.
    """
    import sqlite3

    sqlite3.register_adapter(type(None), _null)
    sqlite3.register_adapter(bool, int)


def _has_a_pool(url: str) -> bool:
    """Does this database get a connection pool (all but in-memory SQLite)?

    An in-memory SQLite database has one connection and no pool to order:
    Flask-SQLAlchemy gives it a StaticPool, which takes no pool options.
    """
    parsed = make_url(url)
    return not (parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"))


def init_app(app) -> None:
    """Bind the database to the app and register every model."""
    from models import crypto

    crypto.init_app(app)
    if _has_a_pool(app.config["SQLALCHEMY_DATABASE_URI"]):
        options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
        if make_url(app.config["SQLALCHEMY_DATABASE_URI"]).get_backend_name() != "sqlite":
            # A connection the server dropped (a PostgreSQL restart) is replaced
            # when checked out, instead of failing the request that got it.
            # A SQLite file has no server to drop it: no ping there.
            options.setdefault("pool_pre_ping", True)
        # The pool hands out the connection returned last (LIFO): with the
        # default FIFO queue, a process that once had several connections out
        # afterwards rotates one thread's work through all of them, each one's
        # caches cold (bench/HISTORY.md: ~10% slower on SQLite, ~5% on PostgreSQL).
        options.setdefault("pool_use_lifo", True)
    db.init_app(app)
    # Importing registers the tables on Base.metadata (for create_all and Alembic).
    from models import alerts, events, rollups, settings, users  # noqa: F401
