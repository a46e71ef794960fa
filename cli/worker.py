"""``flask worker``: one RQ worker (with scheduler and tick) for Hookline's queue."""

import click
from flask import current_app
from flask.cli import with_appcontext


@click.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@with_appcontext
def worker(burst: bool) -> None:
    """Deliver webhooks. Run more of these for more throughput."""
    from tasks.worker import run_worker  # RQ, the drain and libcurl: the worker's, not the web's

    run_worker(current_app._get_current_object(), burst=burst)
