"""The like-for-like reference lines: the raw-socket ceiling and the Celery peer.

Both go to the same receiver as Hookline's lines. CPU per event is the whole
box's busy CPU during the line less the receiver's (``box_cpu_seconds``), so
the figure covers the broker, the database and the senders alike.
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.services import ROOT, _log, box_cpu_seconds, cpu_seconds, rss_mb, stop, wait_until


def raw_ceiling(ctx, k: int, n: int, concurrency: int) -> dict:
    """K processes, each keeping ``concurrency`` signed keep-alive requests in flight (bench/rawclient.py)."""
    path = f"/raw-k{k}-c{concurrency}-{ctx.next_calls(1)}"
    start_at = time.time() + 1.5  # time for the interpreters to start and connect
    procs = [subprocess.Popen([sys.executable, "-m", "bench.rawclient", ctx.receiver.base_url + path,
                               str(n // k), str(concurrency), ctx.secret, str(start_at)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
             for _ in range(k)]
    while time.time() < start_at:
        time.sleep(0.005)
    rx_cpu, box = ctx.receiver.cpu(), box_cpu_seconds()
    outs = [p.communicate(timeout=600)[0].split() for p in procs]
    rx_cpu, box = ctx.receiver.cpu() - rx_cpu, box_cpu_seconds() - box
    sent = sum(int(o[0]) for o in outs)
    seconds = max(float(o[2]) for o in outs) - min(float(o[1]) for o in outs)
    return {"rate": sent / seconds, "requests": sent, "seconds": seconds, "concurrency": concurrency,
            "receiver_cpu_s": rx_cpu, "cpu_ms_per_event": (box - rx_cpu) / sent * 1000}


def celery(ctx, pool: str, concurrency: int, n: int) -> dict:
    """One Celery task per event (Redis broker), on one ``celery worker --pool POOL -c C``."""
    from bench.celery_peer import app as celery_app
    from tasks.publish import envelope_body

    from bench.harness import call_events

    path = f"/celery-{pool}-{ctx.next_calls(1)}"
    url = ctx.receiver.base_url + path
    celery_app.conf.broker_url = ctx.redis.url
    env = {**ctx.worker_env, "BENCH_CELERY_BROKER": ctx.redis.url, "BENCH_CELERY_SECRET": ctx.secret}
    celery_bin = str(Path(sys.executable).parent / "celery")
    worker = subprocess.Popen([celery_bin, "-A", "bench.celery_peer", "worker", "--pool", pool,
                               "-c", str(concurrency), "--loglevel", "WARNING", "--without-gossip",
                               "--without-mingle", "--without-heartbeat"],
                              cwd=ROOT, env=env, stdout=(out := _log(ctx.logdir, f"celery-{pool}")), stderr=out)
    try:
        stamp = int(time.time())
        send = celery_app.tasks["bench.send_webhook"]
        send.delay(url, "{}", "msg_celery_warmup", stamp)
        wait_until(lambda: ctx.receiver.count(path) >= 1, 60, "the Celery worker's first task")
        events = call_events(n, ctx.calls, ctx.next_calls(ctx.calls))
        rx_cpu, box, w_cpu = ctx.receiver.cpu(), box_cpu_seconds(), cpu_seconds(worker.pid)
        started = time.time()
        for i, (event_type, payload) in enumerate(events):
            body = envelope_body(event_type, stamp, payload, False)
            send.delay(url, body, f"msg_celery_{pool}_{i}", stamp)
        published = time.time() - started
        arrivals = ctx.receiver.wait_for(path, n + 1, timeout=max(120, n / 20))
        elapsed = max(at for at, _ in arrivals) - started
        rss = rss_mb(worker.pid)
        rx_cpu, box = ctx.receiver.cpu() - rx_cpu, box_cpu_seconds() - box
        return {"rate": n / elapsed, "events": n, "seconds": elapsed, "pool": pool,
                "concurrency": concurrency, "enqueue_rate": n / published,
                "receiver_cpu_s": rx_cpu, "cpu_ms_per_event": (box - rx_cpu) / n * 1000,
                "worker_cpu_per_event_ms": (cpu_seconds(worker.pid) - w_cpu) / n * 1000,
                "worker_rss_mb": rss}
    finally:
        stop([worker], timeout=5)


def aggregate_rounds(results: dict) -> None:
    """Replace each list of round results (ceiling, Celery threads, Hookline k1, drain only k1) by its median run."""
    sections = [results.get(section, {}) for section in ("raw_ceiling", "celery")]
    for d in results.get("databases", {}).values():
        sections += [d.get("hookline", {}), d.get("drain_only", {})]
    for section in sections:
        for key, runs in section.items():
            if isinstance(runs, list):
                section[key] = _median_run(runs)


def _median_run(runs: list[dict]) -> dict:
    """The run with the median rate, its rate the median, and every round's rate in ``rates``."""
    rates = sorted(r["rate"] for r in runs)
    middle = sorted(runs, key=lambda r: r["rate"])[len(runs) // 2]
    return {**middle, "rate": statistics.median(rates), "rates": rates}
