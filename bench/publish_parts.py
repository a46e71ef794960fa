"""``python -m bench.publish_parts``: what one PostgreSQL publish costs, and what each of its parts adds.

Line 3 on PostgreSQL is bound by the publishing loop: one ``publish_event``
is one autocommit statement, and the loop waits for it (tasks.publish_pg).
This measures that round trip for variants of the schema or the connection,
each on a fresh database of its own, in one process: one thread per
variant, each with its own connection, taking turns in blocks of publishes
(base, variant, ..., then the reverse order), so that the box's changing
speed falls on every variant alike. Per publish it reports the server
backend's CPU (from /proc), the publishing thread's CPU and the wall time;
then each variant's median ratio to ``base`` over the rounds.

The variants are experiments, not configurations Hookline offers: a
variant that drops the foreign key or an index shows what that part of the
write costs, nothing more (the app needs them all). ``unix`` is the same
schema over the server's Unix socket instead of TCP on 127.0.0.1: a
deployment choice (docs in bench/README.md, "Capacity").
"""

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench import harness
from bench.services import Database, RedisServer, cpu_seconds

#: Each variant: what is run on its fresh database before it publishes.
VARIANTS = {
    "base": [],
    "no_fk": ["ALTER TABLE deliveries DROP CONSTRAINT deliveries_event_seq_fkey"],
    "no_call_status_idx": ["DROP INDEX ix_deliveries_call", "DROP INDEX ix_deliveries_status"],
    "unix": [],
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.publish_parts", description=__doc__.splitlines()[0])
    p.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1/postgres",
                   help="the server: a throw-away database per variant is created on it")
    p.add_argument("--variants", default="base,no_fk,no_call_status_idx,unix",
                   help=f"comma-separated, the first is the base (known: {', '.join(VARIANTS)})")
    p.add_argument("--block", type=int, default=1500, help="publishes per variant per round")
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args(argv)
    args.variants = args.variants.split(",")
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        p.error(f"--variants: unknown {', '.join(sorted(unknown))}")
    return args


class Turns:
    """Lets one variant's thread run a block at a time, in the order the main thread gives."""

    def __init__(self, names):
        self.go = {name: threading.Semaphore(0) for name in names}
        self.done = threading.Semaphore(0)

    def run(self, name) -> None:
        """Let ``name`` run one block, and wait until it has."""
        self.go[name].release()
        self.done.acquire()


def publish_blocks(name, database_url, redis_url, args, turns, figures, failures) -> None:
    """A variant's thread: set up, publish a warm-up block, then one block per turn (figures[name])."""
    from models import db
    from tasks.publish import publish_event

    try:
        app, _ = harness.bench_app(database_url, redis_url, "http://127.0.0.1:9")
        with app.app_context():
            for statement in VARIANTS[name]:
                db.session.execute(text(statement))
            db.session.commit()
            events = harness.call_events(args.block * (args.rounds + 1), 50, 1_000)
            for event_type, payload in events[:args.block]:
                publish_event(event_type, payload)
            backend = harness.publisher_backend_pid()
    except Exception as exc:  # reported by the main thread; the variant is left out
        failures[name] = exc
        turns.done.release()
        return
    turns.done.release()
    with app.app_context():
        for r in range(1, args.rounds + 1):
            turns.go[name].acquire()
            try:
                if name not in failures:
                    b0, c0, t0 = cpu_seconds(backend), time.thread_time(), time.perf_counter()
                    for event_type, payload in events[args.block * r:args.block * (r + 1)]:
                        publish_event(event_type, payload)
                    b1, c1, t1 = cpu_seconds(backend), time.thread_time(), time.perf_counter()
                    figures[name].append(tuple(1e6 * d / args.block for d in (b1 - b0, c1 - c0, t1 - t0)))
            except Exception as exc:  # its later turns pass; the main thread goes on with the others
                failures[name] = exc
            finally:
                turns.done.release()
        harness.close_publisher_connection()
        db.engine.dispose()


def main(argv=None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hookline-parts-") as workdir:
        redis = RedisServer(Path(workdir))
        databases = {name: Database(Path(workdir), args.database_url) for name in args.variants}
        try:
            figures, failures = {name: [] for name in args.variants}, {}
            turns = Turns(args.variants)
            threads = []
            for name, database in databases.items():
                url = database.url
                if name == "unix":  # no host: libpq's default socket directory
                    url = make_url(url).set(host=None).render_as_string(hide_password=False)
                thread = threading.Thread(target=publish_blocks,
                                          args=(name, url, redis.url, args, turns, figures, failures))
                thread.start()
                turns.done.acquire()  # set up and warmed, one at a time
                threads.append(thread)
            running = [name for name in args.variants if name not in failures]
            for r in range(args.rounds):
                for name in running if r % 2 == 0 else running[::-1]:
                    turns.run(name)
            for thread in threads:
                thread.join()
        finally:
            for database in databases.values():
                database.close()
            redis.close()
    report(args, figures, failures)


def report(args, figures: dict, failures: dict) -> None:
    """Print each variant's medians per publish and its ratios to the base."""
    print(f"{args.rounds} rounds of {args.block} publishes per variant; µs per publish, median [range]")
    for name, error in failures.items():
        print(f"{name}: not measured ({error})")
    base = figures[args.variants[0]]
    for name, rows in figures.items():
        if not rows:
            continue
        columns = list(zip(*rows))
        line = "  ".join(f"{label} {statistics.median(c):6.1f} [{min(c):.0f}-{max(c):.0f}]"
                         for label, c in zip(("backend", "client", "wall"), columns))
        if base and name != args.variants[0]:
            ratios = [statistics.median(a[i] / b[i] for a, b in zip(rows, base)) for i in (0, 2)]
            line += f"  ÷ {args.variants[0]}: backend {ratios[0]:.3f}, wall {ratios[1]:.3f}"
        print(f"{name:>20}  {line}")


if __name__ == "__main__":
    main()
