"""Line 6: ten times the events on a database that already holds a million deliveries.

The database is seeded first with ``--rows`` delivered deliveries (1% failed
after 5 attempts), their events and one attempt each, 2 s apart and ending
now, the way line 7 builds its log (bench.logpage.bulk_insert: three
set-based INSERT ... SELECTs), and the roll-ups are built from them as the
migration does. PostgreSQL then gets the VACUUM ANALYZE its autovacuum would
long since have run on such a log, so the planner works from real
statistics and no autovacuum starts in the middle of the timing. SQLite
is left unanalysed, as deployed.

Then 2 warm workers deliver M events three times (time(M) is the median) and
F×M events once; the target is time(F×M) ≤ 1.1·F·time(M).
"""

import statistics
import time

from sqlalchemy import func, select

from bench import logpage, scenarios


def seed(ctx: scenarios.Context, rows: int) -> dict:
    """Put ``rows`` delivered deliveries (with events, attempts and roll-ups) into the bench's database."""
    from models import db
    from tasks.rollups import rebuild

    insert_seconds = logpage.bulk_insert(ctx.app, rows, logpage.SPREAD_SECONDS)
    started = time.time()
    with ctx.app.app_context():
        with db.engine.begin() as connection:
            rebuild(connection)
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                for table in ("events", "deliveries", "attempts", "attempt_rollups"):
                    connection.exec_driver_sql(f"VACUUM ANALYZE {table}")
        total = db.session.scalar(select(func.count()).select_from(db.metadata.tables["deliveries"]))
        db.session.rollback()
    return {"rows": rows, "deliveries": total, "insert_seconds": insert_seconds,
            "rollup_and_vacuum_seconds": time.time() - started}


def run(ctx: scenarios.Context, rows: int, m: int, factor: int, say) -> dict:
    """Seed the database, then time M events (three runs) and F×M events on 2 workers."""
    kind = ctx.database.kind
    say(f"[{kind}] scaling: seeding {rows:,} delivered deliveries (events, attempts, roll-ups)")
    seeded = seed(ctx, rows)
    say(f"[{kind}] scaling: {seeded['deliveries']:,} deliveries in the database "
        f"({seeded['insert_seconds']:.0f} s insert, {seeded['rollup_and_vacuum_seconds']:.0f} s roll-ups"
        + (", VACUUM ANALYZE" if kind == "postgresql" else "") + ")")
    workers = scenarios.start_workers(ctx, 2)
    try:
        # time(M) is the median of three runs: one run of M lasts about a
        # second, and single runs of the same code moved by +-10% here.
        say(f"[{kind}] scaling: 2 workers, {m} events three times (time(M))")
        small_runs = [scenarios.hookline(ctx, workers, 2, m, f"-small{i}")["seconds"] for i in (0, 1, 2)]
        say(f"[{kind}] scaling: 2 workers, {factor}×{m} events")
        large = scenarios.hookline(ctx, workers, 2, factor * m, "-scaled")
    finally:
        workers.close()
    small_seconds = statistics.median(small_runs)
    return {"factor": factor, "small_seconds": small_seconds, "small_runs": small_runs,
            "large_seconds": large["seconds"], "time_ratio": large["seconds"] / small_seconds,
            "large": large, **seeded}
