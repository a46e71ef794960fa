"""One recorder, fenced writes, renewed leases: nothing breaks a batch, nothing overwrites newer state.

Real receivers on 127.0.0.1 answer with what real ones sometimes send (NUL
bytes, UTF-16, binary, a NUL in the reason phrase); on PostgreSQL a NUL in
a text column is refused, which used to roll back the whole batch forever.
"""

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from models import db, utcnow
from models.events import Attempt, Delivery
from tasks import outbox
from tasks.drain import Drainer, drain
from tests.support import publish_calls, wait_until
from tests.support.receiver import Reply
from tests.test_delivery import deliveries

#: Replies a receiver may send: each is recorded, its event delivered once.
HOSTILE_BODIES = {
    "nul in body": Reply(200, body=b"ok\x00then more"),
    "utf-16 body": Reply(200, headers={"Content-Type": "text/plain; charset=utf-16"},
                         body="accepted ✓".encode("utf-16")),
    "binary body": Reply(200, headers={"Content-Type": "application/octet-stream"},
                         body=bytes(range(256))),
}
#: Not HTTP at all (a NUL in the status line or a header): libcurl refuses the
#: reply, so the attempt is recorded as an invalid reply and retried.
NOT_HTTP = {
    "nul in reason": Reply(200, reason="O\x00K"),
    "nul in a header": Reply(200, headers={"X-Trace": "a\x00b"}),
}


def attempts_by_delivery(app):
    with app.app_context():
        rows = db.session.execute(select(Attempt.delivery_id, Attempt.ok, Attempt.response_body,
                                         Attempt.response_headers, Attempt.url)).all()
    return rows


def test_hostile_replies_are_recorded_and_each_event_is_sent_once(app, client, integration, receiver):
    ids = publish_calls(app, len(HOSTILE_BODIES) + len(NOT_HTTP))
    # Each event its own reply: the batch's requests reach the receiver side by side, in any order.
    for event_id, reply in zip(ids, [*HOSTILE_BODIES.values(), *NOT_HTTP.values()]):
        receiver.respond_to(event_id, reply)
    with app.app_context():
        assert drain(linger=0) == len(ids)
        statuses = db.session.scalars(select(Delivery.status).order_by(Delivery.id)).all()
        errors = db.session.scalars(select(Attempt.error_message).order_by(Attempt.id)).all()
    assert statuses == ["delivered"] * len(HOSTILE_BODIES) + ["retrying"] * len(NOT_HTTP)
    assert errors[len(HOSTILE_BODIES):] == ["Invalid reply: the receiver did not answer in HTTP (NUL byte in header)"] * 2
    # Each event went out once: a batch that could not be recorded was sent again and again.
    assert sorted(json.loads(r.body)["payload"]["call_id"] for r in receiver.requests) == \
        sorted(f"call-{i}" for i in range(len(ids)))
    rows = attempts_by_delivery(app)
    assert len(rows) == len(ids)
    bodies = [body for _, _, body, _, _ in rows]
    assert "ok\ufffdthen more" in bodies  # the NUL replaced, the rest kept
    assert "accepted ✓".encode("utf-16").decode("utf-8", errors="replace").replace("\x00", "\ufffd") in bodies
    assert all("\x00" not in (body or "") for body in bodies)
    assert {url for *_, url in rows} == {receiver.url}
    metrics = client.get("/metrics").text
    assert f'hookline_deliveries{{status="delivered"}} {float(len(HOSTILE_BODIES))}' in metrics


@pytest.mark.parametrize("reply, status, check", [
    (Reply(200, body=b"\x00\x01binary\xff"), "delivered",
     lambda attempt: attempt.response_body == "\ufffd\x01binary\ufffd"),
    # Not HTTP (a NUL in the status line): recorded as an invalid reply.
    (Reply(200, reason="O\x00K", body=b"\x00\x01binary\xff"), "failed",
     lambda attempt: "NUL byte" in attempt.error_message),
], ids=["binary body", "nul in the status line"])
def test_the_test_button_records_what_the_receiver_sent(app, auth_client, integration, receiver,
                                                        reply, status, check):
    receiver.respond(reply)
    response = auth_client.post("/settings/integrations/webhook/test", data={"event_type": "call_ended"},
                                follow_redirects=True)
    assert response.status_code == 200
    assert len(receiver.requests) == 1
    with app.app_context():
        [delivery] = db.session.scalars(select(Delivery)).all()
        assert delivery.is_test and delivery.status == status
        [attempt] = delivery.attempts
        assert check(attempt)


def refuse_rows_containing(word):
    """Make the database itself refuse any attempt whose reply body holds ``word``."""
    if db.engine.dialect.name == "sqlite":
        db.session.execute(text(
            "CREATE TRIGGER refuse BEFORE INSERT ON attempts WHEN NEW.response_body LIKE :pattern "
            "BEGIN SELECT RAISE(ABORT, 'refused by the database'); END".replace(":pattern", f"'%{word}%'")))
    else:
        db.session.execute(text(
            f"ALTER TABLE attempts ADD CONSTRAINT refuse CHECK (response_body NOT LIKE '%{word}%')"))
    db.session.commit()


def test_a_row_the_database_refuses_is_recorded_without_the_reply(app, integration, receiver):
    receiver.respond(Reply(200, body=b"fine"), Reply(200, body=b"poison"), Reply(200, body=b"fine too"))
    ids = publish_calls(app, 3)
    with app.app_context():
        refuse_rows_containing("poison")
        assert drain(linger=0) == 3
        deliveries = db.session.scalars(select(Delivery).order_by(Delivery.id)).all()
        assert [d.status for d in deliveries] == ["delivered"] * 3
        assert [len(d.attempts) for d in deliveries] == [1, 1, 1]
        stripped = [d.attempts[0] for d in deliveries if d.attempts[0].response_body is None]
        assert len(stripped) == 1
        assert stripped[0].error_message.startswith("The reply could not be stored")
    assert len(receiver.requests) == len(ids)  # nothing was sent twice


def test_a_stale_drains_write_changes_no_rows(app, integration, receiver):
    """A drain whose lease expired and was taken over writes nothing: the log keeps the newer state."""
    publish_calls(app, 2)
    with app.app_context():
        stale = outbox.new_token()
        claimed = outbox.claim(stale, limit=10, lease_seconds=15)
        db.session.commit()
        ids = [d.id for d in claimed]
        assert len(ids) == 2
        # The stale drain's batch outlives its lease (a stalled receiver, a frozen VM) ...
        db.session.execute(update(Delivery).values(lease_until=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        # ... another drain claims, sends and records them.
        assert Drainer(app.config).run_until_empty() == 2
        # Now the stale drain tries to record its own outcome: a timeout, back to retrying.
        stale_changes = [dict(delivery_id=i, status="retrying", attempt_count=1, lease_until=None,
                              last_error="timed out") for i in ids]
        stale_attempts = [dict(delivery_id=i, number=1, started_at=utcnow(), duration_ms=10000.0,
                               ok=False, error_kind="timeout", error_message="timed out") for i in ids]
        written = outbox.write(stale, stale_attempts, stale_changes)
        db.session.commit()
        assert written == set()
        deliveries = db.session.scalars(select(Delivery).order_by(Delivery.id)).all()
        assert [d.status for d in deliveries] == ["delivered", "delivered"]
        assert [[a.ok for a in d.attempts] for d in deliveries] == [[True], [True]]
        # The renewal is fenced the same way.
        assert outbox.renew(stale, ids, 15) == 0


def test_a_drain_that_lost_part_of_its_batch_writes_the_rest(app, integration, receiver):
    """Of a batch whose lease was lost for one row and taken over, only the rows still held are written."""
    publish_calls(app, 2)
    with app.app_context():
        stale = outbox.new_token()
        first, second = outbox.claim(stale, limit=10, lease_seconds=15)
        db.session.commit()
        # The first row's lease runs out and another drain delivers it.
        db.session.execute(update(Delivery).where(Delivery.id == first.id)
                           .values(lease_until=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        assert Drainer(app.config).run_until_empty() == 1
        changes = [dict(delivery_id=d.id, status="retrying", attempt_count=1, lease_until=None,
                        last_error="timed out") for d in (first, second)]
        attempts = [dict(delivery_id=d.id, number=1, started_at=utcnow(), duration_ms=10000.0,
                         ok=False, error_kind="timeout", error_message="timed out") for d in (first, second)]
        assert outbox.write(stale, attempts, changes) == {second.id}
        db.session.commit()
        deliveries = db.session.scalars(select(Delivery).order_by(Delivery.id)).all()
        assert [d.status for d in deliveries] == ["delivered", "retrying"]
        assert [[a.ok for a in d.attempts] for d in deliveries] == [[True], [False]]


def test_a_batch_that_outlasts_its_lease_keeps_it(app, app_config, integration, receiver, start_worker):
    """Renewal: a receiver slower than the lease does not make a second worker send again."""
    app.config.update(HOOKLINE_LEASE_SECONDS=1.5)
    receiver.default = Reply(200, delay=2.5)
    start_worker(), start_worker()
    ids = publish_calls(app, 4)
    receiver.wait_for(len(ids), timeout=30)
    wait_until(lambda: [d.status for d in deliveries(app)] == ["delivered"] * len(ids))
    with app.app_context():
        attempts = db.session.scalar(select(db.func.count()).select_from(Attempt))
    # Each event once, one attempt each: the leases were renewed while the receiver took its time.
    assert len(receiver.requests) == len(ids)
    assert attempts == len(ids)


def test_a_batch_that_fails_before_it_is_recorded_lets_its_lease_run_out(app, app_config, integration, receiver):
    """A drain that fails mid-batch (here: it cannot decrypt the settings) stops renewing its lease.

    Otherwise the lease keeper renews it for as long as the worker lives and
    the call never goes on (seen with PostgreSQL restarted mid-burst).
    """
    from app import create_app

    app.config.update(HOOKLINE_LEASE_SECONDS=0.6)  # renewed every 0.2 s while held
    ids = publish_calls(app, 1)
    wrong_key = create_app({**app_config, "HOOKLINE_LEASE_SECONDS": 0.6,
                            "HOOKLINE_ENCRYPTION_KEY": "some-other-key"})
    with wrong_key.app_context(), pytest.raises(RuntimeError, match="HOOKLINE_ENCRYPTION_KEY"):
        Drainer(wrong_key.config).run_batch()  # claimed, then the settings cannot be read
    with app.app_context():
        assert db.session.scalar(select(Delivery.claimed_by)) is not None  # leased by the failed drain
    # Three renewal periods later the lease has run out, and a drain sends the event.
    wait_until(lambda: _drain_in(app) or receiver.requests, timeout=10, what="the event sent by another drain")
    assert [r.headers["webhook-id"] for r in receiver.requests] == ids


def _drain_in(app) -> bool:
    with app.app_context():
        drain(linger=0)
    return False
