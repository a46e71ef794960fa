"""SQLite: a publish's two INSERTs and commit on the publishing thread's own connection.

Two things cost a publish on SQLite more than its statements:

* Checking a connection out of SQLAlchemy's pool and back in cost about as
  much CPU as an INSERT. Each thread that publishes keeps one connection of
  its own instead, taken from the engine's pool and detached from it (so it
  never counts against the pool's size), and closed when the thread ends.
  It is replaced after any error, when the engine's pool is disposed or
  replaced, and in a forked child, which never uses or closes its
  parent's (SQLite forbids carrying a connection across fork).
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

import os
import threading

from sqlalchemy.exc import DBAPIError

from tasks.sqlite_lock import Pauses, is_busy

#: A commit that finds the WAL this long copies it into the database file and
#: waits for two disk flushes (a checkpoint; synchronous=NORMAL). Every other
#: connection does that at SQLite's 1,000 pages: with a worker running, its
#: commits take the checkpoints and the flushes off the engine's publishes;
#: with none, the publisher checkpoints itself, a quarter as often.
CHECKPOINT_PAGES = 4000

_local = threading.local()
#: Bumped in a forked child: connections kept before the fork are not its own.
_generation = 0
#: A forked child's inherited connections: kept referenced so that they are
#: never closed (SQLite forbids using a connection across fork).
_inherited = []


class _Kept:
    __slots__ = ("pool", "generation", "pid", "connection", "cursor")

    def __init__(self, pool, connection):
        self.pool, self.generation, self.pid, self.connection = pool, _generation, os.getpid(), connection
        self.cursor = connection.cursor()

    def close(self) -> None:
        """Close the connection, unless this is a forked child: that keeps its parent's open for good."""
        if self.pid != os.getpid():
            _inherited.append(self.connection)
            return
        try:
            self.connection.close()
        except Exception:  # closing a broken connection may fail too; it is dropped either way
            pass

    # Dropped when its thread ends: close the connection now. A sqlite3
    # connection and its statement cache refer to each other, so otherwise
    # only the cyclic GC would close its files, long after.
    __del__ = close


def _after_fork_in_child() -> None:
    global _generation
    _generation += 1
    if (kept := getattr(_local, "kept", None)) is not None:
        _inherited.append(kept.connection)
        _local.kept = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _kept(engine) -> _Kept:
    """This thread's connection to ``engine``'s database, opened (from its pool) if need be."""
    kept = getattr(_local, "kept", None)
    if kept is not None:
        if kept.pool is engine.pool and kept.generation == _generation:
            return kept
        _forget()  # another engine, or one disposed since
    raw = engine.raw_connection()
    connection = raw.driver_connection
    raw.detach()
    kept = _Kept(engine.pool, connection)
    try:
        kept.cursor.execute("PRAGMA busy_timeout=0")  # the waiting is done in insert()
        kept.cursor.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
    except BaseException:
        kept.close()
        raise
    _local.kept = kept
    return kept


def _forget() -> None:
    """Close and drop this thread's connection (after an error it may be in any state)."""
    kept, _local.kept = getattr(_local, "kept", None), None
    if kept is not None:
        kept.close()


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
        kept = _kept(engine)
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
        _forget()
        if isinstance(exc, dbapi.Error):  # the SQLAlchemy error the rest of the app would raise
            raise DBAPIError.instance(statement, None, exc, dbapi.Error) from exc
        raise
    return row is not None
