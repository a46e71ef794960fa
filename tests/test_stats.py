"""Delivery statistics on a known set of rows, with the clock fixed.

Rows are inserted directly (Event + Delivery + Attempt, and the roll-ups the
recorder writes with them) with chosen times, so every figure below can be
checked by hand. tests/test_rollups.py checks the roll-ups against the raw
attempts on generated traffic.
"""

import json
import random
from datetime import datetime, timedelta

import pytest

from models import db
from models.events import Attempt, Delivery, Event
from tasks import rollups
from tasks.rollups import outcome_of_attempt
from tasks.stats import bucket_edges, outcome_series, percentile, summary

NOW = datetime(2025, 10, 10, 12, 30)


def add_delivery(created_at, status="delivered", *, event_type="call_initiated", call_id="c-1",
                 is_test=False, attempts=(), due_at=None):
    """Insert one event, its delivery and its attempts; return the delivery id.

    ``attempts`` holds ``(started_at, duration_ms, status_code)``; a 2xx is ok.
    Needs an app context.
    """
    body = json.dumps({"event_type": event_type, "timestamp_utc": int(created_at.timestamp()),
                       "payload": {"call_id": call_id}, "is_test": is_test}, separators=(",", ":"))
    event = Event(event_type=event_type, call_id=call_id, timestamp_utc=int(created_at.timestamp()),
                  is_test=is_test, body=body, created_at=created_at)
    delivery = Delivery(event=event, event_type=event_type, call_id=call_id, is_test=is_test,
                        status=status, created_at=created_at, due_at=due_at,
                        attempt_count=len(attempts))
    db.session.add_all([event, delivery])
    db.session.flush()
    for number, (started_at, duration_ms, code) in enumerate(attempts, start=1):
        ok = code is not None and 200 <= code < 300
        db.session.add(Attempt(
            delivery_id=delivery.id, number=number, started_at=started_at, duration_ms=duration_ms,
            status_code=code, ok=ok, request_headers={"webhook-id": event.id},
            error_kind=None if ok else ("http_status" if code else "connect"),
            error_message=None if ok else "failed",
        ))
        delivery.last_status_code, delivery.last_duration_ms = code, duration_ms
        delivery.last_attempt_at = started_at
    # The roll-ups the recorder would have written with these rows.
    entries = [(started_at, duration_ms, outcome_of_attempt(code is not None and 200 <= code < 300,
                                                            number, len(attempts), status))
               for number, (started_at, duration_ms, code) in enumerate(attempts, start=1)]
    if status == "cancelled":  # closed at its last attempt, like the migration counts it
        entries.append((attempts[-1][0] if attempts else created_at, None, "cancelled"))
    rollups.add(rollups.tally(entries))
    db.session.commit()
    return delivery.id


def ago(**kwargs):
    return NOW - timedelta(**kwargs)


@pytest.fixture
def known_rows(app):
    """Nine deliveries: seven in the last 24 h, one 25 h ago, one two days ago.

    The last 24 h hold ten attempts of 10, 20, ... 100 ms, six of them 2xx.
    """
    with app.app_context():
        add_delivery(ago(minutes=10), "delivered", attempts=[(ago(minutes=10), 10.0, 200)])
        add_delivery(ago(minutes=20), "delivered", attempts=[(ago(minutes=20), 20.0, 204)])
        # 11:45 → the 11:00 bucket; three failed attempts.
        add_delivery(ago(minutes=45), "failed", attempts=[
            (ago(minutes=45), 30.0, 500), (ago(minutes=44), 40.0, 500), (ago(minutes=42), 50.0, None)])
        add_delivery(ago(hours=2), "retrying", due_at=ago(hours=-1),
                     attempts=[(ago(hours=2), 60.0, 503)])
        add_delivery(ago(hours=3), "pending")
        add_delivery(ago(hours=5), "cancelled")
        # 13:00 yesterday: the first instant of the 24 h chart.
        add_delivery(ago(hours=23, minutes=30), "delivered", attempts=[
            (ago(hours=23, minutes=30), 70.0, 200), (ago(hours=23), 80.0, 200),
            (ago(hours=22), 90.0, 200), (ago(hours=21), 100.0, 200)])
        # Outside the 24 h window (chart and percentiles), inside the 7 days.
        add_delivery(ago(hours=25), "delivered", attempts=[(ago(hours=25), 5000.0, 200)])
        add_delivery(ago(days=2), "failed", attempts=[(ago(days=2), 9000.0, 500)])
        # An attempt after "now" is not counted (the clock is fixed).
        add_delivery(NOW + timedelta(minutes=5), "delivered",
                     attempts=[(NOW + timedelta(minutes=5), 1.0, 200)])
    return app


def test_percentile_is_nearest_rank():
    values = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 100
    assert percentile(values, 90) == 90
    assert percentile([7.5], 95) == 7.5
    assert percentile([], 50) is None


def test_summary_figures(known_rows):
    with known_rows.app_context():
        s = summary(NOW)
    assert s.hits == 12  # every call kept, whatever its age, up to now's minute
    assert s.attempts_24h == 10
    assert s.succeeded_24h == 6
    assert s.success_rate == pytest.approx(0.6)
    # From the latency buckets: within 10% of the exact nearest-rank 50 and 100 ms.
    assert s.p50_ms == pytest.approx(50.0, rel=0.1)
    assert s.p95_ms == pytest.approx(100.0, rel=0.1)
    # The latest attempt at or before now: the delivery of 10 minutes ago.
    assert s.last_hit_at == ago(minutes=10)
    assert s.last_hit_status == 200 and s.last_hit_ok is True


@pytest.mark.parametrize("count", [1, 2, 3, 19, 20, 21, 41])
def test_summary_percentiles_match_a_sort_in_python(app, count):
    # Read from the latency buckets, each percentile stays within 10% of the
    # exact nearest-rank value, ties and tiny samples included.
    rng = random.Random(count)
    durations = [float(rng.choice([0.4, 5, 7, 7, 12, 30, 31, 250, 9_800])) + rng.randrange(3)
                 for _ in range(count)]
    with app.app_context():
        add_delivery(ago(hours=1), "delivered", attempts=[
            (ago(minutes=50 - i % 40, seconds=i), duration, 200) for i, duration in enumerate(durations)])
        s = summary(NOW)
    assert s.attempts_24h == count
    assert s.p50_ms == pytest.approx(percentile(sorted(durations), 50), rel=0.1)
    assert s.p95_ms == pytest.approx(percentile(sorted(durations), 95), rel=0.1)


def test_summary_on_an_empty_database(app):
    with app.app_context():
        s = summary(NOW)
    assert (s.hits, s.attempts_24h, s.success_rate, s.p50_ms, s.p95_ms, s.last_hit_at) == (
        0, 0, None, None, None, None)


def test_hourly_buckets_by_outcome(known_rows):
    # Each attempt counts under the state it led to, in the hour it was made;
    # a cancellation without an attempt in its hour; a pending delivery not yet.
    with known_rows.app_context():
        series = outcome_series(NOW, "24h")
    assert len(series.buckets) == 24
    assert series.buckets[0].start == datetime(2025, 10, 9, 13, 0)
    assert series.buckets[-1].start == datetime(2025, 10, 10, 12, 0)
    assert series.buckets[-1].end == datetime(2025, 10, 10, 13, 0)
    by_hour = {b.start.hour: (b.delivered, b.failed, b.retrying, b.cancelled) for b in series.buckets}
    assert by_hour[12] == (2, 0, 0, 0)
    assert by_hour[11] == (0, 1, 2, 0)  # two 500s retried, then a failure for good
    assert by_hour[10] == (0, 0, 1, 0)  # retrying
    assert by_hour[9] == (0, 0, 0, 0)  # pending: no attempt yet
    assert by_hour[7] == (0, 0, 0, 1)
    assert by_hour[13] == (2, 0, 0, 0)  # 13:00 yesterday, the window's first bucket, and 13:30
    assert (by_hour[14], by_hour[15]) == ((1, 0, 0, 0), (1, 0, 0, 0))
    assert sum(b.total for b in series.buckets) == 11
    assert series.totals() == {"delivered": 6, "failed": 1, "retrying": 3, "cancelled": 1}
    assert series.peak == 3


def test_six_hour_buckets_over_seven_days(known_rows):
    with known_rows.app_context():
        series = outcome_series(NOW, "7d")
    assert len(series.buckets) == 28
    assert all(b.end - b.start == timedelta(hours=6) for b in series.buckets)
    # 12:30 sits in the 12:00–18:00 slot, the last one.
    assert series.buckets[-1].start == datetime(2025, 10, 10, 12, 0)
    assert series.buckets[0].start == datetime(2025, 10, 3, 18, 0)
    counts = {b.start: (b.delivered, b.failed, b.retrying, b.cancelled) for b in series.buckets if b.total}
    assert counts == {
        datetime(2025, 10, 8, 12): (0, 1, 0, 0),  # two days ago
        datetime(2025, 10, 9, 6): (1, 0, 0, 0),  # 25 h ago, 11:30 yesterday
        datetime(2025, 10, 9, 12): (4, 0, 0, 0),  # 13:00, 13:30, 14:30, 15:30 yesterday
        datetime(2025, 10, 10, 6): (0, 1, 3, 1),  # 07:30, 10:30, 11:45-11:48
        datetime(2025, 10, 10, 12): (2, 0, 0, 0),  # 12:35 is after now: not yet
    }


def test_bucket_edges_align_to_utc_slots():
    edges, width = bucket_edges(datetime(2025, 10, 10, 0, 0), "24h")
    assert width == timedelta(hours=1)
    assert edges[-1] == datetime(2025, 10, 10, 1, 0) and edges[0] == datetime(2025, 10, 9, 1, 0)
    edges, width = bucket_edges(datetime(2025, 10, 10, 17, 59, 59), "7d")
    assert edges[-1] == datetime(2025, 10, 10, 18, 0) and len(edges) == 29


def test_unknown_range_falls_back_to_24_hours(app):
    with app.app_context():
        assert outcome_series(NOW, "1y").range == "24h"


def test_hits_are_the_calls_kept_and_leave_with_the_retention_prune(app):
    """Hits count webhook calls (attempts), read from the roll-ups; pruned ones stop counting."""
    from tasks.maintenance import prune
    from models import utcnow

    with app.app_context():
        now = utcnow()
        for days, calls in ((40, 2), (40, 1), (1, 1)):
            moment = now - timedelta(days=days)
            add_delivery(moment, "delivered", attempts=[(moment + timedelta(minutes=i), 9.0, 200)
                                                       for i in range(calls)])
        add_delivery(now, "pending")  # no call yet
        assert summary(now).hits == 4
        add_delivery(now, "delivered", attempts=[(now, 9.0, 200)])
        assert summary(now).hits == 5
        assert prune(now, retention_days=30) == 2
        assert summary(now).hits == 2
