"""The throughput measurements, one function per line of the report (lines 4 and 5: bench/paced.py).

Each scenario takes the shared :class:`Context` (the app, Redis, the
receiver, the database) and returns a dict of figures. Scenarios that need
workers get them from the caller, so several scenarios can share a set of
warm workers. Every request of a scenario goes to its own receiver path,
which is how arrivals are told apart.
"""

import base64
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from sqlalchemy import func, select
from standardwebhooks import Webhook, WebhookVerificationError

from bench.services import ROOT, Database, Receiver, RedisServer, Workers, box_cpu_seconds, wait_until

#: Headers like the ones Hookline sends, so the ceiling posts the same bytes.
FAKE_SIGNATURE = "v1," + "A" * 44


@dataclass
class Context:
    """What every scenario shares: one receiver, one Redis, one database, one app."""

    app: object
    redis: RedisServer
    receiver: Receiver
    database: Database
    worker_env: dict
    secret: str
    logdir: object  # where the children's output goes
    calls: int = 50
    call_base: int = 100_000  # call ids already used; each scenario takes fresh ones

    @property
    def prefix(self) -> str:
        """Receiver paths start with the database's kind, so two databases' runs never mix."""
        return f"/{self.database.kind}" if self.database else ""

    def next_calls(self, n: int) -> int:
        first = self.call_base
        self.call_base += n
        return first


def summary_ms(seconds: list[float]) -> dict:
    """Median, p95, p99 and max of durations given in seconds, in milliseconds."""
    from tasks.stats import percentile  # the log page's rule: nearest rank

    ms = sorted(s * 1000 for s in seconds)
    return {"n": len(ms), "median_ms": statistics.median(ms), "p95_ms": percentile(ms, 95),
            "p99_ms": percentile(ms, 99), "max_ms": max(ms)}


# -- load ----------------------------------------------------------------------


def call_events(m: int, calls: int, first_call_id: int) -> list[tuple[str, dict]]:
    """``m`` events of ``calls`` simulated calls, interleaved as concurrent calls are.

    Each call is initiated, ringing, answered, transcript turns, ended (the
    same generator as ``flask simulate-call``); the round-robin interleave is
    what an engine handling many calls at once would publish.
    """
    from cli.devtools import call_lifecycle

    random.seed(first_call_id)  # the same run publishes the same bytes
    per_call = max(5, -(-m // calls))
    lifecycles = [call_lifecycle(first_call_id + i, "outbound", per_call - 4) for i in range(calls)]
    interleaved = [call[i] for i in range(per_call) for call in lifecycles if i < len(call)]
    return interleaved[:m]


def ceiling_body() -> bytes:
    """A ~400-byte transcript envelope: the size of an average Hookline delivery."""
    from tasks.publish import envelope_body

    payload = {"call": {"id": 1, "from": "+905555555555", "to": "+905555555554",
                        "source": "salprebox:SALPRE_AABBCCDD", "direction": "outbound"},
               "type": "customer", "timestamp_utc": "1700000000",
               "transcript": "Hello, I'd like to check the status of my order, number 4 8 1 5, "
                             "which I placed last week. Could you tell me when it ships?"}
    return envelope_body("transcript", 1700000000, payload, False).encode()


# -- 1. raw ceiling ---------------------------------------------------------------


def ceiling(ctx: Context, k: int, seconds: float) -> dict:
    """K processes POSTing the same body with keep-alive sessions, as fast as they can."""
    path = f"/ceiling-k{k}"
    start_at = time.time() + 2.0  # time for the interpreters to start and connect
    procs = [subprocess.Popen([sys.executable, "-m", "bench.client", ctx.receiver.base_url + path,
                               str(start_at), str(start_at + seconds)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
             for _ in range(k)]
    while time.time() < start_at:
        time.sleep(0.005)
    rx_cpu = ctx.receiver.cpu()
    sent = sum(int(p.communicate(timeout=seconds + 60)[0]) for p in procs)
    rx_cpu = ctx.receiver.cpu() - rx_cpu
    return {"rate": sent / seconds, "requests": sent, "seconds": seconds,
            "body_bytes": len(ceiling_body()), "receiver_cpu_s": rx_cpu,
            "receiver_cpu_per_req_us": rx_cpu / sent * 1e6}


# -- 2. naive baseline ------------------------------------------------------------


def naive(ctx: Context, k: int, n: int) -> dict:
    """One RQ job per event on ``k`` default (forking) RQ workers."""
    from rq import Queue

    from bench.services import start_naive_workers
    from bench.naive import send_webhook

    path = f"/naive-k{k}"
    queue_name = f"bench-naive-k{k}"
    workers = start_naive_workers(k, ctx.redis.url, ctx.redis.client, queue_name, ctx.logdir)
    try:
        queue = Queue(queue_name, connection=ctx.redis.client)
        url = ctx.receiver.base_url + path
        events = call_events(n, ctx.calls, ctx.next_calls(ctx.calls))
        rx_cpu, w_cpu = ctx.receiver.cpu(), workers.cpu()
        started = time.time()
        for i, (event_type, payload) in enumerate(events):
            envelope = {"event_type": event_type, "timestamp_utc": int(started),
                        "payload": payload, "is_test": False}
            queue.enqueue(send_webhook, url, envelope, f"msg_naive{k}_{i}")
        arrivals = ctx.receiver.wait_for(path, n, timeout=n)  # at worst 1 s per job
        elapsed = max(at for at, _ in arrivals) - started
        return {"rate": n / elapsed, "events": n, "seconds": elapsed,
                "receiver_cpu_s": ctx.receiver.cpu() - rx_cpu,
                "worker_cpu_s": workers.cpu() - w_cpu}
    finally:
        workers.close()


# -- 3 and 6. Hookline end to end -----------------------------------------------


#: The settings every bench app and worker runs with (the workers get them as env).
BENCH_CONFIG = {"SECRET_KEY": "bench-secret-key", "HOOKLINE_ALLOWED_NETWORKS": "127.0.0.0/8"}


def bench_app(database_url: str, redis_url: str, receiver_url: str):
    """An app on ``database_url`` with its tables and the integration on for every event type; (app, secret).

    Imports the app where it is called: bench/baseline_child.py calls this
    after putting another tree first on sys.path.
    """
    from app import create_app
    from events import EVENT_TYPES
    from models import db
    from models.settings import get_settings
    from tasks.signing import generate_secret

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": redis_url, **BENCH_CONFIG})
    with app.app_context():
        db.create_all()
        settings = get_settings()
        settings.enabled, settings.events = True, list(EVENT_TYPES)
        settings.url = receiver_url + "/unused"
        settings.headers = [["X-Api-Key", "sk_bench_0123456789"]]
        settings.secret = generate_secret()
        db.session.commit()
        return app, settings.secret


def aim(app, url: str) -> None:
    """Send to ``url`` from now on (workers read the settings at send time)."""
    from models import db
    from models.settings import get_settings

    with app.app_context():
        get_settings().url = url
        db.session.commit()


def point_integration(ctx: Context, path: str) -> None:
    """Aim the integration at ``path`` on the receiver."""
    aim(ctx.app, ctx.receiver.base_url + path)


def start_workers(ctx: Context, k: int) -> Workers:
    """``k`` flask workers, warmed up (imports, database and HTTP connections) by a few events."""
    from bench.services import start_hookline_workers
    from tasks import publish_event

    workers = start_hookline_workers(k, ctx.worker_env, ctx.redis.client,
                                     ctx.app.config["HOOKLINE_QUEUE"], ctx.logdir)
    first = ctx.next_calls(k)
    path = f"{ctx.prefix}/warmup-k{k}-{first}"  # its own path each time: rounds start workers again
    point_integration(ctx, path)
    warmup = call_events(10 * k, k, first)
    with ctx.app.app_context():
        for event_type, payload in warmup:
            publish_event(event_type, payload)
    ctx.receiver.wait_for(path, len(warmup), timeout=60)
    return workers


def drain_jobs(ctx: Context) -> int:
    """Jobs the Hookline workers have finished so far (RQ keeps the count per worker)."""
    from rq import Queue, Worker

    from tasks.jobs import SERIALIZER

    queue = Queue(ctx.app.config["HOOKLINE_QUEUE"], connection=ctx.redis.client, serializer=SERIALIZER)
    return sum(w.successful_job_count for w in Worker.all(queue=queue))


def _last_delivery_id() -> int:
    from models import db
    from models.events import Delivery

    return db.session.scalar(select(func.max(Delivery.id))) or 0


def _recorded(after_id: int) -> tuple[int, int]:
    """(deliveries delivered, attempts recorded) for deliveries with id > after_id."""
    from models import db
    from models.events import DELIVERED, Attempt, Delivery

    delivered = db.session.scalar(
        select(func.count()).select_from(Delivery)
        .where(Delivery.id > after_id, Delivery.status == DELIVERED))
    attempts = db.session.scalar(
        select(func.count()).select_from(Attempt).where(Attempt.delivery_id > after_id))
    db.session.rollback()  # end the read transaction so the next poll sees new commits
    return delivered, attempts


def verify_samples(ctx: Context, path: str) -> tuple[int, int]:
    """(verified, sampled): the receiver's kept requests checked with standardwebhooks."""
    samples = ctx.receiver.samples(path)
    ok = 0
    webhook = Webhook(ctx.secret)
    for s in samples:
        try:
            webhook.verify(base64.b64decode(s["body"]), s["headers"])
            ok += 1
        except WebhookVerificationError:
            pass
    return ok, len(samples)


def out_of_order(ids: list[str], events, arrivals) -> int:
    """How many arrivals came before an earlier-published event of the same call."""
    from events import call_id_of

    position = {event_id: i for i, event_id in enumerate(ids)}
    call_of = {event_id: call_id_of(t, p) for event_id, (t, p) in zip(ids, events)}
    last_seen: dict[str, int] = {}
    late = 0
    for _, event_id in sorted(arrivals):
        call, pos = call_of.get(event_id), position.get(event_id, -1)
        if call in last_seen and pos < last_seen[call]:
            late += 1
        last_seen[call] = max(pos, last_seen.get(call, -1))
    return late


def publish_concurrently(app, events: list[tuple[str, dict]], publishers: int) -> list[str]:
    """Publish ``events`` from ``publishers`` threads, as an engine running many calls does.

    Each call belongs to one thread (call ``i`` of the run to thread
    ``i % publishers``), which publishes that call's events in their order;
    the threads run side by side, like the call handlers of a telephony
    engine. Returns the event ids, in the order of ``events``.
    """
    from events import call_id_of
    from tasks import publish_event

    owner: dict = {}
    shares: list[list[int]] = [[] for _ in range(publishers)]
    for index, (event_type, payload) in enumerate(events):
        call = call_id_of(event_type, payload)
        shares[owner.setdefault(call, len(owner) % publishers)].append(index)
    ids: list = [None] * len(events)
    failures: list = []

    def publish_share(share):
        try:
            with app.app_context():
                for index in share:
                    ids[index] = publish_event(*events[index])
        except Exception as exc:  # shown by the caller; a lost thread would just look slow
            failures.append(exc)

    threads = [threading.Thread(target=publish_share, args=(share,)) for share in shares if share]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return ids


def hookline(ctx: Context, workers: Workers, k: int, m: int, tag: str = "",
             publishers: int = 1) -> dict:
    """M events across C calls published from P threads, until the receiver has them all."""
    path = f"{ctx.prefix}/hookline-k{k}-m{m}-p{publishers}{tag}"
    point_integration(ctx, path)
    events = call_events(m, ctx.calls, ctx.next_calls(ctx.calls))
    with ctx.app.app_context():
        before, jobs = _last_delivery_id(), drain_jobs(ctx)
        rx_cpu, w_cpu, box = ctx.receiver.cpu(), workers.cpu(), box_cpu_seconds()
        started = time.time()
        ids = publish_concurrently(ctx.app, events, publishers)
        published = time.time() - started
        arrivals = ctx.receiver.wait_for(path, m, timeout=max(60, m / 20))
        elapsed = max(at for at, _ in arrivals) - started
        rx_cpu, w_cpu, box = ctx.receiver.cpu() - rx_cpu, workers.cpu() - w_cpu, box_cpu_seconds() - box
        # The receiver answers before the worker commits the attempt: give it a moment.
        try:
            wait_until(lambda: _recorded(before) == (m, m), 30, "every attempt recorded", 0.1)
        except AssertionError:  # tests.support.wait_until's timeout
            pass
        delivered, attempts = _recorded(before)
        jobs = drain_jobs(ctx) - jobs
    time.sleep(0.2)  # a duplicate would show up right behind the last arrival
    received = [event_id for _, event_id in ctx.receiver.arrivals[path]]
    verified, sampled = verify_samples(ctx, path)
    return {
        "rate": m / elapsed, "events": m, "calls": ctx.calls, "publishers": publishers,
        "seconds": elapsed,
        "publish_seconds": published, "publish_rate": m / published,
        "received": len(received), "distinct": len(set(received)),
        "missing": len(set(ids) - set(received)), "duplicates": len(received) - len(set(received)),
        "delivered_rows": delivered, "attempt_rows": attempts,
        "signatures_verified": f"{verified}/{sampled}",
        "out_of_call_order": out_of_order(ids, events, arrivals),
        "receiver_cpu_s": rx_cpu, "worker_cpu_s": w_cpu,
        "worker_cpu_per_event_ms": w_cpu / m * 1000,
        # The whole box (publisher, database, Redis, workers, anyone else) less the receiver.
        "cpu_ms_per_event": (box - rx_cpu) / m * 1000,
        "drain_jobs": jobs, "events_per_drain_job": m / max(1, jobs),
        "worker_rss_mb": workers.rss(),
    }


def drain_only(ctx: Context, k: int, m: int, calls: int | None = None) -> dict:
    """The workers alone: M events of ``calls`` calls already in the outbox, then K workers start.

    A diagnostic beside line 3, whose single publishing process may be the
    limit: timed from the first arrival to the last, so worker start-up is
    not counted (nor in the CPU per event, read from the first arrival on).
    The backlog goes in with ``publish_events``, 100 at a time.
    """
    from bench.services import start_hookline_workers
    from tasks import publish_events

    calls = calls or ctx.calls
    path = f"{ctx.prefix}/drain-only-k{k}-c{calls}-{ctx.next_calls(1)}"
    point_integration(ctx, path)
    events = call_events(m, calls, ctx.next_calls(calls))
    with ctx.app.app_context():
        for i in range(0, m, 100):
            publish_events(events[i:i + 100])
    workers = start_hookline_workers(k, ctx.worker_env, ctx.redis.client,
                                     ctx.app.config["HOOKLINE_QUEUE"], ctx.logdir)
    try:
        jobs = drain_jobs(ctx)
        wait_until(lambda: ctx.receiver.count(path) > 0, 60, "the first arrival", 0.005)
        rx_cpu, w_cpu, box, seen = ctx.receiver.cpu(), workers.cpu(), box_cpu_seconds(), ctx.receiver.count(path)
        arrivals = ctx.receiver.wait_for(path, m, timeout=max(60, m / 20))
        rx_cpu, w_cpu, box = ctx.receiver.cpu() - rx_cpu, workers.cpu() - w_cpu, box_cpu_seconds() - box
        times = sorted(at for at, _ in arrivals)
        seconds = times[-1] - times[0]
        try:  # RQ counts a job when it ends, just after its last delivery arrived
            wait_until(lambda: drain_jobs(ctx) > jobs, 5, "the drain job to finish", 0.05)
        except AssertionError:  # tests.support.wait_until's timeout
            pass
        return {"workers": k, "rate": (m - 1) / seconds, "events": m, "calls": min(calls, m),
                "seconds": seconds, "receiver_cpu_s": rx_cpu,
                "worker_cpu_per_event_ms": w_cpu / max(1, m - seen) * 1000,
                "cpu_ms_per_event": (box - rx_cpu) / max(1, m - seen) * 1000,
                "drain_jobs": drain_jobs(ctx) - jobs, "worker_rss_mb": workers.rss()}
    finally:
        workers.close()
