"""The publishing thread's own connection (tasks.thread_connection), on the suite's database.

A thread that publishes keeps one connection (SQLite: tasks.publish_sqlite,
PostgreSQL: tasks.publish_pg). It is replaced when the engine is disposed,
a forked child opens its own and never touches its parent's, and it is
closed as its thread ends.
"""

import gc
import os
import threading

from models import db
from tasks import publish_event, publish_pg, publish_sqlite
from tests.support.publishing import payload, stored


def kept():
    """This thread's publishing connection, from the publisher of the suite's database."""
    publisher = publish_sqlite if db.engine.dialect.name == "sqlite" else publish_pg
    return publisher._connections.current().connection


def test_a_publishing_thread_gets_a_fresh_connection_after_dispose_and_in_a_forked_child(app, integration):
    with app.app_context():
        assert publish_event("transcript", payload(0)) is not None
        first = kept()
        db.engine.dispose()
        assert publish_event("transcript", payload(1)) is not None
        assert kept() is not first
        parents = kept()
        pid = os.fork()
        if pid == 0:  # the child: its own connection, never the parent's
            try:
                code = 0 if publish_event("transcript", payload(2)) and kept() is not parents else 1
            except BaseException:
                code = 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert publish_event("transcript", payload(3)) is not None
        assert kept() is parents  # the child neither used nor closed it (a broken one is replaced)
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
