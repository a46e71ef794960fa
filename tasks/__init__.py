"""Everything that runs in a worker or prepares work for one.

``tasks.publish_event`` is the engine's entry point (also enqueueable on RQ
by that dotted path); ``tasks.drain.drain`` is the job that delivers.
"""

from tasks import queue
from tasks.publish import publish_event

__all__ = ["init_app", "publish_event"]


def init_app(app) -> None:
    """Wire Redis/RQ into the app."""
    queue.init_app(app)
