"""A worker SIGKILLed mid-batch, with the default lease: another worker answers its deliveries within 20 s."""

import os
import signal
import time

from sqlalchemy import func, select

from events import example_envelope
from models import db
from models.events import Attempt, Delivery
from tasks import publish_event
from tests.faults.conftest import assert_all_arrived
from tests.support.receiver import Reply
from tests.support import wait_until

SLOW = 3.0  # the receiver answers after this many seconds


def test_a_killed_workers_batch_is_answered_by_another_within_20_s(app, integration, receiver, start_worker):
    assert app.config["HOOKLINE_LEASE_SECONDS"] == 15  # the default lease, not a shortened one
    receiver.default = Reply(200, delay=SLOW)
    payload = example_envelope("call_initiated")["payload"]
    with app.app_context():
        ids = [publish_event("call_initiated", {**payload, "call_id": f"call-{i}"}) for i in range(8)]
    victim = start_worker()  # all 8 are due: its first claim takes them as one batch
    receiver.wait_for(len(ids), timeout=30)
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.time()
    victim.wait(5)
    start_worker()
    receiver.wait_for(2 * len(ids), timeout=40)
    answered = max(request.at for request in receiver.requests[len(ids):]) + SLOW
    figures = assert_all_arrived(receiver, ids)
    print(f"\nFAULT worker SIGKILL mid-batch, default lease: answered {answered - killed_at:.1f} s after the kill; {figures}")
    assert answered - killed_at < 20
    # Duplicates only of what was in flight at the kill, each with its webhook-id; one attempt each recorded.
    assert figures["duplicates"] == len(ids)
    wait_until(lambda: _delivered(app) == len(ids))
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Attempt)) == len(ids)


def _delivered(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).where(Delivery.status == "delivered"))
