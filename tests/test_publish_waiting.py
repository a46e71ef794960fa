"""PostgreSQL: a publish behind a waiting row of its call, while a drain holds that call's rows.

A publish committed on its own marks its delivery as waiting when an older
open row of its call is not leased, locking that row until it commits
(tasks.publish_sql._waiting_behind). It must never wait for a drain that is
writing the call's rows, and the call's events must still go out, each
once, in publish order.
"""

import threading

from sqlalchemy import text

from models import db
from tasks import outbox, publish_event

RINGING = {"direction": "outbound", "from": "+905555555555", "to": "+905555555554"}


def ringing(call: int) -> dict:
    return {"call_id": call, **RINGING}


def drain_in_order(app) -> list[int]:
    """Claim, record delivered and claim again until nothing is due; the ids in the order leased."""
    leased = []
    with app.app_context():
        while True:
            token = outbox.new_token()
            batch = outbox.claim(token, 8, 30)
            db.session.commit()
            if not batch:
                return leased
            leased += [d.id for d in batch]
            outbox.write(token, [], [dict(delivery_id=d.id, status="delivered", due_at=None, lease_until=None)
                                     for d in batch])
            db.session.commit()


def test_a_publish_does_not_wait_for_a_drain_holding_its_calls_rows(postgres_app):
    app = postgres_app
    with app.app_context():
        for _ in range(3):
            publish_event("call_ringing", ringing(7))
        ids = db.session.execute(text("SELECT id FROM deliveries ORDER BY id")).scalars().all()
    done = threading.Event()
    errors = []

    def publish_behind():
        try:
            with app.app_context():
                publish_event("call_ringing", ringing(7))
            done.set()
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)
            done.set()

    # Another session locks every open row of the call, as a drain's promote and claim do.
    with app.app_context(), db.engine.connect() as holder:
        holder.execute(text("SELECT id FROM deliveries WHERE call_id = '7' FOR UPDATE"))
        thread = threading.Thread(target=publish_behind)
        thread.start()
        finished = done.wait(30)  # a guard against a hang, not a timing: it finishes at once or never
        holder.rollback()
    thread.join(30)
    assert finished, "the publish waited for the session holding its call's rows"
    assert not errors, errors

    with app.app_context():
        every = db.session.execute(text("SELECT id FROM deliveries ORDER BY id")).scalars().all()
    assert len(every) == len(ids) + 1
    assert drain_in_order(app) == every  # each once, in publish order, none left behind


def test_a_call_published_behind_waiting_rows_goes_out_in_order(postgres_app):
    """Rows published behind unleased rows of their call are claimed one by one as the rows ahead close."""
    app = postgres_app
    with app.app_context():
        for call in (1, 2, 1, 1, 2, 1):
            publish_event("call_ringing", ringing(call))
        rows = db.session.execute(text("SELECT id, call_id FROM deliveries ORDER BY id")).all()
    leased = drain_in_order(app)
    assert sorted(leased) == [row.id for row in rows]
    for call in ("1", "2"):
        mine = [row.id for row in rows if row.call_id == call]
        assert [i for i in leased if i in mine] == mine
    with app.app_context():
        left_open = db.session.execute(text("SELECT count(*) FROM deliveries WHERE status <> 'delivered'")).scalar()
    assert left_open == 0
