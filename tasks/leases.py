"""Lease renewal: a batch in flight keeps its claim however long its receivers take.

Leases are short (``HOOKLINE_LEASE_SECONDS``, 15 s by default) so that the
deliveries of a worker that died are claimable again within one lease, with
no guess about heartbeats. A drain that is still working must not lose them:
while a batch is held, one thread per process pushes its lease forward every
third of a lease, fenced by the claim token like every other write. A batch
recorded within a third of a lease (nearly all of them) costs no renewal at
all: holding and letting go are a dict update under a lock.
"""

import logging
import os
import threading
import time
from dataclasses import dataclass

from tasks import outbox

log = logging.getLogger(__name__)


@dataclass
class _Held:
    app: object
    ids: list
    lease_seconds: float
    renewed: float  # time.monotonic() when the lease was last set


class LeaseKeeper:
    """Renews, from a thread of its own, the lease of every batch this process holds."""

    def __init__(self):
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="hookline-leases", daemon=True)
        self._thread.start()

    def hold(self, app, token: str, ids) -> None:
        """Keep renewing the lease of ``ids`` under ``token`` until :meth:`let_go`."""
        held = _Held(app, list(ids), app.config["HOOKLINE_LEASE_SECONDS"], time.monotonic())
        with self._lock:
            self._held[token] = held

    def let_go(self, token: str) -> None:
        """Stop renewing ``token``'s lease (its batch was recorded, or given up)."""
        with self._lock:
            self._held.pop(token, None)

    def due(self) -> list[tuple[str, _Held]]:
        """The batches whose lease was set a third of a lease ago or more (marked renewed now)."""
        now = time.monotonic()
        with self._lock:
            due = [(token, held) for token, held in self._held.items()
                   if now - held.renewed >= held.lease_seconds / 3]
            for _, held in due:
                held.renewed = now
        return due

    def _run(self) -> None:
        while True:
            time.sleep(0.25)
            for token, held in self.due():
                try:
                    with held.app.app_context():
                        kept = outbox.renew(token, held.ids, held.lease_seconds)
                    if kept < len(held.ids):
                        log.warning("lease of %d of %d deliveries was lost before renewal",
                                    len(held.ids) - kept, len(held.ids))
                except Exception:
                    # The database may be briefly away: the next round tries again,
                    # and a lease lost meanwhile only means a fenced duplicate.
                    log.warning("lease renewal failed", exc_info=True)


_keeper: tuple[int, LeaseKeeper] | None = None
_keeper_lock = threading.Lock()


def keeper() -> LeaseKeeper:
    """The process's one LeaseKeeper (a fresh one after a fork: threads do not survive it)."""
    global _keeper
    with _keeper_lock:
        if _keeper is None or _keeper[0] != os.getpid():
            _keeper = (os.getpid(), LeaseKeeper())
        return _keeper[1]
