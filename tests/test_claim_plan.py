"""The claim's cost follows the open deliveries, not the size of the delivery log.

PostgreSQL only: once a table has statistics (autovacuum's ANALYZE does
this within a minute in any real deployment) the planner is free to pick a
different plan, and an ``id IN (subquery)`` claim was planned as a scan of
every delivery. A bench run then fell from ~1,800 to 85 events/s. The cost
is counted in buffers read (EXPLAIN's count of 8 kB pages), not time.
"""

import pytest
from sqlalchemy import text

from events import EVENT_TYPES
from models import db, utcnow
from models.settings import get_settings
from tasks import publish_event
from tasks.outbox import _claim_statement, _due_statement, claim

CALLS = 50


@pytest.fixture
def postgres_app(app):
    """The app, on PostgreSQL only; the integration wants every event (nothing is sent here)."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("plans are PostgreSQL's (set HOOKLINE_TEST_DATABASE_URL)")
        settings = get_settings()
        settings.enabled, settings.url, settings.events = True, "https://example.com/hook", list(EVENT_TYPES)
        db.session.commit()
    return app


def add_history(rows: int) -> None:
    """``rows`` delivered deliveries across CALLS calls, as a busy log holds them."""
    db.session.execute(text(
        "INSERT INTO events (id, event_type, call_id, timestamp_utc, is_test, body, created_at)"
        " SELECT 'msg_history' || g || '_' || :tag, 'transcript', (g % :calls)::text, 0, false, '{}', now()"
        " FROM generate_series(1, :rows) AS g"), {"rows": rows, "calls": CALLS, "tag": utcnow().timestamp()})
    db.session.execute(text(
        "INSERT INTO deliveries (event_seq, event_type, call_id, is_test, status, created_at, attempt_count)"
        " SELECT e.seq, e.event_type, e.call_id, false, 'delivered', e.created_at, 1 FROM events AS e"
        " WHERE NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.event_seq = e.seq)"))
    db.session.commit()


def publish_open(per_call: int) -> None:
    """``per_call`` pending call_ringing events for each call."""
    for _ in range(per_call):
        for call in range(CALLS):
            publish_event("call_ringing", {"call_id": call, "direction": "outbound",
                                           "from": "+905555555555", "to": "+905555555554"})


def vacuum(analyze: bool) -> None:
    """What the workers' VACUUM (and autovacuum's ANALYZE) leave behind."""
    db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE deliveries" if analyze else "VACUUM deliveries")
        if analyze:
            conn.exec_driver_sql("ANALYZE events")


def buffers(statement, params) -> int:
    """Pages the statement touched, by EXPLAIN (ANALYZE, BUFFERS); its changes are rolled back."""
    compiled = statement.compile(dialect=db.engine.dialect)
    with db.engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + compiled.string,
                                    compiled.construct_params(params)).scalar()
        conn.rollback()
    top = plan[0]["Plan"]
    return top["Shared Hit Blocks"] + top["Shared Read Blocks"]


def claim_costs() -> tuple[int, int]:
    now = utcnow()
    params = dict(now=now, limit=32, lease=now, token="explain")
    return buffers(_claim_statement("postgresql"), params), buffers(_due_statement("postgresql"), params)


@pytest.mark.parametrize("fresh_statistics", [True, False], ids=["analyzed-again", "stale-statistics"])
def test_claim_reads_no_more_pages_when_the_log_is_forty_times_bigger(postgres_app, fresh_statistics):
    with postgres_app.app_context():
        add_history(500)
        publish_open(per_call=2)
        vacuum(analyze=True)
        small_claim, small_due = claim_costs()

        # Close what was open, then a log 40 times the size, then new open
        # work; statistics either follow (ANALYZE) or still describe the
        # small table, as between two runs of autovacuum.
        db.session.execute(text("UPDATE deliveries SET status = 'delivered', due_at = NULL"))
        add_history(20_000)
        publish_open(per_call=2)
        vacuum(analyze=fresh_statistics)
        big_claim, big_due = claim_costs()
        print(f"pages read: claim {small_claim} -> {big_claim}, due {small_due} -> {big_due}")

        # A plan that scans the log reads hundreds of pages more here.
        assert big_claim <= 2 * small_claim + 20, (small_claim, big_claim)
        assert big_due <= 2 * small_due + 20, (small_due, big_due)

        # And the claim still takes each call's first open delivery, oldest first.
        claimed = claim("test", limit=CALLS, lease_seconds=30)
        assert len(claimed) == CALLS
        heads = db.session.execute(text(
            "SELECT min(id) FROM deliveries WHERE status = 'pending' GROUP BY call_id")).scalars().all()
        assert sorted(d.id for d in claimed) == sorted(heads)
