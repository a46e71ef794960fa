"""Everything that runs in a worker or prepares work for one."""

from tasks import queue


def init_app(app) -> None:
    """Wire Redis/RQ into the app."""
    queue.init_app(app)
