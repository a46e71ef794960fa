"""Per-call order under load: four workers, fifty calls, a receiver that fails at random.

The drain promises that a call's events reach the receiver in the order they
were published whatever the number of workers, because a delivery is not
claimable while an earlier one of its call is still open. Two workers and no
failures (tests/test_delivery.py) cannot show much of that: here four
`flask worker` processes share 50 concurrent calls of 20 events each, and the
receiver answers 500 to a fifth of the requests, so every call keeps getting
held back behind a retry while the other calls overtake it.

Real parts only: a private redis-server, real worker processes, SQLite (or
PostgreSQL), and the threaded HTTP receiver on 127.0.0.1. Timing is not
asserted (that is bench/'s job); the counts and the duration are printed
(`pytest -s` or `-rP` shows them).
"""

import json
import random
import time
from collections import defaultdict

import pytest
from sqlalchemy import func, select

from cli.devtools import call_lifecycle
from models import db
from models.events import DELIVERED, OPEN_STATES, Attempt, Delivery
from tasks import publish_event

WORKERS = 4
CALLS = 50
#: call_initiated, call_ringing, call_answered, 16 transcripts, call_ended.
TRANSCRIPTS = 16
EVENTS_PER_CALL = TRANSCRIPTS + 4
FAIL_RATE = 0.2
SEED = 6
#: 20 retries: an event fails for good only after 21 failures in a row,
#: a chance of 0.2**21 (about 2e-15) per event.
RETRIES = 20


@pytest.fixture
def app_config(app_config):
    # Retries 50 ms apart instead of minutes, so ~250 failures cost seconds.
    app_config["HOOKLINE_RETRY_SCHEDULE"] = (0.05,) * RETRIES
    # When the drains run out of due work (a call's head is waiting out its
    # 50 ms), a worker's tick is what wakes them again: keep it short.
    app_config["HOOKLINE_TICK_SECONDS"] = 0.2
    return app_config


def open_count(app) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.status.in_(OPEN_STATES)))


def wait_until_settled(app, timeout: float) -> None:
    """Wait until no delivery is pending or retrying (fails on timeout)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if open_count(app) == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{open_count(app)} deliveries still open after {timeout} s")


@pytest.mark.slow
def test_four_workers_keep_each_calls_order_through_random_failures(
        app, integration, receiver, start_worker):
    receiver.fail_at_random(FAIL_RATE, seed=SEED)
    for _ in range(WORKERS):
        start_worker()

    # The calls overlap the way live calls do: each step publishes the next
    # event of a call picked at random (seeded), so the 50 calls' events are
    # interleaved in the outbox while each call's own events stay in order.
    calls = {100_000 + n: call_lifecycle(100_000 + n, "inbound" if n % 2 else "outbound", TRANSCRIPTS)
             for n in range(CALLS)}
    assert all(len(events) == EVENTS_PER_CALL for events in calls.values())
    turns = [call_id for call_id in calls for _ in range(EVENTS_PER_CALL)]
    random.Random(SEED).shuffle(turns)
    published = defaultdict(list)  # call id -> event ids in publish order
    call_of = {}  # event id -> call id
    started = time.monotonic()
    with app.app_context():
        for call_id in turns:
            event_type, payload = calls[call_id][len(published[call_id])]
            event_id = publish_event(event_type, payload)
            assert event_id is not None
            published[call_id].append(event_id)
            call_of[event_id] = call_id
    publish_seconds = time.monotonic() - started

    # The workers deliver while the test publishes; wait for the stragglers.
    wait_until_settled(app, timeout=50)
    settled_seconds = time.monotonic() - started
    time.sleep(0.5)  # anything sent twice would arrive now

    requests = list(receiver.requests)
    with app.app_context():
        statuses = dict(db.session.execute(
            select(Delivery.status, func.count()).group_by(Delivery.status)).all())
        attempts_in_db = db.session.scalar(select(func.count()).select_from(Attempt))
        failed_attempts_in_db = db.session.scalar(
            select(func.count()).select_from(Attempt).where(Attempt.ok.is_(False)))
        most_attempts = db.session.scalar(select(func.max(Delivery.attempt_count)))
    successes = [r.headers["webhook-id"] for r in requests if r.ok]
    duplicates = len(successes) - len(set(successes))
    print(f"\nFIFO load: {WORKERS} workers, {CALLS} calls x {EVENTS_PER_CALL} events, "
          f"{FAIL_RATE:.0%} random 500s (seed {SEED})\n"
          f"  published {len(call_of)}, received {len(set(successes))} distinct ids with a 2xx, "
          f"total requests {len(requests)}, failures injected {receiver.failures_injected}, "
          f"duplicate 2xx {duplicates}\n"
          f"  attempts recorded {attempts_in_db} ({failed_attempts_in_db} failed), "
          f"most attempts for one delivery {most_attempts}, final states {statuses}\n"
          f"  duration: publishing {publish_seconds:.1f} s, all settled {settled_seconds:.1f} s")

    # Nothing failed for good: 21 attempts each are far more than 20% failures need.
    assert statuses == {DELIVERED: len(call_of)}, statuses
    # None lost: every published id reached the receiver with a 2xx, and
    # nothing arrived that nobody published.
    assert set(successes) == set(call_of)
    assert {r.headers["webhook-id"] for r in requests} <= set(call_of)
    # The failures were the receiver's doing, and each one was recorded.
    assert receiver.failures_injected > 0
    assert attempts_in_db == len(requests)
    assert failed_attempts_in_db == receiver.failures_injected == len(requests) - len(successes)

    # Per call, the first 2xx of each event came in publish order.
    first_success = defaultdict(list)
    seen = set()
    for request in requests:
        event_id = request.headers["webhook-id"]
        if request.ok and event_id not in seen:
            seen.add(event_id)
            first_success[call_of[event_id]].append(event_id)
    for call_id, expected in published.items():
        assert first_success[call_id] == expected, f"call {call_id} arrived out of order"

    # Stronger, and what makes the above hold: a call's next event was never
    # sent (not even a failing try) before the previous one had its 2xx, and
    # no event was delivered twice (no worker died, so no lease ran out).
    assert duplicates == 0
    position = defaultdict(int)  # call id -> index of the event it may send now
    for request in requests:
        event_id = request.headers["webhook-id"]
        call_id = call_of[event_id]
        assert event_id == published[call_id][position[call_id]], (
            f"call {call_id}: {json.loads(request.body)['event_type']} {event_id} sent "
            f"while event #{position[call_id] + 1} of the call was still open")
        if request.ok:
            position[call_id] += 1
