"""Line 8's one run: line 3's scenario on one code tree, in a process of its own; prints JSON.

Run as ``python -P bench/baseline_child.py '<json>'`` by bench/baseline.py.
Both trees have top-level ``app``, ``tasks`` and ``models`` packages, so
each run imports only the tree it measures (first on sys.path) and nothing
of bench/ (the issue's tree has a bench/ of its own): what it needs of the
harness (the receiver's arrival logs, /proc readings) is written out here.
The scenario is line 3's: a warm worker started from the tree, M events of
C calls published one ``publish_event`` at a time in this process, timed
until the receiver has the last one.
"""

import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """A process's CPU time and its reaped children's, from /proc (as bench.services reads it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / TICKS


def box_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy, from /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICKS


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:", 1)[1].split()[0]) / 1024


class Arrivals:
    """The receiver's arrival logs (``at path webhook_id`` lines), read on from where the last read stopped."""

    def __init__(self, logdir: str):
        self.logdir, self.offsets, self.seen = Path(logdir), {}, {}

    def at(self, path: str) -> list[tuple[float, str]]:
        for name in self.logdir.glob("arrivals-*.log"):
            with open(name, "rb") as f:
                f.seek(self.offsets.get(name, 0))
                data = f.read()
            whole = data[: data.rfind(b"\n") + 1]
            self.offsets[name] = self.offsets.get(name, 0) + len(whole)
            for line in whole.decode().splitlines():
                at, where, webhook_id = line.split(" ")
                self.seen.setdefault(where, []).append((float(at), webhook_id))
        return self.seen.get(path, [])

    def wait_for(self, path: str, count: int, timeout: float) -> list[tuple[float, str]]:
        deadline = time.monotonic() + timeout
        while len(self.at(path)) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"{len(self.at(path))} of {count} requests reached {path}")
            time.sleep(0.01)
        return self.at(path)


def call_events(call_lifecycle, m: int, calls: int, first: int) -> list:
    """M events of C calls interleaved as bench.scenarios.call_events makes them (the tree's own generator)."""
    random.seed(first)
    per_call = max(5, -(-m // calls))
    lifecycles = [call_lifecycle(first + i, "outbound", per_call - 4) for i in range(calls)]
    return [call[i] for i in range(per_call) for call in lifecycles if i < len(call)][:m]


def database(args: dict) -> tuple[str, str | None]:
    """A database of this run's own: (its URL, the PostgreSQL database's name to drop, or None)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if not args["database_url"]:
        return f"sqlite:///{Path(args['workdir']) / (args['tag'] + '.sqlite')}", None
    name = "hookline_bench_" + uuid.uuid4().hex[:8]
    engine = create_engine(args["database_url"], isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(args["database_url"]).set(database=name).render_as_string(hide_password=False), name


def drop(server_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def main(args: dict) -> dict:
    tree = args["tree"]
    sys.path.insert(0, tree)
    os.chdir(tree)
    os.environ["HOOKLINE_ENV"] = "testing"
    import redis

    redis.Redis.from_url(args["redis_url"]).flushdb()  # no job left by the other tree's run
    url, dropped = database(args)
    from app import create_app
    from cli.devtools import call_lifecycle
    from events import EVENT_TYPES
    from models import db
    from models.settings import get_settings
    from tasks import publish_event
    from tasks.signing import generate_secret

    common = {"SECRET_KEY": "bench-secret-key", "HOOKLINE_ALLOWED_NETWORKS": "127.0.0.0/8"}
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": args["redis_url"], **common})

    def point(path: str) -> None:
        with app.app_context():
            settings = get_settings()
            settings.url = args["receiver_url"] + path
            db.session.commit()

    with app.app_context():
        db.create_all()
        settings = get_settings()
        settings.enabled, settings.events = True, list(EVENT_TYPES)
        settings.url, settings.headers = args["receiver_url"] + "/unused", [["X-Api-Key", "sk_bench_0123456789"]]
        settings.secret = generate_secret()
        db.session.commit()
    env = {**os.environ, **common, "DATABASE_URL": url, "REDIS_URL": args["redis_url"], "PYTHONPATH": tree}
    with open(Path(args["workdir"]) / f"{args['tag']}-worker.log", "w") as log:
        worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker"], cwd=tree, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    arrivals, tag, m = Arrivals(args["receiver_logdir"]), args["tag"], args["events"]
    try:
        warmup = f"/baseline/{tag}/warmup"
        point(warmup)
        with app.app_context():
            for event_type, payload in call_events(call_lifecycle, 10, 1, 10**6):
                publish_event(event_type, payload)
        arrivals.wait_for(warmup, 10, 60)
        path = f"/baseline/{tag}/run"
        point(path)
        events = call_events(call_lifecycle, m, args["calls"], 2 * 10**6)
        receiver_pids = args["receiver_pids"]
        box, rx, own = box_cpu_seconds(), sum(map(cpu_seconds, receiver_pids)), cpu_seconds(worker.pid)
        started = time.time()
        with app.app_context():
            ids = [publish_event(event_type, payload) for event_type, payload in events]
        published = time.time() - started
        got = arrivals.wait_for(path, m, max(120, m / 20))
        box, rx = box_cpu_seconds() - box, sum(map(cpu_seconds, receiver_pids)) - rx
        own = cpu_seconds(worker.pid) - own
        received = [webhook_id for _, webhook_id in got]
        return {"tree": tree, "events": m, "calls": args["calls"], "rate": m / (max(at for at, _ in got) - started),
                "publish_rate": m / published, "cpu_ms_per_event": (box - rx) / m * 1000,
                "worker_cpu_per_event_ms": own / m * 1000, "worker_rss_mb": rss_mb(worker.pid),
                "received": len(received), "missing": len(set(ids) - set(received)),
                "duplicates": len(received) - len(set(received))}
    finally:
        worker.terminate()
        worker.wait(10)
        if dropped:
            with app.app_context():
                db.engine.dispose()
            drop(args["database_url"], dropped)


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
