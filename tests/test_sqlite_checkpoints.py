"""SQLite: the worker's checkpoint thread copies the WAL into the database file, so that drains' commits do not.

A database file in WAL mode grows only when a checkpoint copies pages into
it, so its size on disk shows whether one ran. The worker's connections
checkpoint at their own commits only past tasks.checkpoints.DRAIN_CHECKPOINT_PAGES.
"""

import os
import sqlite3
import threading

import pytest
from sqlalchemy import text

from models import WAL_CHECKPOINT_PAGES, db
from tasks import checkpoints
from tests.support import wait_until


def _database_file(app) -> str:
    with app.app_context():
        return db.engine.url.database


def _write_pages(path: str, count: int) -> None:
    """Write about ``count`` new pages into the WAL from a connection that never checkpoints."""
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE IF NOT EXISTS filler (data BLOB)")
    writer.executemany("INSERT INTO filler VALUES (?)", [(os.urandom(1500),) for _ in range(count)])
    writer.commit()
    writer.close()


def test_the_thread_copies_what_a_write_added_to_the_wal_and_stops_when_told(app):
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("the WAL is SQLite's")
    path = _database_file(app)
    # Open throughout: the last connection to close would checkpoint as it closes.
    keep = sqlite3.connect(path)
    keep.execute("SELECT count(*) FROM sqlite_master").fetchone()
    _write_pages(path, 1)
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    before = os.path.getsize(path)
    _write_pages(path, 1000)
    assert os.path.getsize(path) == before  # still only in the WAL
    stop = threading.Event()
    with app.app_context():
        thread = checkpoints.start(db.engine, stop)
    try:
        checkpoints.written()
        wait_until(lambda: os.path.getsize(path) >= before + 1000 * 1500, 30, "the WAL copied into the file")
    finally:
        stop.set()
        checkpoints.written()
        thread.join(10)
        keep.close()
    assert not thread.is_alive()


def test_a_workers_connections_leave_checkpoints_to_the_thread(app):
    stop = threading.Event()
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            assert checkpoints.start(db.engine, stop) is None
            return
        assert db.session.execute(text("PRAGMA wal_autocheckpoint")).scalar() == WAL_CHECKPOINT_PAGES
        db.session.commit()
        thread = checkpoints.start(db.engine, stop)
        try:
            # A connection made from here on (start dropped the pool's older ones).
            assert db.session.execute(text("PRAGMA wal_autocheckpoint")).scalar() == checkpoints.DRAIN_CHECKPOINT_PAGES
            assert checkpoints.DRAIN_CHECKPOINT_PAGES > WAL_CHECKPOINT_PAGES
        finally:
            db.session.rollback()
            stop.set()
            checkpoints.written()
            thread.join(10)
