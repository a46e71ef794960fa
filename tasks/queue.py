"""Redis and the RQ queue: the wake-up bell for workers, never the source of truth.

Two keys do the waking:

* ``DRAIN_FLAG`` is set while a drain job is queued or running and listening
  for work. A publish sets it with NX: when that succeeds nobody is
  listening, so the publish enqueues a drain job; otherwise a drain exists.
* ``BELL`` is a one-item list the listening drain waits on (BLPOP) between
  claims. Every publish rings it, in the same round trip as the NX, so a
  drain that lingers after emptying the outbox hears the next event within
  a round trip instead of a new job being queued for it.

Only one drain listens at a time. When it falls behind (a full batch
whose oldest delivery has waited longer than ``pacing.BEHIND_SECONDS``) it
asks for a helper (``HELPER_FLAG``): a drain for another worker that shares
the backlog and ends as soon as its batches are small or fresh
(``pacing.keeps_a_helper_busy``), so a second worker never splits a stream
that one drain keeps up with.

Publishes do not wait for that round trip: :func:`ring_soon` hands it to
the process's :class:`Waker` thread (the outbox row is already committed,
and the worker's tick finds it even if the ring never happens).
"""

import atexit
import logging
import os
import threading
import time
import weakref

from flask import current_app

from extensions import get_redis

log = logging.getLogger(__name__)

DRAIN_FLAG = "hookline:drain-queued"
#: A listening drain refreshes the flag at least this often; a drain that
#: died lets it expire, and the next publish queues a fresh one.
DRAIN_FLAG_TTL = 5
BELL = "hookline:bell"
#: Set while a "come and help" drain waits, so a busy drain asks once.
HELPER_FLAG = "hookline:drain-helper"


#: Each worker's tick writes ``hookline:worker:<host>-<pid> = <unix time>``;
#: /healthz and /metrics read them. The key expires when the worker dies.
HEARTBEAT_PREFIX = "hookline:worker:"
HEARTBEAT_TTL = 60


def get_queue():
    """The ``hookline`` RQ queue (drain jobs and engine-enqueued publishes), JSON jobs only.

    RQ is imported here, on first use, not with this module: the web process
    loads it only when it first queues a drain.
    """
    from rq import Queue

    from tasks.jobs import SERIALIZER, HooklineJob

    return Queue(current_app.config["HOOKLINE_QUEUE"], connection=get_redis(),
                 serializer=SERIALIZER, job_class=HooklineJob)


def _enqueue_drain(helper: bool = False) -> None:
    get_queue().enqueue("tasks.drain.drain", kwargs={"helper": helper},
                        job_timeout=600, result_ttl=0, failure_ttl=3600)


def wake() -> bool:
    """Make sure a drain will look at the outbox; return True when this call enqueued one.

    One Redis round trip when a drain is already queued or listening (the
    common case under load): SET NX fails and the bell rings, in one pipeline.
    """
    pipe = get_redis().pipeline(transaction=False)
    pipe.set(DRAIN_FLAG, 1, nx=True, ex=DRAIN_FLAG_TTL)
    pipe.lpush(BELL, 1)
    pipe.ltrim(BELL, 0, 0)
    nobody_listening = pipe.execute()[0]
    if not nobody_listening:
        return False
    _enqueue_drain()
    return True


def ask_for_help() -> bool:
    """Queue one more drain for another worker to share a backlog; True when queued."""
    if not get_redis().set(HELPER_FLAG, 1, nx=True, ex=DRAIN_FLAG_TTL):
        return False
    _enqueue_drain(helper=True)
    return True


def listening() -> None:
    """A drain says it is alive and listening (sets or refreshes the flag)."""
    get_redis().set(DRAIN_FLAG, 1, ex=DRAIN_FLAG_TTL)


def stop_listening() -> None:
    """A drain about to stop: from now on publishes must queue a new one."""
    get_redis().delete(DRAIN_FLAG)


def wait_for_bell(timeout: float) -> bool:
    """Block up to ``timeout`` seconds for a publish; True when one rang."""
    return get_redis().blpop([BELL], timeout=timeout) is not None


def jobs_waiting() -> int:
    """Jobs queued behind the running one (engine publishes, other drains)."""
    return get_queue().count


def started_as_helper() -> None:
    """A drain starts: a later full batch may ask for another helper."""
    get_redis().delete(HELPER_FLAG)


class Waker:
    """One thread per app and process that calls :func:`wake` for publishes.

    ``ring()`` only counts a request and returns, so the engine's publish
    does not wait for Redis (~0.2-0.3 ms a round trip under load here). The
    thread notes how many rings it has seen *before* it calls ``wake()``,
    so every ring is followed by a ``wake()`` that started after it, that is
    after the publish's commit. Rings close together share one ``wake()``:
    at most one per GATHER_SECONDS: one Redis pipeline serves every publish
    of those 10 ms, which costs the publisher less CPU per event and gives
    the drains bigger batches (bench/HISTORY.md has the figures); a busy
    drain claims without waiting for the bell, and an idle one waits at
    most 10 ms more. Publishes further apart than that never wait at all. The thread ends after a few idle seconds
    and the next ring starts a new one.
    """

    IDLE_SECONDS = 5.0
    GATHER_SECONDS = 0.010

    def __init__(self, app):
        self.app = app
        self.pid = os.getpid()  # a forked child builds its own (threads do not survive fork)
        self._cond = threading.Condition()
        self._rung = 0  # rings requested so far
        self._served = 0  # rings that a finished wake() covered
        self._thread = None
        self._last = 0.0
        _wakers.add(self)

    def ring(self) -> None:
        """Ask for a wake() soon, after the caller's commit; never blocks on Redis."""
        with self._cond:
            self._rung += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hookline-waker", daemon=True)
                self._thread.start()
            else:
                self._cond.notify()

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until every ring so far is served; False if ``timeout`` passed first."""
        with self._cond:
            target = self._rung
            return self._cond.wait_for(lambda: self._served >= target, timeout)

    def _run(self) -> None:
        with self.app.app_context():
            while True:
                with self._cond:
                    if not self._cond.wait_for(lambda: self._rung > self._served, self.IDLE_SECONDS):
                        self._thread = None
                        return
                # Let rings gather for up to GATHER_SECONDS since the last
                # wake(): under load the drain is busy anyway, and one
                # wake() then serves every publish of those 10 ms. At low
                # load the last wake() is long past and this does not wait.
                time.sleep(max(0.0, self._last + self.GATHER_SECONDS - time.monotonic()))
                with self._cond:
                    target = self._rung
                self._last = time.monotonic()
                try:
                    wake()
                except Exception:
                    # The rows are committed: a worker's tick delivers them
                    # within seconds even while Redis is away.
                    log.warning("could not wake a worker; the periodic tick will", exc_info=True)
                with self._cond:
                    self._served = target
                    self._cond.notify_all()


_wakers = weakref.WeakSet()

#: This process's id, kept so that a publish makes no getpid() call to tell a
#: forked child's Waker from its parent's.
_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def _get_waker(app=None) -> Waker:
    if app is None:
        app = current_app._get_current_object()
    waker = app.extensions.get("hookline_waker")
    if waker is None or waker.pid != _pid:
        waker = app.extensions["hookline_waker"] = Waker(app)
    return waker


def ring_soon(app=None) -> None:
    """Wake a drain from the Waker thread, without waiting (publish's hot path); ``app``: the current app."""
    _get_waker(app).ring()


def flush_rings(timeout: float = 2.0) -> bool:
    """Wait for the current app's pending rings (tests, and scripts about to exit)."""
    return _get_waker().flush(timeout)


@atexit.register
def _flush_at_exit() -> None:
    # A short-lived process (``flask events publish``) must not exit with a
    # ring still pending: that event would wait for a worker's tick.
    for waker in list(_wakers):
        if waker.pid == os.getpid():
            waker.flush(2.0)
