"""PostgreSQL: the publishing thread's own connection, and a publish that finds it dropped.

A publish is one statement on a connection the thread keeps (no pool
checkout, so no ping before it). A connection the server ended is found by
the next publish, which then writes its event once on a fresh connection,
whether or not the lost statement had committed. The kept connection is
replaced when the engine is disposed, is neither used nor closed by a
forked child, and is closed when its thread ends.
"""

import gc
import os
import threading

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import text

from models import db, utcnow
from models.events import new_event_id
from tasks import outbox, publish_event, publish_pg
from tests.support.publishing import payload, stored


@pytest.fixture
def app_config(app_config):
    if app_config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("the kept connection is PostgreSQL's (set HOOKLINE_TEST_DATABASE_URL)")
    return app_config


def kept_backend():
    """The server process behind this thread's publishing connection."""
    return publish_pg._connections.current().connection.info.backend_pid


def end_backend(pid):
    """Have the server end a session, as a restart or an idle timeout would."""
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}).scalar()


def test_a_publish_takes_no_connection_from_the_pool(app, integration):
    checkouts = []

    def count(*args):
        checkouts.append(1)

    with app.app_context():
        publish_event("transcript", payload(0))
        sa_event.listen(db.engine, "checkout", count)
        try:
            for turn in range(1, 11):
                assert publish_event("transcript", payload(turn)) is not None
        finally:
            sa_event.remove(db.engine, "checkout", count)
    assert checkouts == []  # so no pre-ping round trip either
    assert stored(app) == (11, 11)


def test_a_publish_on_a_connection_the_server_ended_succeeds(app, integration):
    with app.app_context():
        assert publish_event("transcript", payload(0)) is not None
        end_backend(kept_backend())
        assert publish_event("transcript", payload(1)) is not None
    assert stored(app) == (2, 2)


def test_a_publish_whose_commit_was_not_heard_is_written_once(app, integration):
    """The INSERT committed, then the connection broke before its answer: the retry finds the event."""
    now = utcnow()
    event = dict(id=new_event_id(), event_type="transcript", call_id="call-1", timestamp_utc=1,
                 is_test=False, body="{}", created_at=now)
    delivery = dict(event_type="transcript", call_id="call-1", is_test=False, due_at=now,
                    created_at=now, attempt_count=0)
    with app.app_context():
        assert outbox.insert_new_alone(db.engine, event, delivery, False)
        end_backend(kept_backend())
        # The same statement again, as after an answer lost with the connection.
        assert outbox.insert_new_alone(db.engine, event, delivery, False)
        db.session.remove()
    assert stored(app) == (1, 1)


def test_a_publishing_thread_gets_a_fresh_connection_after_dispose_and_in_a_forked_child(app, integration):
    with app.app_context():
        assert publish_event("transcript", payload(0)) is not None
        first = kept_backend()
        db.engine.dispose()
        assert publish_event("transcript", payload(1)) is not None
        assert kept_backend() != first
        parents = kept_backend()
        pid = os.fork()
        if pid == 0:  # the child: its own connection, never the parent's
            try:
                code = 0 if publish_event("transcript", payload(2)) and kept_backend() != parents else 1
            except BaseException:
                code = 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert publish_event("transcript", payload(3)) is not None
        assert kept_backend() == parents  # the child neither used nor closed it
    assert stored(app) == (4, 4)


def test_a_thread_that_published_and_ended_leaves_no_connection_open(app, integration):
    def publish_once(turn):
        with app.app_context():
            assert publish_event("transcript", payload(turn)) is not None
            db.session.remove()

    def open_files():
        return len(os.listdir("/proc/self/fd"))

    publish_once(0)  # this thread's connection is open from here on
    stored(app)  # and the pool's
    before = open_files()
    gc.disable()  # the threads' connections must be closed as the threads end, not by a GC pass
    try:
        for turn in range(1, 21):
            thread = threading.Thread(target=publish_once, args=(turn,))
            thread.start()
            thread.join()
        assert open_files() <= before + 2
    finally:
        gc.enable()
    assert stored(app) == (21, 21)
