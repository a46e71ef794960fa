"""publish_event and the caller's transaction: one stance on both databases.

If the caller's session has a transaction open, the event joins it (a
transactional outbox): it is sent once the caller commits, and a rollback
takes it back with the caller's own work. With no transaction open, the
event is committed before publish_event returns. Run on SQLite, and on
PostgreSQL when HOOKLINE_TEST_DATABASE_URL is set.
"""

import pytest
from sqlalchemy import func, select

from events import example_envelope
from extensions import get_redis
from models import db
from models.alerts import Alert
from models.events import Delivery, Event
from tasks import publish_event, publish_events
from tasks.queue import BELL, flush_rings

PAYLOAD = example_envelope("call_answered")["payload"]


def committed(model, *where) -> int:
    """How many rows of ``model`` another connection sees (committed rows only)."""
    with db.engine.connect() as other:
        return other.scalar(select(func.count()).select_from(model).where(*where))


def rung() -> bool:
    """Has a worker been woken since the bell was last cleared? (the Waker's pending rings sent first)"""
    flush_rings()
    return get_redis().llen(BELL) > 0


def alert(key: str) -> Alert:
    return Alert(key=key, kind="failing", recipient="a@example.com", subject="s", body="b")


@pytest.fixture
def ctx(app, integration):
    """An app context with the integration on and the bell cleared."""
    with app.app_context():
        get_redis().delete(BELL)
        yield


def test_with_no_transaction_open_the_event_is_committed_before_publish_returns(ctx):
    assert not db.session().in_transaction()
    event_id = publish_event("call_answered", PAYLOAD)
    assert committed(Event, Event.id == event_id) == 1
    assert committed(Delivery) == 1
    assert rung()


def test_an_event_joins_the_callers_transaction_and_goes_with_its_commit(ctx):
    db.session.add(alert("joined-commit"))
    db.session.flush()  # the caller has written: a transaction is open
    event_id = publish_event("call_answered", PAYLOAD)
    assert committed(Event, Event.id == event_id) == 0, "visible before the caller committed"
    assert not rung(), "a worker was woken for an event nobody can see yet"

    db.session.commit()
    assert committed(Event, Event.id == event_id) == 1
    assert committed(Delivery) == 1
    assert committed(Alert, Alert.key == "joined-commit") == 1
    assert rung(), "the commit did not wake a worker"


def test_a_rollback_takes_the_event_back_with_the_callers_work(ctx):
    db.session.add(alert("joined-rollback"))
    db.session.flush()
    event_id = publish_event("call_answered", PAYLOAD)
    assert event_id is not None
    db.session.rollback()

    assert committed(Event) == 0 and committed(Delivery) == 0
    assert committed(Alert) == 0
    assert not rung()
    # A later commit of other work does not wake a worker for the rolled-back event.
    db.session.add(alert("after"))
    db.session.commit()
    assert not rung()


def test_a_read_opens_a_transaction_too_so_the_event_waits_for_the_callers_commit(ctx):
    db.session.scalar(select(func.count()).select_from(Event))  # a read through the session
    assert db.session().in_transaction()
    publish_event("call_answered", PAYLOAD)
    assert committed(Event) == 0
    db.session.commit()
    assert committed(Event) == 1


def test_a_batch_joins_the_callers_transaction_the_same_way(ctx):
    db.session.add(alert("batch"))
    db.session.flush()
    ids = publish_events([("call_answered", PAYLOAD), ("call_answered", PAYLOAD)])
    assert all(ids) and committed(Event) == 0
    db.session.rollback()
    assert committed(Event) == 0 and committed(Delivery) == 0

    ids = publish_events([("call_answered", PAYLOAD), ("call_answered", PAYLOAD)])  # none open now
    assert committed(Event, Event.id.in_(ids)) == 2
    assert rung()


def test_an_event_the_integration_does_not_want_leaves_the_callers_transaction_alone(ctx):
    from models.settings import get_settings

    get_settings().events = ["call_ended"]
    db.session.commit()
    db.session.add(alert("unwanted"))
    db.session.flush()
    assert publish_event("call_answered", PAYLOAD) is None
    assert db.session().in_transaction(), "publish ended the caller's transaction"
    db.session.commit()
    assert committed(Alert) == 1 and committed(Event) == 0
    assert not rung()
