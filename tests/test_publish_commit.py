"""On PostgreSQL a publish does not wait for the disk flush unless told to.

The engine waits for every publish; the commit's flush was a third of that
wait on this box (see ``publish_event``'s docstring). Whether a commit
waited for its flush is counted by the server itself: ``pg_stat_wal.wal_sync``
goes up by one for every commit that flushed the WAL to disk, and hardly at
all when the WAL writer flushes in the background. PostgreSQL only (set
HOOKLINE_TEST_DATABASE_URL); SQLite's setting is covered in models/__init__.py.

``pg_stat_wal`` counts the whole server's flushes, so the test runs on a
cluster of its own (tests/support/postgres.py): on a shared server every
other client's commits, the other test processes' among them, would count.
"""

import pytest
from sqlalchemy import func, select

from events import example_envelope
from models import db
from models.events import Delivery, Event
from tasks import publish_event, publish_pg
from tests.support.postgres import private_postgres  # noqa: F401 (a fixture)

PUBLISHES = 40
PRIVATE_POSTGRES_FSYNC = True  # the flushes are what the test counts


def wal_syncs() -> int:
    """How many times the server has flushed its WAL to disk so far.

    Counted through the connection the publishes used, this thread's own
    (tasks.publish_pg): a backend hands its counts to the shared statistics
    only now and then, and ``pg_stat_force_next_flush`` makes it do so when
    this statement's transaction ends.
    """
    cursor = publish_pg._connections.get(db.engine).cursor
    cursor.execute("SELECT pg_stat_force_next_flush()")
    return cursor.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()[0]


@pytest.fixture
def app_config(app_config, request):
    """On PostgreSQL runs only, and there on a private cluster that nothing else writes to."""
    if app_config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("synchronous_commit is PostgreSQL's (set HOOKLINE_TEST_DATABASE_URL)")
    app_config["SQLALCHEMY_DATABASE_URI"] = request.getfixturevalue("private_postgres").url
    return app_config


@pytest.fixture
def postgres_app(app, integration):
    """The app, on a private PostgreSQL cluster, with the integration on."""
    return app


@pytest.mark.parametrize("sync_commit", [False, True], ids=["default", "sync-commit"])
def test_a_publish_waits_for_the_disk_flush_only_when_configured(postgres_app, sync_commit):
    postgres_app.config["HOOKLINE_PUBLISH_SYNC_COMMIT"] = sync_commit
    payload = example_envelope("call_answered")["payload"]
    with postgres_app.app_context():
        publish_event("call_answered", payload)  # the thread's connection, opened
        before = wal_syncs()
        ids = [publish_event("call_answered", payload) for _ in range(PUBLISHES)]
        flushes = wal_syncs() - before
        # Every publish is there either way, event and delivery alike.
        assert db.session.scalar(select(func.count()).select_from(Event).where(Event.id.in_(ids))) == PUBLISHES
        assert db.session.scalar(
            select(func.count()).select_from(Delivery).join(Event).where(Event.id.in_(ids))) == PUBLISHES
    if sync_commit:
        assert flushes >= PUBLISHES  # one flush per publish, waited for
    else:
        # The WAL writer's own flushes, a few at most while 40 publishes run.
        assert flushes < PUBLISHES / 4
