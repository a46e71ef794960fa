"""``python -m bench.cpu_split``: where line 3's CPU per event goes, process by process.

Line 3's scenario once (one warm worker, one ``publish_event`` loop in this
process, M events of C calls, until the receiver has the last one), with
each process's CPU read from /proc before and after: this process (the
publisher), the worker, the publisher's own database backend, the worker's
backends, the server's other processes (WAL writer, checkpointer...),
Redis, and the kernel's interrupt time. Their sum is set against the whole
box's busy time less the receiver's, which is what line 3 reports; the
receiver is shown apart, as there.

PostgreSQL only: SQLite has no server processes to tell apart.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench import harness
from bench.services import CLOCK_TICKS, Database, Receiver, RedisServer, box_cpu_seconds, cpu_seconds


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.cpu_split", description=__doc__.splitlines()[0])
    p.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1/postgres",
                   help="the PostgreSQL server: a throw-away database is created on it")
    p.add_argument("--events", "-m", type=int, default=20_000)
    p.add_argument("--calls", type=int, default=50)
    return p.parse_args(argv)


def server_processes() -> dict[int, str]:
    """Every PostgreSQL server process on this machine: pid → its title (``postgres: 15/main: walwriter``)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if title.startswith("postgres:"):
            found[int(pid)] = title
    return found


def interrupt_seconds() -> float:
    """CPU seconds the kernel has spent in hard and soft interrupts (the loopback's packets), all cores."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return (int(fields[5]) + int(fields[6])) / CLOCK_TICKS


def server_role(title: str, pid: int, publisher_backend: int, database: str) -> str:
    """Which row of the report a server process's CPU goes to."""
    if pid == publisher_backend:
        return "database: the publisher's backend"
    if f" {database} " in f"{title} ":
        return "database: the worker's backends"
    role = title.rsplit(":", 1)[-1].strip()  # walwriter, checkpointer, background writer, ...
    return "database: other sessions" if "(" in role or "[local]" in role else f"database: {role}"


def measure(ctx, workers, m: int, calls: int) -> dict:
    """Run line 3's scenario once; each process's (or group's) CPU seconds, and the rates."""
    from tasks import publish_event

    path = f"{ctx.prefix}/cpu-split"
    harness.point_integration(ctx, path)
    events = harness.call_events(m + 1, calls, ctx.next_calls(calls))
    with ctx.app.app_context():
        publish_event(*events[0])  # opens the publishing thread's own connection
        ctx.receiver.wait_for(path, 1, timeout=30)
        publisher_backend = harness.publisher_backend_pid()
        servers = server_processes()

        def readings():
            return {"publisher": time.process_time(), "worker": workers.cpu(),
                    "redis": cpu_seconds(ctx.redis.proc.pid), "interrupts": interrupt_seconds(),
                    "receiver": ctx.receiver.cpu(), "box": box_cpu_seconds(),
                    **{pid: cpu_seconds(pid) for pid in servers}}

        before, started = readings(), time.time()
        for event in events[1:]:
            publish_event(*event)
        published = time.time()
        ctx.receiver.wait_for(path, m + 1, timeout=max(60, m / 100))
        ended, after = time.time(), readings()
        harness.close_publisher_connection()
    spent = {key: after[key] - before[key] for key in before}
    rows = {"the publishing process": spent.pop("publisher"), "the worker": spent.pop("worker"),
            "redis": spent.pop("redis"), "kernel interrupts": spent.pop("interrupts")}
    for pid, title in servers.items():
        role = server_role(title, pid, publisher_backend, ctx.database.name)
        rows[role] = rows.get(role, 0.0) + spent.pop(pid)
    return {"rows": rows, "receiver": spent["receiver"], "box": spent["box"],
            "rate": m / (ended - started), "publish_rate": m / (published - started)}


def main(argv=None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hookline-cpu-split-") as workdir:
        workdir = Path(workdir)
        (workdir / "logs").mkdir()
        redis, receiver = RedisServer(workdir), Receiver(workdir)
        database = Database(workdir, args.database_url)
        workers = None
        try:
            ctx = harness.make_context(database, redis, receiver, workdir, args.calls)
            workers = harness.start_workers(ctx, 1)
            out = measure(ctx, workers, args.events, args.calls)
        finally:
            if workers is not None:
                workers.close()
            receiver.close()
            redis.close()
            database.close()
    m = args.events
    print(f"line 3's scenario on PostgreSQL, {m:,} events of {args.calls} calls: {out['rate']:,.0f} ev/s end to end,"
          f" the publish loop {out['publish_rate']:,.0f} ev/s; CPU ms per event")
    for name, seconds in sorted(out["rows"].items(), key=lambda row: -row[1]):
        if 1000 * seconds / m < 0.0005:
            continue
        print(f"  {name:38} {1000 * seconds / m:.3f}")
    print(f"  {'sum of the above':38} {1000 * sum(out['rows'].values()) / m:.3f}")
    print(f"  {'the box but the receiver (line 3)':38} {1000 * (out['box'] - out['receiver']) / m:.3f}")
    print(f"  {'the receiver':38} {1000 * out['receiver'] / m:.3f}")


if __name__ == "__main__":
    main()
