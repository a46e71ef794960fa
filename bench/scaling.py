"""Line 6: ten times the events on a database that already holds a million deliveries.

The database is seeded first with ``--rows`` delivered deliveries (1% failed
after 5 attempts), their events and one attempt each, 2 s apart and ending
now, the way line 7 builds its log (bench.logpage.bulk_insert: three
set-based INSERT ... SELECTs), and the roll-ups are built from them as the
migration does. PostgreSQL then gets the VACUUM ANALYZE its autovacuum would
long since have run on such a log, so the planner works from real
statistics and no autovacuum starts in the middle of the timing. SQLite
is left unanalysed, as deployed.

Then 2 warm workers deliver M events and F×M events, in three interleaved
rounds (M, F×M, M, F×M, ...): time(M) and time(F×M) are the medians, so a
slow spell of the box falls on both alike. The target is
time(F×M) ≤ 1.1·F·time(M).
"""

import statistics
import time

from sqlalchemy import func, select, text

from bench import harness, logpage, scenarios


def seed(ctx: harness.Context, rows: int) -> dict:
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
                # The seed's dirty pages written out now, as the checkpointer would
                # long since have done: else its writes, and the full-page images of
                # every page first touched after it starts, land inside the timed runs.
                connection.exec_driver_sql("CHECKPOINT")
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


def table_stats(ctx: harness.Context) -> dict:
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


def database_cpu(ctx: harness.Context) -> float:
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


#: Rounds of (M, F×M) on the warm workers (odd: each time is the median of its rounds).
ROUNDS = 3


def run(ctx: harness.Context, rows: int, m: int, factor: int, say) -> dict:
    """Seed the database, then time M and F×M events on 2 workers in ROUNDS interleaved rounds."""
    kind = ctx.database.kind
    say(f"[{kind}] scaling: seeding {rows:,} delivered deliveries (events, attempts, roll-ups)")
    seeded = seed(ctx, rows)
    say(f"[{kind}] scaling: {seeded['deliveries']:,} deliveries in the database "
        f"({seeded['insert_seconds']:.0f} s insert, {seeded['rollup_and_vacuum_seconds']:.0f} s roll-ups"
        + (", VACUUM ANALYZE, CHECKPOINT" if kind == "postgresql" else "") + ")")
    workers = harness.start_workers(ctx, 2)
    smalls, larges = [], []
    try:
        before = table_stats(ctx)
        for r in range(ROUNDS):
            say(f"[{kind}] scaling: round {r + 1} of {ROUNDS}: 2 workers, {m} events, then {factor}×{m}")
            smalls.append(_timed(ctx, workers, m, f"-small{r}"))
            larges.append(_timed(ctx, workers, factor * m, f"-scaled{r}"))
        after = table_stats(ctx)
    finally:
        workers.close()
    small_seconds = statistics.median(small["seconds"] for small in smalls)
    # The F×M round whose time is the median (ROUNDS is odd): its rate, CPU and checks are the line's.
    large = sorted(larges, key=lambda out: out["seconds"])[ROUNDS // 2]
    return {"factor": factor, "small_seconds": small_seconds, "large_seconds": large["seconds"],
            "time_ratio": large["seconds"] / small_seconds, "large": large,
            "rounds": {"small": smalls, "large": larges}, **seeded,
            "table_stats": {"before": before, "after": after}}
