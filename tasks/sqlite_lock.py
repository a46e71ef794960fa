"""SQLite: wait for another connection's write lock in short sleeps, not SQLite's busy handler's.

SQLite's busy handler (``busy_timeout``) sleeps 1, 2, 5, 10, 15 ms... between
tries, while a publish holds the lock for well under a millisecond and a
drain's write for a few. Python's ``sqlite3`` installs no other busy handler,
so the waiting is done here instead: the connection's busy timeout is off
while it tries, a try that meets the lock has taken nothing, and the next
comes after 50 µs, doubling to 0.15 ms, until the same overall timeout.
The pauses stay short: a try lands at most one pause after the release,
and a longer last pause is time the publisher sleeps with the lock free.
"""

import time

from sqlalchemy.exc import DBAPIError

from models import BUSY_TIMEOUT_SECONDS

FIRST_PAUSE = 50e-6
LONGEST_PAUSE = 150e-6
_BUSY_TIMEOUT_PRAGMA = f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}"


def is_busy(exc) -> bool:
    """Did a ``sqlite3`` error say the database is locked (SQLITE_BUSY, any extended code)?"""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == 5


class Pauses:
    """The sleeps between tries of one wait; ``sleep()`` is False once the timeout has passed."""

    def __init__(self):
        self.deadline, self.pause = None, FIRST_PAUSE

    def sleep(self) -> bool:
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + BUSY_TIMEOUT_SECONDS
        if now >= self.deadline:
            return False
        time.sleep(min(self.pause, self.deadline - now))
        self.pause = min(2 * self.pause, LONGEST_PAUSE)
        return True


def begin_writing(session) -> None:
    """On SQLite, open the session's next transaction holding the write lock (BEGIN IMMEDIATE).

    For a transaction whose first statement writes (a drain's fenced write,
    a lease renewal): that statement then never waits in the busy handler.
    Does nothing on PostgreSQL, or when the connection's transaction is
    already open. Raises SQLAlchemy's ``OperationalError: database is
    locked`` after BUSY_TIMEOUT_SECONDS, as the statement would have.
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    driver = connection.connection.driver_connection
    if driver.in_transaction:
        return
    dbapi = connection.dialect.dbapi
    pauses = Pauses()
    try:
        driver.execute("PRAGMA busy_timeout=0")
        while True:
            try:
                driver.execute("BEGIN IMMEDIATE")
                return
            except dbapi.OperationalError as exc:
                if not is_busy(exc) or not pauses.sleep():
                    raise DBAPIError.instance("BEGIN IMMEDIATE", None, exc, dbapi.Error) from exc
    finally:
        driver.execute(_BUSY_TIMEOUT_PRAGMA)
