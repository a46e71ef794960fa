"""The Hookline worker: an RQ SimpleWorker with an app context per job and a tick.

SimpleWorker runs jobs in its own process: no fork per job (about twice the
jobs per second here) and the Sender's kept-alive connections survive from
one job to the next. Run several workers for more throughput.

The tick is a thread that lives in the worker process, not in Redis: every
``HOOKLINE_TICK_SECONDS`` it asks the database whether anything is due and,
if so, wakes a drain. So retries come due on time and nothing is lost when
Redis loses its jobs (restart without persistence, FLUSHALL).
"""

import gc
import logging
import os
import socket
import threading
import time

import redis
from flask import current_app
from rq import SimpleWorker

from tasks import alerts, checkpoints, maintenance
from tasks.drain import Drainer, has_due_work
from tasks.jobs import SERIALIZER, HooklineJob, refusal
from extensions import get_redis
from models import db
from tasks.queue import HEARTBEAT_PREFIX, HEARTBEAT_TTL, get_queue, wake

log = logging.getLogger(__name__)



class HooklineWorker(SimpleWorker):
    """A SimpleWorker that runs each job inside the Flask app's context.

    JSON jobs only, and only Hookline's own functions (see tasks.jobs): any
    other job fails, with a log line saying why, and runs nothing.
    """

    def __init__(self, *args, flask_app, **kwargs):
        kwargs.setdefault("serializer", SERIALIZER)
        kwargs.setdefault("job_class", HooklineJob)
        super().__init__(*args, **kwargs)
        self.flask_app = flask_app

    def perform_job(self, job, queue):
        """Give the job an app context (and so a fresh database session)."""
        reason = refusal(job)
        if reason:
            # RQ then fails the job (HooklineJob.perform raises): it lands in
            # the failed registry, nothing of it imported or called.
            log.error("refused a job on queue %s: %s", queue.name, reason)
        with self.flask_app.app_context():
            return super().perform_job(job, queue)


def tick(app, stop: threading.Event) -> None:
    """Wake a drain whenever the database has due work; runs until ``stop`` is set."""
    interval = app.config["HOOKLINE_TICK_SECONDS"]
    heartbeat = f"{HEARTBEAT_PREFIX}{socket.gethostname()}-{os.getpid()}"
    while not stop.wait(interval):
        try:
            with app.app_context():
                _tick_once(heartbeat)
            maintenance.run_if_due(app)
            maintenance.vacuum_outbox_if_due(app)
        except Exception:
            # Redis or the database may be briefly away; try again next tick.
            log.warning("tick failed; retrying in %ss", interval, exc_info=True)


def _tick_once(heartbeat: str) -> None:
    """One tick: heartbeat, then make sure due work gets a drain."""
    try:
        # From this thread, not the job loop: a long drain must not
        # make a live worker look dead.
        get_redis().set(heartbeat, time.time(), ex=HEARTBEAT_TTL)
        redis_up = True
    except redis.exceptions.ConnectionError:
        redis_up = False
    due = has_due_work()
    # End the read with a commit, not with the app context's rollback: on a
    # rollback psycopg deallocates every statement it has prepared on the
    # connection, and the pool (LIFO) hands this connection to the next
    # drain, whose claims would be parsed and planned afresh until prepared again.
    db.session.commit()
    if not due:
        return
    if redis_up:
        try:
            wake()
            return
        except redis.exceptions.ConnectionError:
            pass
    # No Redis, no jobs: deliver from this thread instead. Leases keep it
    # safe beside the other workers' drains. No bell to listen to: just empty the outbox.
    Drainer(current_app.config).run_until_empty()


def run_worker(app, *, burst: bool = False) -> None:
    """Run one worker on the ``hookline`` queue until stopped (or empty, with burst)."""
    stop = threading.Event()
    with app.app_context():
        queue = get_queue()
        connection = get_redis()
        # SQLite: the WAL's checkpoints in a thread, off the drains' commits (tasks.checkpoints).
        checkpoints.start(db.engine, stop)
    # What start-up built (Flask, SQLAlchemy, RQ: ~125,000 objects) lives
    # as long as the process: keep it out of the garbage collector's full
    # passes, each of which walked it all (~60 ms, in the middle of a batch).
    gc.freeze()
    # A drain's batch keeps a few thousand container objects alive until it is
    # recorded (its rows, requests, results, attempt rows): collecting the young
    # generation every 700 allocations scanned them several times per batch and
    # moved them to older generations only to free them when the batch ended.
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
    ticker = threading.Thread(target=tick, args=(app, stop), name="hookline-tick", daemon=True)
    ticker.start()
    # Alerts in a thread of their own: an SMTP server that hangs delays no tick and no delivery.
    threading.Thread(target=alerts.run_forever, args=(app, stop), name="hookline-alerts", daemon=True).start()
    try:
        while True:
            try:
                worker = HooklineWorker([queue], connection=connection, flask_app=app)
                # No RQ scheduler: nothing is scheduled in Redis (retries are a
                # column, the tick finds them), and it would fork a process per worker.
                worker.work(burst=burst, with_scheduler=False, logging_level="WARNING")
                return  # stopped by a signal, or burst finished
            except redis.exceptions.ConnectionError:
                # Redis went away (restart, failover): the tick keeps delivering
                # from the database meanwhile; start a fresh RQ worker when it is back.
                log.warning("lost Redis; restarting the RQ worker in 1 s", exc_info=True)
                time.sleep(1)
    finally:
        stop.set()
