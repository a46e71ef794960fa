"""SQLite: a publish's two INSERTs and commit on the publishing thread's own connection.

Two things cost a publish on SQLite more than its statements:

* Checking a connection out of SQLAlchemy's pool and back in cost about as
  much CPU as an INSERT. Each thread that publishes keeps one connection of
  its own instead (tasks.thread_connection).
* SQLite's own busy handler (``busy_timeout``) sleeps 1, 2, 5, 10, 15 ms...
  between tries while another connection (a worker's drain) holds the write
  lock, which it holds for far less than that. This connection has no busy
  handler: its first INSERT failing with SQLITE_BUSY has written nothing, so
  it is rolled back and tried again after the short pauses of
  tasks.sqlite_lock, until ``models.BUSY_TIMEOUT_SECONDS`` (the same wait as
  every other connection's) has passed; then it fails with the same
  "database is locked" error as before. Once that INSERT holds the lock, the second
  INSERT and the commit cannot meet it. Its commits also leave the WAL
  checkpoints (and their disk flushes) to other connections while they can
  (CHECKPOINT_PAGES).
"""

from sqlalchemy.exc import DBAPIError

from tasks.sqlite_lock import Pauses, is_busy
from tasks.thread_connection import ThreadConnections

#: A commit that finds the WAL this long copies it into the database file and
#: waits for two disk flushes (a checkpoint; synchronous=NORMAL). Every other
#: connection does that at models.WAL_CHECKPOINT_PAGES (a worker's at this many,
#: its thread checkpointing meanwhile: tasks.checkpoints): with a worker running,
#: it takes the checkpoints and the flushes off the engine's publishes;
#: with none, the publisher checkpoints itself, a quarter as often. A
#: publish rewrites the same few pages, so the longer the WAL, the fewer
#: times a checkpoint copies each. The WAL file on disk grows to about this
#: many pages (models.SQLITE_PAGE_SIZE bytes each: 32 MiB for a new file).
CHECKPOINT_PAGES = 16000

def _prepare(kept) -> None:
    kept.cursor.execute("PRAGMA busy_timeout=0")  # the waiting is done in insert()
    kept.cursor.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")


_connections = ThreadConnections(_prepare)


def insert(engine, insert_event, insert_delivery, event: dict, delivery: dict) -> bool:
    """INSERT the event (if wanted) and its delivery and commit them, in one transaction; True if wanted.

    ``insert_event`` and ``insert_delivery`` are tasks.driver plans; the
    delivery's ``event_seq`` comes from the event's RETURNING. Waits for a
    write lock another connection holds up to BUSY_TIMEOUT_SECONDS. Raises
    SQLAlchemy's error for the driver's (``OperationalError: database is
    locked`` once that has passed); nothing is written then.
    """
    dbapi = engine.dialect.dbapi
    # Built before the lock is taken, so that it is held for the statements alone.
    event_values = insert_event.parameters(event)
    delivery_values = insert_delivery.parameters({**delivery, "event_seq": None})
    statement = None
    try:
        kept = _connections.get(engine)
        cursor, statement = kept.cursor, insert_event.sql
        pauses = None
        while True:
            try:
                row = cursor.execute(statement, event_values).fetchone()
                break
            except dbapi.OperationalError as exc:
                if not is_busy(exc):
                    raise
                kept.connection.rollback()  # ends the transaction the INSERT opened; nothing was written
                pauses = pauses or Pauses()
                if not pauses.sleep():
                    raise
        if row is not None:
            statement = insert_delivery.sql
            delivery_values[0] = row[0]  # event_seq: the statement's first parameter
            cursor.execute(statement, delivery_values)
        kept.connection.commit()
    except BaseException as exc:
        _connections.forget()
        if isinstance(exc, dbapi.Error):  # the SQLAlchemy error the rest of the app would raise
            raise DBAPIError.instance(statement, None, exc, dbapi.Error) from exc
        raise
    return row is not None
