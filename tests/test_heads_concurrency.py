"""Head flags under concurrency (PostgreSQL, READ COMMITTED): publishes commit while drains claim and record.

tasks.heads argues that no call is ever left with open deliveries and no
head, and that no two rows of a call are leased at once. Here threads
publish events of a few calls while other threads claim, hold a batch a
moment and record it delivered, all at once; at the end every delivery
must have been leased exactly once, each call's in publish order, and
nothing may be left open. A stuck call would leave rows open.
"""

import random
import threading
import time
from collections import defaultdict

from sqlalchemy import text

from models import db
from tasks import outbox, publish_event

CALLS = 12
EVENTS = 600
PUBLISHERS = 3
DRAINS = 4


def test_no_call_is_left_without_a_head_and_none_has_two(postgres_app):
    app = postgres_app
    leased: list[int] = []
    lock = threading.Lock()
    publishing = threading.Event()
    publishing.set()
    errors: list[BaseException] = []

    def publisher(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with app.app_context():
                for _ in range(EVENTS // PUBLISHERS):
                    call = rng.randrange(CALLS)
                    publish_event("call_ringing", {"call_id": call, "direction": "outbound",
                                                   "from": "+905555555555", "to": "+905555555554"})
                    time.sleep(rng.random() * 0.002)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def drain(seed: int) -> None:
        rng = random.Random(seed)
        idle = 0
        try:
            with app.app_context():
                while publishing.is_set() or idle < 20:
                    token = outbox.new_token()
                    batch = outbox.claim(token, rng.choice((1, 3, 8)), 30)
                    db.session.commit()
                    with lock:
                        leased.extend(d.id for d in batch)
                    if not batch:
                        idle += 1
                        time.sleep(0.005)
                        continue
                    idle = 0
                    time.sleep(rng.random() * 0.003)  # "sending"
                    outbox.write(token, [], [dict(delivery_id=d.id, status="delivered", due_at=None,
                                                  lease_until=None) for d in batch])
                    if rng.random() < 0.5:  # record and claim in one transaction, as the drain does
                        ahead = outbox.new_token()
                        more = outbox.claim(ahead, 2, 30)
                        db.session.commit()
                        with lock:
                            leased.extend(d.id for d in more)
                        outbox.write(ahead, [], [dict(delivery_id=d.id, status="delivered", due_at=None,
                                                      lease_until=None) for d in more])
                    db.session.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publisher, args=(i,)) for i in range(PUBLISHERS)]
    drains = [threading.Thread(target=drain, args=(100 + i,)) for i in range(DRAINS)]
    for thread in drains + threads:
        thread.start()
    for thread in threads:
        thread.join()
    publishing.clear()
    for thread in drains:
        thread.join(120)
    assert not errors, errors

    with app.app_context():
        rows = db.session.execute(text("SELECT id, call_id, status FROM deliveries ORDER BY id")).all()
    assert len(rows) == EVENTS // PUBLISHERS * PUBLISHERS
    left_open = [(row.id, row.call_id) for row in rows if row.status != "delivered"]
    assert not left_open, f"stuck: {left_open}"
    assert sorted(leased) == [row.id for row in rows], "every delivery leased exactly once"
    order = defaultdict(list)
    call_of = {row.id: row.call_id for row in rows}
    for delivery_id in leased:
        order[call_of[delivery_id]].append(delivery_id)
    for call, ids in order.items():
        assert ids == sorted(ids), f"call {call} leased out of order: {ids}"
