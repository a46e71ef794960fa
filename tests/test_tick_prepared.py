"""PostgreSQL: the periodic tick leaves a connection's prepared statements in place.

psycopg deallocates every statement it has prepared on a connection when
that connection rolls back, and the pool hands the connection the tick
used to the next drain (last returned, first out). A tick that ended its
read with a rollback made that drain parse and plan its claims afresh
until psycopg prepared them again, once a second.
"""

from sqlalchemy import text

from models import db
from tasks import outbox
from tasks.worker import _tick_once

_PREPARED = text("SELECT count(*) FROM pg_prepared_statements")


def _backend_and_prepared() -> tuple[int, int]:
    """This session's server process and the statements prepared on its connection."""
    pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return pid, db.session.execute(_PREPARED).scalar_one()


def test_a_tick_keeps_what_the_drains_connection_prepared(postgres_app):
    with postgres_app.app_context():
        for _ in range(8):  # past psycopg's prepare threshold (5)
            outbox.has_due_work()
        db.session.commit()
        pid, prepared = _backend_and_prepared()
        db.session.commit()
    assert prepared >= 1

    with postgres_app.app_context():
        _tick_once("hookline:test-heartbeat")  # nothing is due: it reads, and ends

    with postgres_app.app_context():
        after_pid, after = _backend_and_prepared()
        db.session.commit()
    assert after_pid == pid  # the same connection came back
    assert after >= prepared
