"""SQLite: a worker copies the WAL into the database file from a thread of its own.

In WAL mode every commit appends the pages it changed to the WAL, and the
commit that finds the WAL ``wal_autocheckpoint`` pages long copies it into
the database file and waits for two disk flushes (a checkpoint) before it
returns. Under load the engine's publishes fill the WAL fast (about ten
pages each), and the worker's connections, with the lower threshold
(models.WAL_CHECKPOINT_PAGES against tasks.publish_sqlite.CHECKPOINT_PAGES),
took nearly every checkpoint: a drain's commit now and then waited for a
copy and two flushes while its next batch waited.

So a worker runs the checkpoints itself, on a connection of its own, every
INTERVAL seconds: a PASSIVE checkpoint, which takes no write lock (writers
and readers go on meanwhile) and does nothing when the WAL has nothing new.
The drain's own commits keep their threshold as a backstop (this thread
held up, or a reader keeping old pages in use).
"""

import logging
import os
import sqlite3
import threading
import time

from models import BUSY_TIMEOUT_SECONDS

log = logging.getLogger(__name__)

#: Seconds between two checkpoints. Short enough that the WAL stays under
#: models.WAL_CHECKPOINT_PAGES between them at the engine's fastest
#: publishing (~50,000 pages a second on this kind of box), long enough
#: that a page rewritten by every publish is copied a few times a second at most.
INTERVAL = 0.05

#: A thread whose checkpoints found nothing new for this long ends; the next
#: drain's batch starts another.
IDLE_SECONDS = 5.0

_started: dict[str, int] = {}  # database file -> pid of the process whose thread checkpoints it
_lock = threading.Lock()


def _path(engine) -> str | None:
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return os.path.abspath(url.database)


def running(engine) -> bool:
    """Does a thread of this process checkpoint ``engine``'s SQLite file now?"""
    path = _path(engine)
    with _lock:
        return path is not None and _started.get(path) == os.getpid()


def start(engine) -> bool:
    """Make sure a thread of this process checkpoints ``engine``'s SQLite file; True if one does.

    Cheap when it runs already (a drain calls this for every batch). Nothing
    for PostgreSQL or an in-memory database.
    """
    path = _path(engine)
    if path is None:
        return False
    with _lock:
        if _started.get(path) == os.getpid():
            return True
        _started[path] = os.getpid()
    threading.Thread(target=_run, args=(path,), name="hookline-checkpoints", daemon=True).start()
    return True


def _run(path: str) -> None:
    connection, last, idle_since = None, None, time.monotonic()
    try:
        while time.monotonic() - idle_since < IDLE_SECONDS:
            try:
                if connection is None:
                    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None,
                                                 check_same_thread=False)
                # (busy, pages in the WAL, pages copied): the same twice means nothing was written.
                state = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if state != last:
                    last, idle_since = state, time.monotonic()
            except sqlite3.Error:
                # The file may be briefly away or locked: the drain's own
                # commits checkpoint meanwhile; try again later.
                log.warning("WAL checkpoint failed; trying again", exc_info=True)
                if connection is not None:
                    connection.close()
                    connection = None
            time.sleep(INTERVAL)
    finally:
        with _lock:
            if _started.get(path) == os.getpid():
                del _started[path]
        if connection is not None:
            connection.close()
