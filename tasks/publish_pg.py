"""PostgreSQL: a publish's one statement on the publishing thread's own connection, in autocommit.

A publish on PostgreSQL is one INSERT (tasks.publish_sql), committed by itself.
Checking a connection out of SQLAlchemy's pool cost a second round trip:
the pool pings every connection it hands out (``pool_pre_ping``), so that a
connection the server dropped (a restart) is replaced instead of failing
the request that got it. Each thread that publishes keeps one connection
of its own instead (tasks.thread_connection), in autocommit.

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

from sqlalchemy.exc import DBAPIError

from tasks.thread_connection import ThreadConnections

_ALREADY_WRITTEN = "SELECT 1 FROM events WHERE id = %(id)s"


def _prepare(kept) -> None:
    from tasks.pg_exec import Statements  # psycopg's adapters: loaded only where a publish runs on PostgreSQL

    kept.connection.autocommit = True  # each publish is its own transaction, one round trip
    # The publish looks up its call's last open row (tasks.publish_sql): planned
    # on a young table, a prepared plan could keep scanning the whole log
    # for it (see tasks.statements.by_key). This connection runs nothing else.
    kept.connection.execute("SET enable_seqscan = off")
    kept.prepared = Statements(kept.connection)  # the publish statement, run on libpq directly


_connections = ThreadConnections(_prepare)


#: The session's synchronous_commit for a publish that waits for the flush
#: (the server's own setting) and for one that does not.
_FLUSH_SETTING = {True: "RESET synchronous_commit", False: "SET synchronous_commit = off"}


def _run(engine, statement: str, values: dict, wait_for_flush: bool) -> bool:
    """Run the publish statement on this thread's connection; True if it wrote a row (the event was wanted)."""
    kept = _connections.get(engine)
    cursor = kept.cursor
    if kept.settings != wait_for_flush:
        cursor.execute(_FLUSH_SETTING[bool(wait_for_flush)])
        kept.settings = bool(wait_for_flush)
    return kept.prepared.run(statement, values) > 0


def _lost(exc, dbapi) -> bool:
    """Did ``exc`` end the connection (so that what the server did is unknown)?"""
    kept = _connections.current()
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
            _connections.forget()
        # The connection was lost: the INSERT may have committed, or not.
        cursor = _connections.get(engine).cursor
        if cursor.execute(_ALREADY_WRITTEN, {"id": values["id"]}).fetchone() is not None:
            return True
        try:
            return _run(engine, statement, values, wait_for_flush)
        except dbapi.errors.UniqueViolation:
            return True  # the lost INSERT committed while this one waited for it
    except BaseException as exc:
        _connections.forget()
        if isinstance(exc, dbapi.Error):  # the SQLAlchemy error the rest of the app would raise
            raise DBAPIError.instance(statement, None, exc, dbapi.Error) from exc
        raise
