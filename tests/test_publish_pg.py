"""PostgreSQL: the publishing thread's own connection, and a publish that finds it dropped.

A publish is one statement on a connection the thread keeps (no pool
checkout, so no ping before it). A connection the server ended is found by
the next publish, which then writes its event once on a fresh connection,
whether or not the lost statement had committed. Dispose, fork and thread
end: tests/test_thread_connection.py, on both databases.
"""


import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select, text

from models import db, utcnow
from models.events import Delivery, Event, new_event_id
from tasks import publish_event, publish_pg, publish_sql
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
    with app.app_context():
        assert publish_sql.insert_new_alone(db.engine, event, False)
        end_backend(kept_backend())
        # The same statement again, as after an answer lost with the connection.
        assert publish_sql.insert_new_alone(db.engine, event, False)
        db.session.remove()
    assert stored(app) == (1, 1)


def test_publishes_whose_values_need_other_parameter_types_are_stored_as_given(app, integration):
    """A timestamp of seconds, of milliseconds, a small one, and a string call id beside integer ones, on one connection."""
    stamps = [5, 1_760_084_597, 1_760_084_597_123, 70_000, 1_760_084_597]
    calls = [1, "call-αβ", 2**62, 1, "x" * 100]
    with app.app_context():
        ids = []
        for turn, (stamp, call) in enumerate(zip(stamps, calls)):
            body = dict(payload(turn), call=dict(payload(turn)["call"], id=call))
            ids.append(publish_event("transcript", body, timestamp_utc=stamp, is_test=turn % 2 == 1))
        rows = db.session.execute(select(Event.id, Event.timestamp_utc, Event.call_id, Event.is_test, Delivery.call_id)
                                  .join(Delivery, Delivery.event_seq == Event.seq).order_by(Event.seq)).all()
        db.session.remove()
    assert [tuple(r) for r in rows] == [(i, s, str(c), turn % 2 == 1, str(c))
                                        for turn, (i, s, c) in enumerate(zip(ids, stamps, calls))]
