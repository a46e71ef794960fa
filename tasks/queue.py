"""Redis and the RQ queue: the wake-up bell for workers, never the source of truth.

Two keys do the waking:

* ``DRAIN_FLAG`` is set while a drain job is queued or running and listening
  for work. A publish sets it with NX: when that succeeds nobody is
  listening, so the publish enqueues a drain job; otherwise a drain exists.
* ``BELL`` is a one-item list the listening drain waits on (BLPOP) between
  claims. Every publish rings it, in the same round trip as the NX, so a
  drain that lingers after emptying the outbox hears the next event within
  a round trip instead of a new job being queued for it.

Only one drain listens at a time. Under load it asks for helpers
(``HELPER_FLAG``): drains for other workers that share the backlog and end
as soon as it is gone, so an idle second worker never splits the stream
into batches of one.
"""

import redis
from flask import current_app
from rq import Queue

DRAIN_FLAG = "hookline:drain-queued"
#: A listening drain refreshes the flag at least this often; a drain that
#: died lets it expire, and the next publish queues a fresh one.
DRAIN_FLAG_TTL = 5
BELL = "hookline:bell"
#: Set while a "come and help" drain waits, so a busy drain asks once.
HELPER_FLAG = "hookline:drain-helper"


def init_app(app) -> None:
    """Create the app's Redis client (a connection pool, cheap to share)."""
    app.extensions["hookline_redis"] = redis.Redis.from_url(
        app.config["REDIS_URL"], socket_timeout=5, socket_connect_timeout=2
    )


def get_redis() -> redis.Redis:
    """The current app's Redis client."""
    return current_app.extensions["hookline_redis"]


def get_queue() -> Queue:
    """The ``hookline`` RQ queue (drain jobs and engine-enqueued publishes)."""
    return Queue(current_app.config["HOOKLINE_QUEUE"], connection=get_redis())


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
