"""PostgreSQL: a drain reads and writes the deliveries it works on by key, never by a scan of the log.

A worker's claim is prepared once per connection (psycopg prepares a
statement run five times) and PostgreSQL keeps the plan it made then. Made
on a young log, that plan scanned the whole table, and every claim and
every batch's write kept scanning it as the log grew (the benchmark's case,
and a fresh install's with autovacuum off). Counted in the transaction's
own statistics (pg_stat_xact_user_tables), not in time.
"""

import pytest
from sqlalchemy import text

from bench.scenarios import call_events
from models import db
from models.events import CANCELLED, Delivery
from tasks import outbox, publish_events


def scans_of_deliveries() -> int:
    """Sequential scans of ``deliveries`` in the current transaction so far."""
    return db.session.execute(text(
        "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'deliveries'")).scalar_one()


def test_claims_and_writes_on_a_young_log_scan_no_table(postgres_app):
    with postgres_app.app_context():
        events = call_events(600, 20, 1)
        for start in range(0, len(events), 100):
            publish_events(events[start:start + 100])
        before = scans_of_deliveries()
        closed = 0
        # More claims than psycopg's prepare threshold and PostgreSQL's five
        # custom plans: the plan the connection keeps is made in this loop.
        for _ in range(15):
            assert outbox.has_due_work()  # the periodic tick's question: the claim's reads
            rows = outbox.claim(outbox.new_token(), 16, 60)
            assert rows
            token = db.session.execute(text("SELECT claimed_by FROM deliveries WHERE id = :id"),
                                       {"id": rows[0].id}).scalar_one()
            written = outbox.write(token, [], outbox.cancelled({row.id: "test" for row in rows}))
            assert written == {row.id for row in rows}
            closed += len(rows)
        assert scans_of_deliveries() == before
        db.session.commit()
        assert db.session.scalar(db.select(db.func.count()).where(Delivery.status == CANCELLED)) == closed
