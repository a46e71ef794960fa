"""SQLite: a worker copies the WAL into the database file from a thread of its own.

What a drain's commits wrote reaches the database file itself even when no
commit checkpoints (tasks.checkpoints), so a drain's commit does not wait
for the copy and its disk flushes; a drain starts that thread with its
first batch.
"""

import shutil
import sqlite3

from sqlalchemy import create_engine

from models import db
from tasks import checkpoints, publish_event
from tasks.drain import Drainer
from tests.support import wait_until
from tests.support.publishing import payload


def rows_in_the_file_alone(path, tmp_path) -> int:
    """How many rows of ``t`` the database file holds without its WAL (what checkpoints copied)."""
    copy = tmp_path / "copy.sqlite"
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"copy.sqlite{suffix}").unlink(missing_ok=True)
    shutil.copyfile(path, copy)
    connection = sqlite3.connect(copy)
    try:
        return connection.execute("SELECT count(*) FROM t").fetchone()[0]
    except sqlite3.OperationalError:  # the table itself is still only in the WAL
        return 0
    finally:
        connection.close()


def test_what_a_connection_writes_reaches_the_database_file_without_it_checkpointing(tmp_path):
    path = tmp_path / "outbox.sqlite"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # this connection never copies the WAL
    writer.execute("CREATE TABLE t (x TEXT)")
    with writer:
        writer.execute("BEGIN")
        writer.executemany("INSERT INTO t VALUES (?)", [("x" * 100,)] * 2000)
    reads = tmp_path / "reads"
    reads.mkdir()
    assert rows_in_the_file_alone(path, reads) == 0  # all in the WAL so far

    assert checkpoints.start(create_engine(f"sqlite:///{path}"))

    wait_until(lambda: rows_in_the_file_alone(path, reads) == 2000, 10, "the WAL copied into the file")
    writer.close()


def test_a_drain_on_sqlite_starts_the_checkpointing_thread_with_its_first_batch(app, integration):
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            assert not checkpoints.start(db.engine)  # PostgreSQL needs none of this
            return
        assert not checkpoints.running(db.engine)  # a fresh database file
        publish_event("transcript", payload(1))
        batch = Drainer(app.config).claim()
        db.session.commit()
        assert len(batch.rows) == 1
        assert checkpoints.running(db.engine)
