"""Line 8's one run: line 3's scenario on one code tree, in a process of its own; prints JSON.

Run as ``python -m bench.baseline_child '<json>'`` from the repository's
root by bench/baseline.py. Both trees have top-level ``app``, ``tasks`` and
``models``: the harness's own modules (bench.services, bench.harness,
none of which imports the app at import time) are loaded first, from this
tree; then the measured tree goes first on sys.path, so every app module
imported afterwards (the publish, the worker's, and harness.call_events'
call generator) is that tree's. The scenario is line 3's: a warm worker
started from the tree, M events of C calls published one ``publish_event``
at a time in this process, timed until the receiver has the last one.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

from bench.harness import BENCH_CONFIG, aim, bench_app, call_events
from bench.services import ArrivalLog, Database, box_cpu_seconds, cpu_seconds, rss_mb


def publish_all(app, events) -> list[str]:
    from tasks import publish_event

    with app.app_context():
        return [publish_event(event_type, payload) for event_type, payload in events]


def measure(app, worker, args: dict) -> dict:
    """Warm the worker up, then time M events from the first publish to the last arrival."""
    arrivals, tag, m = ArrivalLog(args["receiver_logdir"]), args["tag"], args["events"]
    warmup = f"/baseline/{tag}/warmup"
    aim(app, args["receiver_url"] + warmup)
    publish_all(app, call_events(10, 1, 10**6))
    arrivals.wait_for(warmup, 10, 60)
    path = f"/baseline/{tag}/run"
    aim(app, args["receiver_url"] + path)
    events = call_events(m, args["calls"], 2 * 10**6)
    receiver = args["receiver_pids"]
    box, rx, own = box_cpu_seconds(), sum(map(cpu_seconds, receiver)), cpu_seconds(worker.pid)
    started = time.time()
    ids = publish_all(app, events)
    published = time.time() - started
    got = arrivals.wait_for(path, m, max(120, m / 20))
    box, rx, own = box_cpu_seconds() - box, sum(map(cpu_seconds, receiver)) - rx, cpu_seconds(worker.pid) - own
    received = [webhook_id for _, webhook_id in got]
    return {"tree": args["tree"], "events": m, "calls": args["calls"],
            "rate": m / (max(at for at, _ in got) - started), "publish_rate": m / published,
            "cpu_ms_per_event": (box - rx) / m * 1000, "worker_cpu_per_event_ms": own / m * 1000,
            "worker_rss_mb": rss_mb(worker.pid), "received": len(received),
            "missing": len(set(ids) - set(received)), "duplicates": len(received) - len(set(received))}


def main(args: dict) -> dict:
    tree = args["tree"]
    sys.path.insert(0, tree)
    os.environ["HOOKLINE_ENV"] = "testing"
    redis.Redis.from_url(args["redis_url"]).flushdb()  # no job left by the other tree's run
    database = Database(Path(args["workdir"]), args["database_url"], name=args["tag"])
    app, worker = None, None
    try:
        app, _ = bench_app(database.url, args["redis_url"], args["receiver_url"])
        env = {**os.environ, **BENCH_CONFIG, "DATABASE_URL": database.url, "REDIS_URL": args["redis_url"],
               "PYTHONPATH": tree}
        with open(Path(args["workdir"]) / f"{args['tag']}-worker.log", "w") as log:
            worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker"], cwd=tree,
                                      env=env, stdout=log, stderr=subprocess.STDOUT)
        return measure(app, worker, args)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(10)
        if app is not None:
            from models import db

            with app.app_context():
                db.engine.dispose()
        database.close()


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
