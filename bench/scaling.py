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

from sqlalchemy import func, select, text

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


#: PostgreSQL: what the runs leave behind in the hot tables (dead row versions,
#: non-HOT updates) and how much their files grow meanwhile.
_TABLE_STATS = text(
    "SELECT relname, n_live_tup, n_dead_tup, n_tup_upd, n_tup_hot_upd, autovacuum_count,"
    " pg_relation_size(relid), pg_indexes_size(relid)"
    " FROM pg_stat_user_tables WHERE relname IN ('events', 'deliveries', 'attempts', 'attempt_rollups')")
_INDEX_SIZES = text(
    "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes WHERE relname = 'deliveries'")


def table_stats(ctx: scenarios.Context) -> dict:
    """PostgreSQL: each hot table's row and update counts and sizes, and each deliveries index's size (else {})."""
    from models import db

    with ctx.app.app_context():
        if db.engine.dialect.name != "postgresql":
            return {}
        # Backends report their counts to the statistics once a second at most.
        time.sleep(1.5)
        with db.engine.connect() as connection:
            connection.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            tables = {row[0]: dict(zip(("live", "dead", "updated", "hot_updated", "autovacuums",
                                        "table_bytes", "index_bytes"), row[1:]))
                      for row in connection.execute(_TABLE_STATS)}
            indexes = dict(connection.execute(_INDEX_SIZES).all())
    return {"tables": tables, "deliveries_indexes": indexes}


def database_cpu(ctx: scenarios.Context) -> float:
    """PostgreSQL on this machine: CPU seconds so far of the server processes serving the bench's database (else 0).

    The workers keep their connections for the whole line, so the
    difference over a run is the server's work for that run's events.
    """
    import os

    from models import db

    with ctx.app.app_context():
        if db.engine.dialect.name != "postgresql":
            return 0.0
        with db.engine.connect() as connection:
            pids = connection.exec_driver_sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()").scalars().all()
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile, or another machine's server
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _timed(ctx, workers, m: int, tag: str) -> dict:
    """One line-3 run of ``m`` events on 2 workers, with the database server's CPU per event."""
    cpu = database_cpu(ctx)
    out = scenarios.hookline(ctx, workers, 2, m, tag)
    out["database_cpu_per_event_ms"] = (database_cpu(ctx) - cpu) / m * 1000
    return out


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
        before_small = table_stats(ctx)
        smalls = [_timed(ctx, workers, m, f"-small{i}") for i in (0, 1, 2)]
        before_large = table_stats(ctx)
        say(f"[{kind}] scaling: 2 workers, {factor}×{m} events")
        large = _timed(ctx, workers, factor * m, "-scaled")
        after_large = table_stats(ctx)
    finally:
        workers.close()
    small_runs = [small["seconds"] for small in smalls]
    small_seconds = statistics.median(small_runs)
    return {"factor": factor, "small_seconds": small_seconds, "small_runs": small_runs,
            "small_database_cpu_per_event_ms": [small["database_cpu_per_event_ms"] for small in smalls],
            "large_seconds": large["seconds"], "time_ratio": large["seconds"] / small_seconds,
            "large": large, **seeded,
            "table_stats": {"before_small": before_small, "before_large": before_large, "after_large": after_large}}
