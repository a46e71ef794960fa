"""PostgreSQL: a publish's one statement on the publishing thread's own connection, in autocommit.

A publish on PostgreSQL is one INSERT (tasks.outbox), committed by itself.
Checking a connection out of SQLAlchemy's pool cost a second round trip:
the pool pings every connection it hands out (``pool_pre_ping``), so that a
connection the server dropped (a restart) is replaced instead of failing
the request that got it. Each thread that publishes keeps one connection
of its own instead, in autocommit, taken from the engine's pool (pinged
then) and detached from it, so it never counts against the pool's size;
it is closed when the thread ends, replaced after any error and when the
engine's pool is disposed or replaced, and never used, nor closed, by a
forked child (closing it there would end the parent's session).

Without the ping, a publish is what finds a dropped connection. Then
whether its INSERT committed is unknown, and it is retried once on a fresh
connection, safely: the event's id is unique, so the retry first looks for
a committed event with that id, and an INSERT that meets one still being
committed fails on the unique index instead of writing it twice.

The connection's session also says whether a commit waits for the disk
flush (``synchronous_commit``, see publish_event): set once, when it
changes, not by each statement (set_config in the INSERT cost the server
more than the settings check beside it).
"""

import os
import threading

from sqlalchemy.exc import DBAPIError

_local = threading.local()
#: Bumped in a forked child: connections kept before the fork are not its own.
_generation = 0
#: A forked child's inherited connections: kept referenced so that they are
#: never closed (libpq would end the parent's session on their socket).
_inherited = []

_ALREADY_WRITTEN = "SELECT 1 FROM events WHERE id = %(id)s"


class _Kept:
    __slots__ = ("pool", "generation", "pid", "connection", "cursor", "wait_for_flush")

    def __init__(self, pool, connection):
        self.pool, self.generation, self.pid, self.connection = pool, _generation, os.getpid(), connection
        self.cursor = connection.cursor()
        self.wait_for_flush = None  # the server's default until set

    def close(self) -> None:
        """Close the connection, unless this is a forked child: that keeps its parent's open for good."""
        if self.pid != os.getpid():
            _inherited.append(self.connection)
            return
        try:
            self.connection.close()
        except Exception:  # closing a broken connection may fail too; it is dropped either way
            pass

    # Dropped when its thread ends: end the server's session now, not when
    # the garbage collector gets to it.
    __del__ = close


def _after_fork_in_child() -> None:
    global _generation
    _generation += 1
    if (kept := getattr(_local, "kept", None)) is not None:
        _inherited.append(kept.connection)
        _local.kept = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _kept(engine) -> _Kept:
    """This thread's connection to ``engine``'s database, taken from its pool if need be."""
    kept = getattr(_local, "kept", None)
    if kept is not None:
        if kept.pool is engine.pool and kept.generation == _generation:
            return kept
        _forget()  # another engine, or one disposed since
    raw = engine.raw_connection()  # pinged: a fresh connection after a server restart
    connection = raw.driver_connection
    raw.detach()
    try:
        connection.autocommit = True  # each publish is its own transaction, one round trip
    except BaseException:
        connection.close()
        raise
    kept = _Kept(engine.pool, connection)
    _local.kept = kept
    return kept


def _forget() -> None:
    """Close and drop this thread's connection (after an error it may be in any state)."""
    kept, _local.kept = getattr(_local, "kept", None), None
    if kept is not None:
        kept.close()


#: The session's synchronous_commit for a publish that waits for the flush
#: (the server's own setting) and for one that does not.
_FLUSH_SETTING = {True: "RESET synchronous_commit", False: "SET synchronous_commit = off"}


def _run(engine, statement: str, values: dict, wait_for_flush: bool) -> bool:
    """Run the publish statement on this thread's connection; True if it returned a row."""
    kept = _kept(engine)
    cursor = kept.cursor
    if kept.wait_for_flush != wait_for_flush:
        cursor.execute(_FLUSH_SETTING[bool(wait_for_flush)])
        kept.wait_for_flush = bool(wait_for_flush)
    cursor.execute(statement, values)
    return cursor.fetchone() is not None


def _lost(exc, dbapi) -> bool:
    """Did ``exc`` end the connection (so that what the server did is unknown)?"""
    kept = getattr(_local, "kept", None)
    return isinstance(exc, dbapi.OperationalError) and (kept is None or kept.connection.closed)


def insert(engine, statement: str, values: dict, wait_for_flush: bool) -> bool:
    """Run the publish's one statement (``values["id"]`` is the event's id) in autocommit; True if wanted.

    Its commit waits for the disk flush only if ``wait_for_flush``.

    Raises SQLAlchemy's error for the driver's; then nothing was written
    (a lost connection is retried once, as the module says).
    """
    dbapi = engine.dialect.dbapi
    try:
        try:
            return _run(engine, statement, values, wait_for_flush)
        except dbapi.Error as exc:
            if not _lost(exc, dbapi):
                raise
            _forget()
        # The connection was lost: the INSERT may have committed, or not.
        cursor = _kept(engine).cursor
        if cursor.execute(_ALREADY_WRITTEN, {"id": values["id"]}).fetchone() is not None:
            return True
        try:
            return _run(engine, statement, values, wait_for_flush)
        except dbapi.errors.UniqueViolation:
            return True  # the lost INSERT committed while this one waited for it
    except BaseException as exc:
        _forget()
        if isinstance(exc, dbapi.Error):  # the SQLAlchemy error the rest of the app would raise
            raise DBAPIError.instance(statement, None, exc, dbapi.Error) from exc
        raise
