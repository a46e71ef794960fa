"""Retention: old deliveries and their attempts are pruned in batches; open ones stay."""

from datetime import timedelta

from sqlalchemy import func, select

from models import db, utcnow
from models.events import Attempt, Delivery, Event
from tasks.maintenance import prune
from tests.support import wait_until


def add(status, age_days, attempts=1):
    created = utcnow() - timedelta(days=age_days)
    event = Event(event_type="call_ended", timestamp_utc=0, body="{}", created_at=created)
    delivery = Delivery(event=event, event_type="call_ended", status=status, created_at=created)
    db.session.add_all([event, delivery])
    db.session.flush()
    for n in range(attempts):
        db.session.add(Attempt(delivery_id=delivery.id, number=n + 1, duration_ms=1.0, started_at=created))
    return event


def count(model):
    return db.session.scalar(select(func.count()).select_from(model))


def test_prune_removes_old_final_deliveries_in_batches(app):
    with app.app_context():
        for _ in range(25):
            add("delivered", 31, attempts=2)
        add("failed", 40)
        add("retrying", 45)       # still open: kept
        add("delivered", 29)      # inside the window: kept
        db.session.commit()
        assert prune(retention_days=30, batch=10) == 26
        assert count(Event) == 2 and count(Delivery) == 2
        assert count(Attempt) == 2
        assert {d.status for d in db.session.scalars(select(Delivery))} == {"retrying", "delivered"}


def test_log_page_config_default(app):
    assert app.config["HOOKLINE_RETENTION_DAYS"] == 30


def test_outbox_vacuum_runs_once_per_interval_on_postgresql_only(app):
    """On PostgreSQL one worker VACUUMs deliveries per interval; SQLite has nothing to vacuum."""
    from tasks.maintenance import VACUUM_LOCK, vacuum_outbox_if_due
    from extensions import get_redis

    with app.app_context():
        for _ in range(5):
            add("delivered", 0)
        db.session.commit()
        db.session.execute(Delivery.__table__.update().values(status="failed"))  # churn
        db.session.commit()
        redis_client = get_redis()
        redis_client.delete(VACUUM_LOCK)
        on_postgres = db.engine.dialect.name == "postgresql"
    vacuum_outbox_if_due(app)  # VACUUM refuses to run in a transaction: this must not raise
    with app.app_context():
        assert bool(redis_client.exists(VACUUM_LOCK)) == on_postgres
        assert count(Delivery) == 5


def test_after_the_vacuum_the_stats_read_attempts_from_the_index_alone(app):
    """PostgreSQL: the 24 h window's attempts come from the index, no table page read."""
    import pytest
    from sqlalchemy import text

    from tasks.maintenance import VACUUM_LOCK, vacuum_outbox_if_due
    from extensions import get_redis

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("PostgreSQL only: SQLite has no visibility map")
        for _ in range(200):
            add("delivered", 0, attempts=3)
        db.session.commit()
        get_redis().delete(VACUUM_LOCK)
        # A VACUUM can mark a page all-visible only when no snapshot in this
        # database is older than its rows: wait out any other session's
        # (autovacuum's ANALYZE of the tables just written takes one).
        holders = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                       " AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL")
        db.session.rollback()

        def no_other_snapshot():
            with db.engine.connect() as conn:
                return conn.scalar(holders) == 0

        wait_until(no_other_snapshot, timeout=30, what="no other snapshot in this database")
    vacuum_outbox_if_due(app)
    with app.app_context():
        db.session.execute(text("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off"))
        plan = "\n".join(db.session.scalars(text(
            "EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM attempts"
            " WHERE started_at > now() - interval '1 day'")))
        db.session.rollback()
    assert "Index Only Scan using ix_attempts_window" in plan, plan
    assert "Heap Fetches: 0" in plan, plan
