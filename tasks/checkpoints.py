"""SQLite: a worker copies the WAL into the database file from a thread of its own.

In WAL mode every commit appends the pages it changed to the WAL, and the
commit that finds the WAL ``wal_autocheckpoint`` pages long copies it into
the database file and waits for two disk flushes (a checkpoint) before it
returns. Under load the engine's publishes fill the WAL fast (about ten
pages each), and the worker's connections, with the lower threshold
(models.WAL_CHECKPOINT_PAGES against tasks.publish_sqlite.CHECKPOINT_PAGES),
took nearly every checkpoint: a drain's commit now and then waited for a
copy and two flushes while its next batch waited.

So a worker runs the checkpoints itself, on a connection of its own: a
PASSIVE checkpoint, which takes no write lock (writers and readers go on
meanwhile) and does nothing when the WAL has nothing new, about every
PAGES_PER_CHECKPOINT pages written.
The drain's own commits keep their threshold as a backstop (this thread
held up, or a reader keeping old pages in use).
"""

import logging
import os
import sqlite3
import threading
import time
from urllib.parse import quote

from models import BUSY_TIMEOUT_SECONDS

log = logging.getLogger(__name__)

#: Pages a checkpoint should find new in the WAL: under
#: models.WAL_CHECKPOINT_PAGES, so that the drain's commits never reach it
#: first, and not much less, since a page that every publish rewrites is
#: copied once a checkpoint. The pause between two checkpoints halves when
#: one found over twice this many, doubles when it found under half.
PAGES_PER_CHECKPOINT = 2000
#: The shortest and the longest pause between two checkpoints, seconds.
SHORTEST, LONGEST = 0.02, 1.0

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
    connection, last, idle_since, pause = None, (0, 0, 0), time.monotonic(), SHORTEST
    try:
        while time.monotonic() - idle_since < IDLE_SECONDS:
            try:
                if connection is None:
                    # mode=rw: never create a file where the database was (moved or deleted).
                    connection = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, isolation_level=None,
                                                 timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)
                # (busy, pages in the WAL, pages copied): the same twice means nothing was written.
                state = tuple(connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
                # A WAL that was copied whole starts again from its first page.
                new = state[1] - last[1] if state[1] >= last[1] else state[1]
                if new > 2 * PAGES_PER_CHECKPOINT:
                    pause = max(SHORTEST, pause / 2)
                elif new < PAGES_PER_CHECKPOINT / 2:
                    pause = min(LONGEST, pause * 2)
                if state != last:
                    last, idle_since = state, time.monotonic()
            except sqlite3.Error:
                # The file may be briefly away or locked: the drain's own
                # commits checkpoint meanwhile. Not a warning: nothing is lost.
                log.debug("WAL checkpoint failed; trying again", exc_info=True)
                if connection is not None:
                    connection.close()
                    connection = None
            time.sleep(min(pause, IDLE_SECONDS))
    finally:
        with _lock:
            if _started.get(path) == os.getpid():
                del _started[path]
        if connection is not None:
            connection.close()
