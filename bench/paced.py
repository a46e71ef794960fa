"""Lines 4 and 5: publishing at a steady rate (latency, publish cost) and the commit reference.

The same :class:`bench.harness.Context` as every scenario; these time
single operations, not throughput: each publish, each arrival, and "one
Redis round trip + one database commit" as the yardstick beside them.
"""

import time

from sqlalchemy import Column, Integer, MetaData, String, Table, update

from bench.harness import Context, call_events, point_integration, summary_ms
from bench.services import Workers


def reference_table(ctx: Context) -> Table:
    """A one-column scratch table for the "one database commit" reference."""
    table = Table("bench_reference", MetaData(),
                  Column("id", Integer, primary_key=True), Column("note", String(40)))
    with ctx.app.app_context():
        from models import db

        table.create(db.engine, checkfirst=True)
    return table


def reference_op(ctx: Context, conn, table: Table) -> None:
    """The reference: one Redis round trip + one database commit (PING, INSERT one row, commit)."""
    ctx.redis.client.ping()
    conn.execute(table.insert().values(note="reference"))
    conn.commit()


def commit_ceiling(ctx: Context, n: int) -> dict:
    """How fast one thread can run the reference op back to back, with nothing else running.

    Any outbox that makes each event durable before publish returns is bound
    by this when one thread publishes (line 3's loop): a diagnostic beside
    line 3, whose publishing loop is that one thread.
    """
    from models import db

    table = reference_table(ctx)
    with ctx.app.app_context(), db.engine.connect() as conn:
        for _ in range(50):
            reference_op(ctx, conn, table)
        started = time.perf_counter()
        for _ in range(n):
            reference_op(ctx, conn, table)
        seconds = time.perf_counter() - started
    return {"rate": n / seconds, "ops": n, "seconds": seconds}


def paced(ctx: Context, workers: Workers, path: str, rate: float, seconds: float) -> dict:
    """Publish at a steady ``rate`` for ``seconds``; time each publish and a reference op.

    Half-way between two publishes the loop also times the reference, "one
    Redis round trip + one database commit" (PING, then INSERT one row and
    commit through the same engine), so both see the same load on the box.
    Each runs after its own pause: right after a sleep the first operation
    pays for cold caches (measured here: about 1 ms either way), so timing
    the reference straight after the publish would flatter it.
    """
    from models import db
    from tasks import publish_event

    point_integration(ctx, path)
    table = reference_table(ctx)
    n = int(rate * seconds)
    events = call_events(n, ctx.calls, ctx.next_calls(ctx.calls))
    started_at, publish_s, reference_s = {}, [], []

    def pause_until(moment):
        delay = moment - time.time()
        if delay > 0:
            time.sleep(delay)

    with ctx.app.app_context(), db.engine.connect() as conn:
        rx_cpu, w_cpu = ctx.receiver.cpu(), workers.cpu()
        t0 = time.time()
        for i, (event_type, payload) in enumerate(events):
            pause_until(t0 + i / rate)
            wall, t = time.time(), time.perf_counter()
            event_id = publish_event(event_type, payload)
            publish_s.append(time.perf_counter() - t)
            started_at[event_id] = wall

            pause_until(t0 + (i + 0.5) / rate)
            t = time.perf_counter()
            reference_op(ctx, conn, table)
            reference_s.append(time.perf_counter() - t)
    return {"path": path, "events": n, "rate": rate, "seconds": seconds,
            "started_at": started_at, "publish": summary_ms(publish_s),
            "reference": summary_ms(reference_s),
            "receiver_cpu_s": ctx.receiver.cpu() - rx_cpu, "worker_cpu_s": workers.cpu() - w_cpu}


def latency(ctx: Context, workers: Workers, rate: float, seconds: float) -> dict:
    """Publish-to-arrival latency at a steady rate (and the publish cost under normal load)."""
    run = paced(ctx, workers, f"{ctx.prefix}/latency", rate, seconds)
    arrivals = ctx.receiver.wait_for(run["path"], run["events"], timeout=60)
    first = {}
    for at, event_id in arrivals:
        first[event_id] = min(at, first.get(event_id, at))
    waits = [first[e] - start for e, start in run.pop("started_at").items() if e in first]
    return {**run, "latency": summary_ms(waits)}


def publish_while_hanging(ctx: Context, workers: Workers, rate: float, seconds: float) -> dict:
    """Publish cost while every delivery hangs for 30 s at the receiver."""
    run = paced(ctx, workers, f"{ctx.prefix}/hang", rate, seconds)
    run.pop("started_at")
    return run


def cancel_open_deliveries(ctx: Context) -> int:
    """Close what the hanging receiver left open, so later scenarios start clean."""
    from models import db
    from models.events import CANCELLED, OPEN_STATES, Delivery

    with ctx.app.app_context():
        closed = db.session.execute(
            update(Delivery).where(Delivery.status.in_(OPEN_STATES))
            .values(status=CANCELLED, due_at=None, lease_until=None,
                    last_error="Cancelled by the bench")).rowcount
        db.session.commit()
    ctx.redis.client.flushdb()
    return closed
