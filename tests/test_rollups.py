"""The stats' roll-ups agree with the attempts they summarise.

Traffic is generated through the drain's own write path (outbox.write under a
claim token), a few thousand attempts spread over eight days; the figures the
log shows (from the roll-ups) are then compared with the same figures
computed here, in Python, from the raw attempt rows. Runs on SQLite and, with
HOOKLINE_TEST_DATABASE_URL, on PostgreSQL.
"""

import json
import os
import random
from datetime import datetime, timedelta

import pytest
from flask_migrate import upgrade
from sqlalchemy import event, insert, select

from models import db, utcnow
from models.events import Attempt, Delivery, Event
from models.rollups import rollups as rollup_table
from tasks import outbox, rollups, stats
from tasks.maintenance import prune
from tasks.stats import RANGES, bucket_edges, outcome_series, percentile, summary
from tests.test_stats import add_delivery
from tests.support.migrations import upgrade_from_empty

LOG = "/settings/integrations/webhook/deliveries"


def floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def insert_claimed(count: int, token: str, created_at: datetime) -> list[int]:
    """``count`` pending deliveries already claimed under ``token``; returns their ids."""
    events = [dict(seq=i + 1, id=f"msg_gen{i:06d}", event_type="call_initiated", call_id=f"c-{i}",
                   timestamp_utc=0, is_test=False, body="{}", created_at=created_at) for i in range(count)]
    db.session.execute(insert(Event), events)
    db.session.execute(insert(Delivery), [
        dict(id=i + 1, event_seq=i + 1, event_type="call_initiated", call_id=f"c-{i}", is_test=False,
             status="pending", claimed_by=token, created_at=created_at) for i in range(count)])
    db.session.commit()
    return list(range(1, count + 1))


def generate_traffic(rng: random.Random, count: int, now: datetime) -> dict[int, str]:
    """Deliveries with 0-3 attempts each over the last 8 days, written batch by batch with
    outbox.write as the drain does; returns each delivery's final state."""
    token = outbox.new_token()
    ids = insert_claimed(count, token, now - timedelta(days=9))
    plans = {}
    for delivery_id in ids:
        final = rng.choice(["delivered"] * 5 + ["failed", "retrying", "cancelled"])
        tries = 0 if final == "cancelled" and rng.random() < 0.5 else rng.randint(1, 3)
        # Half in the last day (the summary's window), the rest over the week and a day beyond.
        span = 24 * 60 if rng.random() < 0.5 else 8 * 24 * 60
        first = now - timedelta(minutes=rng.randrange(16, span), seconds=rng.randrange(60))  # retries too in the past
        plans[delivery_id] = (final, tries, first)
    for number in (1, 2, 3, 4):  # round 4 only cancels
        attempts, changes = [], []
        for delivery_id, (final, tries, first) in plans.items():
            if number <= tries:
                last = number == tries
                ok = last and final == "delivered"
                # Log-uniform between 0.05 ms and 12 s, with a crowd around 40 ms.
                duration = (round(10 ** rng.uniform(-1.3, 4.1), 2) if rng.random() < 0.6
                            else round(rng.gauss(40, 4), 2))
                attempts.append(dict(delivery_id=delivery_id, number=number,
                                     started_at=first + timedelta(minutes=7 * (number - 1)),
                                     duration_ms=max(duration, 0.01), status_code=200 if ok else 503, ok=ok,
                                     request_headers={}, response_headers={}, error_kind=None if ok else "http_status"))
                status = final if last and final != "cancelled" else "retrying"
                changes.append(dict(delivery_id=delivery_id, status=status, attempt_count=number))
            elif number == 4 and final == "cancelled":
                changes.append(dict(delivery_id=delivery_id, status="cancelled", attempt_count=tries))
        for start in range(0, len(changes), 100):  # batches of 100, like a drain's
            batch = changes[start:start + 100]
            in_batch = {change["delivery_id"] for change in batch}
            outbox.write(token, [a for a in attempts if a["delivery_id"] in in_batch], batch)
            db.session.commit()
    return {delivery_id: plan[0] for delivery_id, plan in plans.items()}


def raw_attempts():
    """Every attempt with what the log shows of its delivery: (started_at, ms, ok, number, count, status)."""
    return db.session.execute(
        select(Attempt.started_at, Attempt.duration_ms, Attempt.ok, Attempt.number,
               Delivery.attempt_count, Delivery.status).join(Delivery, Attempt.delivery_id == Delivery.id)
    ).all()


def raw_outcome(ok, number, count, status) -> str:
    if ok:
        return "delivered"
    return "failed" if status == "failed" and number == count else "retrying"


def test_rollup_stats_equal_the_stats_of_the_raw_attempts(app):
    rng = random.Random(24)
    with app.app_context():
        began = utcnow()
        finals = generate_traffic(rng, 2500, began)
        now = utcnow()
        rows = raw_attempts()
        assert len(rows) > 4000
        # The stats' 24 h are the 1,440 minutes ending with now's.
        end = floor_minute(now) + timedelta(minutes=1)
        day = [r for r in rows if end - timedelta(hours=24) <= r.started_at < end]
        assert 2000 < len(day) < len(rows) * 0.7  # both windows hold traffic, the day a part of it
        s = summary(now)
        assert s.hits == len(rows)  # every call kept
        assert s.attempts_24h == len(day)
        assert s.succeeded_24h == sum(r.ok for r in day)
        durations = sorted(r.duration_ms for r in day)
        assert s.p50_ms == pytest.approx(percentile(durations, 50), rel=0.1)
        assert s.p95_ms == pytest.approx(percentile(durations, 95), rel=0.1)
        assert s.last_hit_at == max(r.started_at for r in rows)

        cancelled = sum(final == "cancelled" for final in finals.values())
        for range_name in RANGES:
            series = outcome_series(now, range_name)
            edges, _ = bucket_edges(now, range_name)
            expected = []
            for start, stop in zip(edges, edges[1:]):
                counts = dict(delivered=0, failed=0, retrying=0, cancelled=0)
                for r in rows:
                    if start <= r.started_at < min(stop, end):
                        counts[raw_outcome(r.ok, r.number, r.attempt_count, r.status)] += 1
                expected.append(counts)
            got = [dict(delivered=b.delivered, failed=b.failed, retrying=b.retrying, cancelled=0)
                   for b in series.buckets]
            assert got == expected, range_name
            # Cancellations count when they were written: in the buckets of the last minute or two.
            assert series.totals()["cancelled"] == cancelled
            assert all(b.end > floor_minute(began) for b in series.buckets if b.cancelled)


def test_the_migrations_rebuild_matches_the_rollups_written_with_the_attempts(app):
    rng = random.Random(7)
    columns = [c for c in rollup_table.c if c.name != "cancelled"]
    with app.app_context():
        generate_traffic(rng, 600, utcnow())
        written = db.session.execute(select(*columns).order_by(rollup_table.c.minute)).all()
        with db.engine.begin() as connection:
            rollups.rebuild(connection)
        db.session.rollback()
        rebuilt = db.session.execute(select(*columns).order_by(rollup_table.c.minute)).all()
        # Cancellations have no time of their own in the log: the rebuild puts
        # them at the delivery's last attempt; only their number is kept.
        assert [tuple(r) for r in rebuilt if any(r[1:])] == [tuple(r) for r in written if any(r[1:])]
        assert db.session.scalar(select(db.func.sum(rollup_table.c.cancelled))) == sum(
            1 for d in db.session.scalars(select(Delivery.status)) if d == "cancelled")


def test_upgrading_builds_the_rollups_of_the_attempts_already_kept(app):
    """An existing log gets its roll-ups from `flask db upgrade`, with the figures it had before."""
    directory = os.path.join(app.root_path, "migrations")
    now = utcnow()
    with app.app_context():
        upgrade_from_empty("a16e0c3d5b21")
        created = now - timedelta(hours=2)
        with db.engine.begin() as conn:
            conn.execute(insert(Event), [dict(seq=1, id="msg_a", event_type="call_ended", call_id="c",
                                              timestamp_utc=0, is_test=False, body="{}", created_at=created)])
            conn.execute(insert(Delivery), [dict(id=1, event_seq=1, event_type="call_ended", call_id="c",
                                                 is_test=False, status="failed", attempt_count=2,
                                                 created_at=created)])
            conn.execute(insert(Attempt), [
                dict(delivery_id=1, number=1, started_at=created, duration_ms=40.0, ok=False,
                     request_headers=json.dumps({}), response_headers=json.dumps({})),
                dict(delivery_id=1, number=2, started_at=created + timedelta(minutes=1), duration_ms=80.0,
                     ok=False, request_headers=json.dumps({}), response_headers=json.dumps({}))])
        upgrade(directory=directory)
        s = summary(now)
        assert (s.attempts_24h, s.succeeded_24h) == (2, 0)
        assert s.p50_ms == pytest.approx(40.0, rel=0.1) and s.p95_ms == pytest.approx(80.0, rel=0.1)
        assert outcome_series(now).totals() == {"delivered": 0, "failed": 1, "retrying": 1, "cancelled": 0}


def test_a_batch_adds_to_the_rollups_in_one_statement_and_a_stale_write_adds_nothing(app):
    with app.app_context():
        token = outbox.new_token()
        ids = insert_claimed(300, token, utcnow())
        started = floor_minute(utcnow()) - timedelta(minutes=3)
        attempts = [dict(delivery_id=i, number=1, started_at=started + timedelta(seconds=i % 90),
                         duration_ms=10.0 + i, ok=True, request_headers={}, response_headers={}) for i in ids]
        changes = [dict(delivery_id=i, status="delivered", attempt_count=1) for i in ids]
        statements = []

        def capture(conn, cursor, statement, parameters, context, executemany):
            if "attempt_rollups" in statement:
                statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", capture)
        try:
            outbox.write(token, attempts, changes)
            db.session.commit()
            # A drain that lost its claim writes no attempt, so it counts none either.
            assert outbox.write(outbox.new_token(), attempts, changes) == set()
            db.session.commit()
        finally:
            event.remove(db.engine, "before_cursor_execute", capture)
        assert len(statements) == 1  # 300 attempts over two minutes: one upsert of two rows
        minutes = db.session.execute(select(rollup_table.c.minute, rollup_table.c.delivered)).all()
        assert sorted(n for _, n in minutes) == [90, 210]  # seconds 60-89 of each 90 in the second minute
        assert summary(utcnow()).attempts_24h == 300


def test_every_tab_shares_one_computation_and_a_test_shows_at_once(app, auth_client, integration, receiver):
    with app.app_context():
        add_delivery(utcnow() - timedelta(minutes=5), "delivered",
                     attempts=[(utcnow() - timedelta(minutes=5), 30.0, 200)])
    reads = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "FROM attempt_rollups" in statement:
            reads.append(statement)

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", capture)
    try:
        pages = [auth_client.get(f"{LOG}/stats").text for _ in range(6)]  # six tabs polling
        assert len(reads) == 3  # the summary's two sums and the chart's: computed once for all six
        assert all('data-stat="hits">1<' in page for page in pages)
        # The drain does not invalidate: another delivery shows with the next computation.
        with app.app_context():
            add_delivery(utcnow() - timedelta(minutes=1), "delivered",
                         attempts=[(utcnow() - timedelta(minutes=1), 30.0, 200)])
        assert "1 of 1 attempts" in auth_client.get(f"{LOG}/stats").text
        assert len(reads) == 3
        # The 7 d window is computed on its own.
        auth_client.get(f"{LOG}/stats?range=7d")
        assert len(reads) == 6
        # A test the admin just sent shows at once, on the settings page too.
        response = auth_client.post("/settings/integrations/webhook/test", data={"event_type": "call_ended"})
        assert response.status_code in (200, 302)
        assert len(receiver.requests) == 1
        assert "3 of 3 attempts" in auth_client.get(f"{LOG}/stats").text
        assert "3 of 3 attempts" in auth_client.get("/settings/integrations/webhook").text
    finally:
        with app.app_context():
            event.remove(db.engine, "before_cursor_execute", capture)


def test_the_stats_cache_can_be_turned_off(app_config, auth_client, app):
    app.config["HOOKLINE_STATS_CACHE_SECONDS"] = 0
    assert "0 of 0 attempts" in auth_client.get(f"{LOG}/stats").text
    with app.app_context():
        add_delivery(utcnow(), "delivered", attempts=[(utcnow(), 30.0, 200)])
    assert "1 of 1 attempts" in auth_client.get(f"{LOG}/stats").text


def test_the_retention_prune_removes_old_rollups(app):
    now = utcnow()
    with app.app_context():
        add_delivery(now - timedelta(days=40), "delivered", attempts=[(now - timedelta(days=40), 5.0, 200)])
        add_delivery(now - timedelta(days=2), "delivered", attempts=[(now - timedelta(days=2), 5.0, 200)])
        assert db.session.scalar(select(db.func.count()).select_from(rollup_table)) == 2
        assert prune(now, retention_days=30) == 1
        assert db.session.execute(select(rollup_table.c.minute, rollup_table.c.delivered)).all() == [
            (rollups.minute_of(now - timedelta(days=2)), 1)]
        assert outcome_series(now, "7d").totals()["delivered"] == 1


def test_while_one_request_recomputes_the_others_show_the_previous_figures(app, auth_client):
    from extensions import get_redis

    assert 'data-stat="hits">0<' in auth_client.get(f"{LOG}/stats").text
    with app.app_context():
        add_delivery(utcnow(), "delivered", attempts=[(utcnow(), 30.0, 200)])
        key, client = stats._key("24h"), get_redis()
    cached = json.loads(client.get(key))
    client.set(key, json.dumps({**cached, "fresh_until": 0}))  # the interval is over ...
    client.set(key + ":lock", 1)  # ... and another request is computing the new figures
    assert 'data-stat="hits">0<' in auth_client.get(f"{LOG}/stats").text  # not a second computation
    client.delete(key + ":lock")
    assert 'data-stat="hits">1<' in auth_client.get(f"{LOG}/stats").text
    client.set(key, b"figures of another version")  # unreadable: computed again, not a 500
    response = auth_client.get(f"{LOG}/stats")
    assert response.status_code == 200 and 'data-stat="hits">1<' in response.text
