"""The throughput measurements, one function per line of the report (lines 4 and 5: bench/paced.py).

Each scenario takes the shared :class:`bench.harness.Context` (the app, Redis, the
receiver, the database) and returns a dict of figures. Scenarios that need
workers get them from the caller, so several scenarios can share a set of
warm workers. Every request of a scenario goes to its own receiver path,
which is how arrivals are told apart.
"""

import subprocess
import sys
import threading
import time

from bench.harness import (Context, call_events, drain_jobs, last_delivery_id, out_of_order, point_integration,
                           recorded, verify_samples)
from bench.services import ROOT, Workers, box_cpu_seconds, wait_until

#: Headers like the ones Hookline sends, so the ceiling posts the same bytes.
FAKE_SIGNATURE = "v1," + "A" * 44


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


def publish_batches(app, events: list[tuple[str, dict]], size: int) -> list[str]:
    """Publish ``events`` from one thread, ``size`` at a time with ``publish_events`` (the engine's batch API)."""
    from tasks import publish_events

    ids: list = []
    with app.app_context():
        for start in range(0, len(events), size):
            ids += publish_events(events[start:start + size])
    return ids


def hookline(ctx: Context, workers: Workers, k: int, m: int, tag: str = "",
             publishers: int = 1, batch: int = 1) -> dict:
    """M events across C calls published from P threads, until the receiver has them all.

    With ``batch`` > 1: from one thread, ``batch`` at a time (publish_batches).
    """
    path = f"{ctx.prefix}/hookline-k{k}-m{m}-p{publishers}-b{batch}{tag}"
    point_integration(ctx, path)
    events = call_events(m, ctx.calls, ctx.next_calls(ctx.calls))
    with ctx.app.app_context():
        before, jobs = last_delivery_id(), drain_jobs(ctx)
        rx_cpu, w_cpu, box = ctx.receiver.cpu(), workers.cpu(), box_cpu_seconds()
        started = time.time()
        if batch > 1:
            ids = publish_batches(ctx.app, events, batch)
        else:
            ids = publish_concurrently(ctx.app, events, publishers)
        published = time.time() - started
        arrivals = ctx.receiver.wait_for(path, m, timeout=max(60, m / 20))
        elapsed = max(at for at, _ in arrivals) - started
        rx_cpu, w_cpu, box = ctx.receiver.cpu() - rx_cpu, workers.cpu() - w_cpu, box_cpu_seconds() - box
        # The receiver answers before the worker commits the attempt: give it a moment.
        try:
            wait_until(lambda: recorded(before) == (m, m), 30, "every attempt recorded", 0.1)
        except AssertionError:  # tests.support.wait_until's timeout
            pass
        delivered, attempts = recorded(before)
        jobs = drain_jobs(ctx) - jobs
    time.sleep(0.2)  # a duplicate would show up right behind the last arrival
    received = [event_id for _, event_id in ctx.receiver.arrivals[path]]
    verified, sampled = verify_samples(ctx, path)
    return {
        "rate": m / elapsed, "events": m, "calls": ctx.calls, "publishers": publishers, "batch": batch,
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
