"""SQLite: the page size of a new database file, and of one made before; checkpoints.

A new file gets ``models.SQLITE_PAGE_SIZE`` pages (a publish writes fewer
bytes to the WAL), still in WAL mode with synchronous=NORMAL, so a publish is
as durable as before. A file made with SQLite's default 4096-byte pages
keeps them: the setting cannot change a file that has pages, and the app
works on it as before. The engine's publishing connection leaves the WAL's
checkpoints to the other connections' commits (a worker's) while it can.
"""

import sqlite3

import pytest
from sqlalchemy import text

from app import create_app
from events import EVENT_TYPES
from models import SQLITE_PAGE_SIZE, WAL_CHECKPOINT_PAGES, db
from models.settings import get_settings
from tasks.signing import generate_secret
from tasks import publish_event, publish_sqlite
from tests.support.publishing import payload, stored


@pytest.fixture
def app_config(app_config):
    if not app_config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("page size and the WAL are SQLite's")
    return app_config


def pragma(name: str):
    """One PRAGMA's value, read through the app's own connection."""
    return db.session.execute(text(f"PRAGMA {name}")).scalar()


def test_a_new_database_file_gets_the_smaller_pages_and_keeps_its_durability(app):
    assert SQLITE_PAGE_SIZE != 4096  # the default: else this test proves nothing
    with app.app_context():
        assert pragma("page_size") == SQLITE_PAGE_SIZE
        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 1  # NORMAL


def test_a_file_made_with_the_default_pages_keeps_them_and_takes_publishes(app_config, tmp_path):
    path = tmp_path / "made-before.sqlite"
    old = sqlite3.connect(path)
    old.execute("PRAGMA page_size=4096")
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE made_before (x)")
    old.close()
    app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}"})
    with app.app_context():
        db.create_all()
        settings = get_settings()
        settings.enabled, settings.url, settings.events = True, "http://127.0.0.1:9/hook", list(EVENT_TYPES)
        settings.secret = generate_secret()
        db.session.commit()
        assert publish_event("transcript", payload(1)) is not None
        assert pragma("page_size") == 4096
    assert stored(app) == (1, 1)


def test_the_publishing_connection_checkpoints_later_than_the_others(app, integration):
    with app.app_context():
        publish_event("transcript", payload(0))
        publisher = publish_sqlite._connections.get(db.engine).cursor
        assert publisher.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == publish_sqlite.CHECKPOINT_PAGES
        assert pragma("wal_autocheckpoint") == WAL_CHECKPOINT_PAGES < publish_sqlite.CHECKPOINT_PAGES
