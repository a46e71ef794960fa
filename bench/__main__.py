"""``python -m bench`` (``make bench``): measure Hookline against the box's own ceiling.

One run starts a private Redis, one receiver (shared by every line) and,
per scenario, its own workers; it prints the table of bench/report.py and
writes bench/results.json. See bench/README.md for what each line means.
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench import baseline, harness, logpage, paced, peers, report, scaling, scenarios
from bench.services import Database, Receiver, RedisServer, box_cpu_seconds


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="shorter run: 3×M instead of 10×M, 5 s paced phases, fewer naive jobs")
    p.add_argument("--events", "-m", type=int, help="M, events per throughput line (default 20,000; 3,000 with --quick)")
    p.add_argument("--scale-events", type=int, default=2000, help="M of the scaling line, which runs 3×M and SCALE×M")
    p.add_argument("--calls", type=int, default=50, help="C, concurrent simulated calls")
    p.add_argument("--publishers", type=int, default=4,
                   help="P, publishing threads of the extra line-3 run (each owns a share of the calls)")
    p.add_argument("--scale", type=int, help="the scaling run publishes SCALE×M events (default 10, 3 with --quick)")
    p.add_argument("--rate", type=float, default=50, help="events/s of the latency and publish-cost runs")
    p.add_argument("--rows", type=int, default=1_000_000,
                   help="deliveries already in the database for the scaling line and the log page")
    p.add_argument("--database-url", help="also run the database lines on PostgreSQL: a throw-away "
                   "database is created on this server (e.g. postgresql+psycopg://postgres@127.0.0.1/postgres)")
    p.add_argument("--receivers", type=int, default=2, help="receiver processes sharing the port")
    p.add_argument("--baseline-ref", default=baseline.ISSUE_REF,
                   help="line 8: the commit whose CPU per event this tree's is divided by (default: the one issue 23 measured)")
    p.add_argument("--lines", default="1-8", type=line_set,
                   help="which lines of the report to run: e.g. 7, or 1,2,7, or 3-6 (default all)")
    p.add_argument("--samples", type=int, default=20, help="requests per page and cache state in line 7")
    p.add_argument("--ceiling-requests", type=int, help="requests of the raw-socket ceiling "
                   "(default 60,000; 20,000 with --quick)")
    p.add_argument("--rounds", type=int, help="rounds of the ceiling and Celery lines, median and "
                   "range printed (default 3; 1 with --quick)")
    p.add_argument("--output", default=str(Path(__file__).with_name("results.json")))
    return p.parse_args(argv)


def line_set(value: str) -> set[int]:
    """``"7"``, ``"1,2,7"`` or ``"3-6"`` → the line numbers (1 to 8)."""
    lines = set()
    for part in value.split(","):
        first, _, last = part.strip().partition("-")
        try:
            lines.update(range(int(first), int(last or first) + 1))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--lines: {part!r} is not a line number or a range like 3-6")
    if not lines <= set(range(1, 9)):
        raise argparse.ArgumentTypeError(f"--lines: the lines are 1 to 8, got {sorted(lines)}")
    return lines


def say(message: str) -> None:
    """Progress on stderr; the table goes to stdout."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measured(scenario, *args) -> dict:
    """Run a scenario and note how busy the whole box was meanwhile (cores, out of os.cpu_count())."""
    busy, started = box_cpu_seconds(), time.time()
    out = scenario(*args)
    out["box_cores_busy"] = (box_cpu_seconds() - busy) / (time.time() - started)
    return out


def run_round(ctxs: dict, free, args, results: dict, concurrency: int, r: int) -> None:
    """One interleaved round of the like-for-like lines: ceiling, Celery threads, Hookline 1 worker, drain only 1 worker."""
    for k in (1, 2) if 1 in args.lines else ():
        say(f"raw-socket ceiling, {k} process(es) × {concurrency} in flight, {args.ceiling_requests} signed requests")
        results["raw_ceiling"].setdefault(k, []).append(
            measured(peers.raw_ceiling, free, k, args.ceiling_requests, concurrency))
    if 2 in args.lines:
        say(f"Celery threads -c 8, {args.events} events")
        results["celery"].setdefault("threads", []).append(measured(peers.celery, free, "threads", 8, args.events))
    for kind, ctx in ctxs.items() if 3 in args.lines else ():
        say(f"[{kind}] Hookline, 1 worker, {args.events} events, one publish_event per event")
        workers = harness.start_workers(ctx, 1)
        try:
            results["databases"][kind].setdefault("hookline", {}).setdefault("k1", []).append(
                # Its own receiver path each round: arrivals are counted per path.
                {"workers": 1, **measured(scenarios.hookline, ctx, workers, 1, args.events, f"-round{r}")})
        finally:
            workers.close()
        # Drain only, 1 worker (3b): throughput lines too, so in the rounds as well.
        for calls in (200, args.events):
            say(f"[{kind}] drain only: {args.events} events of {calls} calls waiting, then 1 worker starts")
            results["databases"][kind].setdefault("drain_only", {}).setdefault(f"k1-c{calls}", []).append(
                measured(scenarios.drain_only, ctx, 1, args.events, calls))


def run_database(ctx: harness.Context, args, out: dict) -> None:
    """The lines run once on one database: drain only, 2 workers, latency (3b-5), then scaling (6)."""
    config = ctx.app.config
    out["config"] = {k: config[k] for k in sorted(config) if k.startswith("HOOKLINE_") and "SECRET" not in k}
    m = args.events
    if 3 in args.lines:
        say(f"[{ctx.database.kind}] one thread's commit ceiling: {args.scale_events} × (PING + INSERT + commit)")
        out["commit_ceiling"] = measured(paced.commit_ceiling, ctx, args.scale_events)
        # The 1-worker drain-only lines ran in the rounds (run_round).
        say(f"[{ctx.database.kind}] drain only: {m} events of 200 calls waiting, then 2 workers start")
        out.setdefault("drain_only", {})["k2-c200"] = measured(scenarios.drain_only, ctx, 2, m, 200)
        say(f"[{ctx.database.kind}] Hookline, 1 worker, {m} events published 100 at a time (publish_events)")
        workers = harness.start_workers(ctx, 1)
        try:
            out.setdefault("hookline", {})["k1_batch100"] = {"workers": 1, **measured(
                scenarios.hookline, ctx, workers, 1, m, "", 1, 100)}
        finally:
            workers.close()
    if args.lines & {3, 4, 5}:
        workers = harness.start_workers(ctx, 2)
        try:
            run_two_workers(ctx, workers, args, out)
        finally:
            # Workers stuck on the hanging receiver would take the 10 s deadline per delivery.
            workers.close(timeout=2)
    if "hanging" in out:
        out["hanging"]["cancelled_afterwards"] = paced.cancel_open_deliveries(ctx)
    if 6 in args.lines:
        # Last: it fills the database with a million delivered rows first.
        out["scaling"] = measured(scaling.run, ctx, args.rows, args.scale_events, args.scale, say)


def run_two_workers(ctx: harness.Context, workers, args, out: dict) -> None:
    """Line 3 with 2 workers (one and P publishing threads), and the paced lines 4-5."""
    m = args.events
    if 3 in args.lines:
        say(f"[{ctx.database.kind}] Hookline, 2 workers, {m} events")
        out["hookline"]["k2"] = {"workers": 2, **measured(scenarios.hookline, ctx, workers, 2, m)}
        if args.publishers > 1:
            say(f"[{ctx.database.kind}] Hookline, 2 workers, {m} events from {args.publishers} publishing threads")
            out["hookline"]["k2_threads"] = {"workers": 2, **measured(
                scenarios.hookline, ctx, workers, 2, m, "", args.publishers)}
    if args.lines & {4, 5}:
        say(f"[{ctx.database.kind}] latency at {args.rate:g} ev/s for {args.paced_seconds:g} s")
        out["latency"] = measured(paced.latency, ctx, workers, args.rate, args.paced_seconds)
        say(f"[{ctx.database.kind}] publish cost while the receiver hangs")
        out["hanging"] = measured(paced.publish_while_hanging, ctx, workers, args.rate,
                                  args.paced_seconds)


def source_version() -> str:
    """The commit measured, and whether the work tree had changes (read-only git)."""
    import subprocess

    from bench.services import ROOT

    def git(*cmd):
        # --no-optional-locks: `status` must not even refresh the index of a shared tree.
        return subprocess.run(["git", "--no-optional-locks", *cmd], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def main(argv=None) -> int:
    args = parse_args(argv)
    args.scale = args.scale or (3 if args.quick else 10)
    args.paced_seconds = 5.0 if args.quick else 10.0
    ceiling_seconds = 3.0 if args.quick else 5.0
    naive_events = 100 if args.quick else 300
    args.events = args.events or (3000 if args.quick else 20_000)
    args.ceiling_requests = args.ceiling_requests or (20_000 if args.quick else 60_000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    concurrency = int(os.environ.get("HOOKLINE_SEND_CONCURRENCY", "8"))

    os.environ["HOOKLINE_ENV"] = "testing"  # the bench's own app, like the workers'
    results: dict = {"raw_ceiling": {}, "ceiling": {}, "celery": {}, "naive": {}, "databases": {}}
    started, load_before = time.time(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="hookline-bench-") as tmp:
        workdir = Path(tmp)
        redis = RedisServer(workdir)
        receiver = Receiver(workdir, processes=args.receivers)
        databases = []
        try:
            free = ctx_free(redis, receiver, workdir, args)
            ctxs = {}
            for url in [None] + ([args.database_url] if args.database_url else []):
                kind = "postgresql" if url else "sqlite"
                results["databases"][kind] = {"hookline": {}}
                if args.lines & {3, 4, 5, 6}:
                    db = Database(workdir, url)
                    databases.append(db)
                    ctxs[kind] = harness.make_context(db, redis, receiver, workdir, args.calls)
            # The like-for-like lines in interleaved rounds: the box's slow spells fall on all alike.
            for r in range(args.rounds if args.lines & {1, 2, 3} else 0):
                say(f"round {r + 1} of {args.rounds}")
                run_round(ctxs, free, args, results, concurrency, r)
            peers.aggregate_rounds(results)
            if 1 in args.lines:
                say(f"reference: sequential requests loop, 1 process, {ceiling_seconds:g} s")
                results["ceiling"][1] = measured(scenarios.ceiling, free, 1, ceiling_seconds)
            if 2 in args.lines:
                say(f"Celery prefork -c 2, {args.events} events")
                results["celery"]["prefork"] = measured(peers.celery, free, "prefork", 2, args.events)
                say(f"naive baseline (footnote), 1 RQ worker, {naive_events} jobs")
                results["naive"][1] = measured(scenarios.naive, free, 1, naive_events)
            for kind, ctx in ctxs.items():
                if args.lines & {3, 4, 5, 6}:
                    run_database(ctx, args, results["databases"][kind])
            for url in [None] + ([args.database_url] if args.database_url else []):
                kind = "postgresql" if url else "sqlite"
                if 8 in args.lines:
                    results["databases"][kind]["baseline"] = measured(
                        baseline.run, free, url, args.baseline_ref, args.rounds, args.events, args.calls, say)
                if 7 in args.lines:
                    redis.client.flushdb()
                    results["databases"][kind]["log_page"] = measured(
                        logpage.run, workdir, url, redis.url, args.rows, args.samples, say)
        finally:
            receiver.close()
            redis.close()
            for db in databases:
                try:
                    db.close()
                except Exception as exc:  # the results matter more than the cleanup
                    say(f"could not drop {db.url}: {exc}")

    lines = report.build_lines(results)
    meta = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(time.time() - started, 1),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "source": source_version(), "quick": args.quick, "events": args.events,
            "calls": args.calls, "publishers": args.publishers, "lines": sorted(args.lines), "scale": args.scale, "rate": args.rate,
            "receivers": args.receivers,
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "hookline_env": {k: v for k, v in os.environ.items() if k.startswith("HOOKLINE_")}}
    print(f"Hookline bench — {meta['when']}, {meta['machine']}, {meta['seconds']} s"
          + (" (--quick)" if args.quick else "")
          + f"; load average {load_before[0]:.1f} before, {meta['loadavg_after'][0]:.1f} after")
    print(report.render(lines))
    report.write_json(args.output, meta, results, lines)
    print(f"\nwritten to {args.output}")
    return 0


def ctx_free(redis, receiver, workdir, args) -> harness.Context:
    """A context for the lines that use no database (ceiling, naive)."""
    from tasks.signing import generate_secret

    return harness.Context(app=None, redis=redis, receiver=receiver, database=None,
                           worker_env=dict(os.environ), secret=generate_secret(), logdir=workdir / "logs",
                           calls=args.calls)


if __name__ == "__main__":
    sys.exit(main())
