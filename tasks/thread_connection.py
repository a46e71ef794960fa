"""A publishing thread's own database connection, detached from the engine's pool.

Checking a connection out of SQLAlchemy's pool (and, on PostgreSQL,
pinging it) costs a publish about as much as its statements, so each
thread that publishes keeps one connection of its own
(tasks.publish_sqlite, tasks.publish_pg). It is taken from the engine's
pool and detached from it, so it never counts against the pool's size. It
is closed when its thread ends, and replaced after any error (the caller
calls ``forget``) and when the engine's pool is disposed or replaced. A
forked child never uses or closes its parent's: SQLite forbids carrying a
connection across fork, and libpq would end the parent's session on the
shared socket.
"""

import os
import threading

#: Bumped in a forked child: connections kept before the fork are not its own.
_generation = 0
#: A forked child's inherited connections: kept referenced so that they are never closed.
_inherited = []
#: Every ThreadConnections made: a forked child drops each one's connection.
_all = []


class Kept:
    """One thread's connection, its cursor, what its publisher set on it (``settings``) and prepared (``prepared``)."""

    __slots__ = ("pool", "generation", "pid", "connection", "cursor", "settings", "prepared")

    def __init__(self, pool, connection):
        self.pool, self.generation, self.pid, self.connection = pool, _generation, os.getpid(), connection
        self.cursor = connection.cursor()
        self.settings = self.prepared = None

    def close(self) -> None:
        """Close the connection, unless this is a forked child: that keeps its parent's open for good."""
        if self.pid != os.getpid():
            _inherited.append(self.connection)
            return
        try:
            self.connection.close()
        except Exception:  # closing a broken connection may fail too; it is dropped either way
            pass

    # Dropped when its thread ends: close the connection now (a sqlite3
    # connection and its statement cache refer to each other, so otherwise
    # only the cyclic GC would close its files; a PostgreSQL session would
    # stay open on the server until then).
    __del__ = close


class ThreadConnections:
    """Each thread's kept connection to one kind of database; ``prepare(kept)`` sets a new one up."""

    def __init__(self, prepare):
        self._local = threading.local()
        self._prepare = prepare
        _all.append(self)

    def current(self) -> Kept | None:
        """This thread's connection, if it has one."""
        return getattr(self._local, "kept", None)

    def get(self, engine) -> Kept:
        """This thread's connection to ``engine``'s database, taken from its pool if need be."""
        kept = self.current()
        if kept is not None:
            if kept.pool is engine.pool and kept.generation == _generation:
                return kept
            self.forget()  # another engine, or one disposed since
        raw = engine.raw_connection()  # on PostgreSQL pinged: a fresh connection after a restart
        connection = raw.driver_connection
        raw.detach()
        kept = Kept(engine.pool, connection)
        try:
            self._prepare(kept)
        except BaseException:
            kept.close()
            raise
        self._local.kept = kept
        return kept

    def forget(self) -> None:
        """Close and drop this thread's connection (after an error it may be in any state)."""
        kept, self._local.kept = self.current(), None
        if kept is not None:
            kept.close()

    def _after_fork(self) -> None:
        if (kept := self.current()) is not None:
            _inherited.append(kept.connection)
            self._local.kept = None


def _after_fork_in_child() -> None:
    global _generation
    _generation += 1
    for connections in _all:
        connections._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
