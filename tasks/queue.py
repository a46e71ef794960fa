"""Redis and the RQ queue: the wake-up bell for workers, never the source of truth."""

import redis
from flask import current_app
from rq import Queue

#: Set while a drain job waits in the queue, so a burst of publishes
#: enqueues one drain, not one job per event.
DRAIN_FLAG = "hookline:drain-queued"
#: The flag expires in case its job was lost with Redis's memory.
DRAIN_FLAG_TTL = 30


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


def wake() -> bool:
    """Make sure a drain job is queued; return True when this call enqueued it.

    One Redis round trip when a drain is already waiting (the common case
    under load): SET NX fails and nothing else happens.
    """
    r = get_redis()
    if not r.set(DRAIN_FLAG, 1, nx=True, ex=DRAIN_FLAG_TTL):
        return False
    get_queue().enqueue("tasks.drain.drain", job_timeout=600, result_ttl=0, failure_ttl=3600)
    return True


def clear_wake_flag() -> None:
    """Called by a drain as it starts: later publishes must queue a new drain."""
    get_redis().delete(DRAIN_FLAG)
