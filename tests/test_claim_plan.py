"""The claim's cost follows its batch: not the size of the delivery log, not the number of open calls.

Once a PostgreSQL table has statistics (autovacuum's ANALYZE does this
within a minute in any real deployment) the planner is free to pick a
different plan, and an ``id IN (subquery)`` claim was planned as a scan of
every delivery. A bench run then fell from ~1,800 to 85 events/s. The cost
is counted in work done, not time: buffers read on PostgreSQL (EXPLAIN's
count of 8 kB pages), virtual machine instructions on SQLite.
"""

from datetime import timedelta

import pytest
from sqlalchemy import text

from events import EVENT_TYPES
from models import db, utcnow
from models.settings import get_settings
from tasks import heads, outbox, publish_event
from tasks.heads import claim_statement, due_statement
from tasks.outbox import claim
from tasks.redeliver import redeliver

CALLS = 50


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
    return (buffers(claim_statement("postgresql"), dict(heads.params(32, now), lease=now, token="explain")),
            buffers(due_statement("postgresql"), heads.params(1, now)))


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


def test_a_backlog_built_after_the_statistics_were_taken_costs_a_claim_no_more(postgres_app):
    # Statistics taken while nothing was open (a quiet log, analyzed), then a
    # backlog (a receiver outage): the planner believes about one row is open.
    with postgres_app.app_context():
        add_history(20_000)
        vacuum(analyze=True)
        publish_open(per_call=2)
        small_claim, _ = claim_costs()
        publish_open(per_call=60)
        big_claim, _ = claim_costs()
        print(f"pages read: claim {small_claim} -> {big_claim}")
        # A plan that joins every open row per candidate reads thousands of pages more here.
        assert big_claim <= 2 * small_claim + 20, (small_claim, big_claim)


# -- open calls: 20,000 deliveries of 20,000 calls cost a claim what 20,000 of 200 calls do

BACKLOG = 20_000


def add_backlog(calls: int) -> None:
    """BACKLOG pending deliveries of ``calls`` calls, interleaved, inserted as publish leaves them (head unknown)."""
    series = ("SELECT g FROM generate_series(1, :rows) AS g" if db.engine.dialect.name == "postgresql" else
              "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :rows) SELECT g FROM s")
    now = utcnow()
    db.session.execute(text(
        "INSERT INTO events (id, event_type, call_id, timestamp_utc, is_test, body, created_at)"
        f" SELECT 'msg_backlog_' || g, 'call_ringing', 'call-' || (g % :calls), 0, false, '{{}}', :now"
        f" FROM ({series}) AS series"), {"rows": BACKLOG, "calls": calls, "now": now})
    db.session.execute(text(
        "INSERT INTO deliveries (event_seq, event_type, call_id, is_test, status, due_at, created_at, attempt_count)"
        " SELECT seq, event_type, call_id, false, 'pending', :now, :now, 0 FROM events ORDER BY seq"), {"now": now})
    db.session.commit()


def drain_a_little(batches: int) -> None:
    """What a drain does to the flags: claim a batch, record it delivered (promoting the next rows), commit."""
    for _ in range(batches):
        token = outbox.new_token()
        claimed = claim(token, 32, 30)
        outbox.write(token, [], [dict(delivery_id=d.id, status="delivered", due_at=None, lease_until=None)
                                 for d in claimed])
        db.session.commit()


def sqlite_steps(statement, params) -> int:
    """Virtual machine instructions SQLite ran for the statement (in thousands); its changes are rolled back."""
    steps = [0]

    def count():
        steps[0] += 1
        return 0

    raw = db.session.connection().connection.driver_connection
    raw.set_progress_handler(count, 1000)
    try:
        db.session.execute(statement, params).all()
    finally:
        raw.set_progress_handler(None, 0)
        db.session.rollback()
    return steps[0]


def claim_work() -> int:
    """The next claim's work: pages read on PostgreSQL, thousands of instructions on SQLite."""
    now = utcnow()
    params = dict(heads.params(32, now), lease=now + timedelta(seconds=30), token="measure")
    if db.engine.dialect.name == "postgresql":
        vacuum(analyze=True)
        return buffers(claim_statement("postgresql"), params)
    return sqlite_steps(claim_statement("sqlite"), params)


@pytest.fixture
def wanting_app(app):
    """The app; the integration wants every event (nothing is sent here)."""
    with app.app_context():
        settings = get_settings()
        settings.enabled, settings.url, settings.events = True, "https://example.com/hook", list(EVENT_TYPES)
        db.session.commit()
    return app


def work_over(app, calls: int) -> list[int]:
    """A claim's work over a backlog of ``calls`` calls: the first claim, then one in full flow."""
    with app.app_context():
        db.session.execute(text("DELETE FROM deliveries"))
        db.session.execute(text("DELETE FROM events"))
        db.session.commit()
        add_backlog(calls)
        first = claim_work()
        drain_a_little(20)
        return [first, claim_work()]


def test_a_claim_costs_the_same_over_20000_open_calls_as_over_200(wanting_app):
    few = work_over(wanting_app, 200)
    many = work_over(wanting_app, BACKLOG)
    print(f"claim work over 200 calls {few}, over {BACKLOG} calls {many}")
    # Reading every call's first open row costs 100 times more here.
    for small, big in zip(few, many):
        assert big <= 2 * small + 20, (few, many)


def test_each_call_keeps_one_head_while_a_backlog_drains(wanting_app):
    """Mixed backlog drained batch by batch: every claim takes exactly each call's oldest open row."""
    with wanting_app.app_context():
        add_backlog(300)
        for _ in range(40):
            expected = db.session.execute(text(
                "SELECT min(id) FROM deliveries WHERE status = 'pending' GROUP BY call_id")).scalars().all()
            token = outbox.new_token()
            claimed = claim(token, 32, 30)
            assert {d.id for d in claimed} <= set(expected)
            assert len(claimed) == min(32, len(expected))
            outbox.write(token, [], [dict(delivery_id=d.id, status="delivered", due_at=None, lease_until=None)
                                     for d in claimed])
            db.session.commit()


def test_a_redelivered_older_event_goes_before_the_call_s_flagged_head(wanting_app):
    with wanting_app.app_context():
        for _ in range(3):
            publish_event("call_ringing", {"call_id": 1, "direction": "outbound",
                                           "from": "+905555555555", "to": "+905555555554"})
        drain_a_little(1)  # the first delivered; the second is flagged its call's head
        first, second, _ = db.session.execute(text("SELECT id FROM deliveries ORDER BY id")).scalars().all()
        assert db.session.scalar(text("SELECT head FROM deliveries WHERE id = :id"), {"id": second})
        assert redeliver(first)
        claimed = claim(outbox.new_token(), 32, 30)
        assert [d.id for d in claimed] == [first]
