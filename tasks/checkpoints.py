"""SQLite: the worker's thread that copies the WAL into the database file, so that drains do not.

Every SQLite connection checkpoints at its own commit once the WAL holds
``models.WAL_CHECKPOINT_PAGES`` pages: the commit copies the pages new since
the last checkpoint into the database file and flushes both files to disk.
While a publisher and a drain write back to back, such a checkpoint never
catches up with the pages written during its flushes, so the WAL does not
start over from its first page (that needs a complete checkpoint before the
next write) and, once past the mark, every drain's commit ran one, several
ms of copying and flushing with its next batch waiting.

Here a thread of the worker does that work instead, on its own connection,
while the drains send: woken after the drain's write commits (at most
every ``INTERVAL`` seconds) it copies what is new, PASSIVE (it never
takes the write lock: a RESTART would hold it for its flushes, and every
writer would wait). The worker's own connections checkpoint at their commits
only past ``DRAIN_CHECKPOINT_PAGES``, as a publisher's do
(tasks.publish_sqlite.CHECKPOINT_PAGES): the commit that gets there copies
the few pages the thread has not, and the WAL can start over. Durability is
unchanged: a checkpoint flushes the WAL before it copies, and the database
file after.
"""

import logging
import threading

from sqlalchemy import event as sa_event

from tasks.publish_sqlite import CHECKPOINT_PAGES as DRAIN_CHECKPOINT_PAGES

log = logging.getLogger(__name__)

#: Seconds between two checkpoints at least: each flushes the disk twice, whatever it copies,
#: and a page rewritten meanwhile is copied once (5 ms was slower: bench/HISTORY.md, branch sqlock).
INTERVAL = 0.05
#: Without a wake-up, a checkpoint this often (seconds) all the same: other processes write too.
IDLE_SECONDS = 1.0

#: Set after each drain's write commit; the thread waits on it.
_written = threading.Event()


def written() -> None:
    """Tell the checkpoint thread (if this process runs one) that the WAL grew."""
    _written.set()


def checkpoint(connection) -> tuple[int, int, int]:
    """Copy the WAL's new pages into the database file without blocking a writer; SQLite's (busy, pages, copied)."""
    return tuple(connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())


def run(engine, stop: threading.Event) -> None:
    """The worker's checkpoint thread on ``engine`` (SQLite): checkpoint after writes until ``stop`` is set."""
    raw = engine.raw_connection()
    connection = raw.driver_connection
    raw.detach()  # its own for good
    try:
        while not stop.is_set():
            _written.wait(IDLE_SECONDS)
            _written.clear()
            try:
                checkpoint(connection)
            except connection.Error:  # the drains' own commits checkpoint meanwhile (DRAIN_CHECKPOINT_PAGES)
                log.warning("WAL checkpoint failed; trying again", exc_info=True)
            stop.wait(INTERVAL)
    finally:
        connection.close()


def _drain_pragmas(dbapi_connection, connection_record) -> None:
    """A worker's connection leaves checkpoints to the thread up to DRAIN_CHECKPOINT_PAGES."""
    dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={DRAIN_CHECKPOINT_PAGES}")


def start(engine, stop: threading.Event) -> threading.Thread | None:
    """Start the checkpoint thread for a SQLite ``engine`` and raise its connections' own mark; None on PostgreSQL."""
    if engine.dialect.name != "sqlite":
        return None
    if not sa_event.contains(engine, "connect", _drain_pragmas):
        sa_event.listen(engine, "connect", _drain_pragmas)
    engine.dispose()  # connections made before were given models.WAL_CHECKPOINT_PAGES
    thread = threading.Thread(target=run, args=(engine, stop), name="hookline-checkpoint", daemon=True)
    thread.start()
    return thread
