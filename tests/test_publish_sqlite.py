"""SQLite: a publish that meets another connection's write lock.

A worker's drain holds the write lock for a moment at a time; a publish
that meets it waits and then succeeds, within a fraction of a millisecond
of the release (not SQLite's busy-handler sleeps of up to 100 ms), and
fails as it always did, writing nothing, once the lock is held past the
5 s timeout. A drain's write that meets the publisher's lock goes ahead as
soon. The connection a thread keeps for its publishes:
tests/test_thread_connection.py.
"""

import sqlite3
import threading
import time

import pytest
from sqlalchemy.exc import OperationalError

from models import BUSY_TIMEOUT_SECONDS, db
from tasks import outbox, publish_event
from tests.support.publishing import payload, stored


@pytest.fixture
def app_config(app_config):
    if not app_config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("the write lock and the busy handler are SQLite's")
    return app_config


class WriteLock:
    """Another connection holding the database's write lock (a drain's transaction, a long one)."""

    def __init__(self, app):
        self.conn = sqlite3.connect(app.config["SQLALCHEMY_DATABASE_URI"].split("sqlite:///", 1)[1],
                                    isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN IMMEDIATE")
        self.released_at = None

    def release_after(self, seconds):
        def release():
            time.sleep(seconds)
            self.released_at = time.monotonic()
            self.conn.execute("ROLLBACK")
            self.conn.close()
        thread = threading.Thread(target=release)
        thread.start()
        return thread


def test_a_publish_that_meets_a_write_lock_succeeds_right_after_its_release(app, integration):
    with app.app_context():
        publish_event("transcript", payload(0))  # the thread's connection is open before the lock
        lock = WriteLock(app)
        releaser = lock.release_after(0.25)
        event_id = publish_event("transcript", payload(1))
        returned_at = time.monotonic()
        releaser.join()
    assert event_id is not None and stored(app) == (2, 2)
    # SQLite's busy handler sleeps 100 ms at a time by then; a lock wait here is ≤ 0.15 ms.
    assert returned_at - lock.released_at < 0.05


def test_a_publish_that_meets_a_write_lock_past_the_timeout_fails_as_before_and_writes_nothing(app, integration):
    with app.app_context():
        lock = WriteLock(app)
        started = time.monotonic()
        with pytest.raises(OperationalError, match="database is locked"):
            publish_event("transcript", payload(0))
        waited = time.monotonic() - started
        lock.release_after(0).join()
        assert stored(app) == (0, 0)
        assert BUSY_TIMEOUT_SECONDS <= waited < BUSY_TIMEOUT_SECONDS + 1
        # The same thread publishes again as soon as the lock is gone.
        assert publish_event("transcript", payload(1)) is not None
    assert stored(app) == (1, 1)


def test_a_drains_write_that_meets_the_lock_goes_ahead_right_after_its_release(app, integration):
    """A lease renewal (a drain's write transaction) waits in short sleeps too, for the same 5 s."""
    with app.app_context():
        publish_event("transcript", payload(0))
        db.session.commit()
        lock = WriteLock(app)
        releaser = lock.release_after(0.25)
        assert outbox.renew("another-drains-token", [1], 30) == 0
        returned_at = time.monotonic()
        releaser.join()
        assert returned_at - lock.released_at < 0.05
        db.session.remove()
