"""The one test toolkit: a receiver, a waiting helper, a publishing helper, a Redis starter.

Every test imports these from here instead of writing its own: a real HTTP
receiver on 127.0.0.1 (``Receiver``, scripted with ``Reply``), ``wait_until``
for anything that happens in another process or thread, ``publish_calls``
for events of distinct calls, and ``start_redis_server`` for a private
Redis. Tests never sleep through a schedule: they shorten the setting or
move the outbox's clock (``tests/support/clock.py``).
"""

import time

from tests.support.receiver import Received, Receiver, Reply  # noqa: F401


def wait_until(predicate, timeout: float = 30.0, what: str = "condition", interval: float = 0.02):
    """Return once ``predicate()`` is true; fail the test, naming ``what``, after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout:g} s")


def publish_calls(app, count: int, event_types=("call_initiated",), start: int = 0) -> list[str]:
    """Publish ``event_types`` for each of ``count`` calls (call-<start>...), in order; return the event ids.

    Waits until the publishes' wake-ups have gone out, as they would have in
    a real run before anything else happens.
    """
    from events import example_envelope
    from tasks import publish_event
    from tasks.queue import flush_rings

    ids = []
    with app.app_context():
        for event_type in event_types:
            payload = example_envelope(event_type)["payload"]
            for i in range(start, start + count):
                ids.append(publish_event(event_type, {**payload, "call_id": f"call-{i}"}))
        flush_rings()
    return ids
