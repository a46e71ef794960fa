"""Everything that runs in a worker or prepares work for one.

``tasks.publish_event`` is the engine's entry point (``tasks.publish_events`` for
up to 100 at once) (also enqueueable on RQ
by that dotted path); ``tasks.drain.drain`` is the job that delivers.
"""

from tasks.publish import publish_event, publish_events

__all__ = ["publish_event", "publish_events"]
