"""Batches: ``tasks.publish_events`` and ``POST /api/v1/events`` with a JSON array (issue 23)."""

import json

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from standardwebhooks import Webhook

from cli.devtools import call_lifecycle
from events import EVENT_TYPES, InvalidEvent, example_envelope
from models import db
from models.events import Delivery, Event
from models.settings import get_settings
from tasks import publish_events
from tasks.autodisable import after_gone


@pytest.fixture
def token(app):
    result = app.test_cli_runner().invoke(args=["tokens", "create", "engine"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["token"]


def post(client, token, body):
    headers = {"Authorization": f"Bearer {token}"}
    if isinstance(body, (bytes, str)):
        return client.post("/api/v1/events", data=body, headers=headers, content_type="application/json")
    return client.post("/api/v1/events", json=body, headers=headers)


def counts(app):
    with app.app_context():
        return (db.session.scalar(select(func.count()).select_from(Event)),
                db.session.scalar(select(func.count()).select_from(Delivery)))


def lifecycle(call_id=1):
    """The six catalog events of one call, each as the seed shows it, with its own timestamp."""
    items = []
    for n, name in enumerate(EVENT_TYPES):
        seed = example_envelope(name)
        items.append({"event_type": name, "payload": seed["payload"], "timestamp_utc": 1760084500 + n})
    return items


def bodies(app):
    with app.app_context():
        return [(e.id, e.body) for e in db.session.scalars(select(Event).order_by(Event.seq))]


def test_publish_events_writes_each_envelope_in_order_and_the_worker_delivers_them_signed(
        app, integration, receiver, start_worker):
    items = lifecycle()
    with app.app_context():
        ids = publish_events(items)
    assert len(ids) == 6 and all(i.startswith("msg_") for i in ids) and len(set(ids)) == 6
    expected = [json.dumps({"event_type": i["event_type"], "timestamp_utc": i["timestamp_utc"],
                            "payload": i["payload"], "is_test": False}, separators=(",", ":"))
                for i in items]
    assert bodies(app) == list(zip(ids, expected))
    start_worker()
    got = receiver.wait_for(6)
    assert [r.headers["webhook-id"] for r in got] == ids  # one call: publish order
    assert [r.body for r in got] == [e.encode() for e in expected]
    for request in got:
        Webhook(integration).verify(request.body, request.headers)


def test_publish_events_accepts_tuples_and_skips_unwanted_types(app, integration):
    with app.app_context():
        settings = get_settings()
        settings.events = ["call_answered"]
        db.session.commit()
        answered = example_envelope("call_answered")["payload"]
        ids = publish_events([("call_initiated", example_envelope("call_initiated")["payload"]),
                              ("call_answered", answered, 1760084505)])
    assert ids[0] is None and ids[1].startswith("msg_")
    assert counts(app) == (1, 1)


def test_a_bad_event_names_its_index_and_field_and_nothing_of_the_batch_is_written(app, integration):
    items = lifecycle()
    assert items[3]["event_type"] == "transcript"
    payload = items[3]["payload"]
    items[3] = dict(items[3], payload=dict(payload, call=dict(payload["call"], id=[1])))
    with app.app_context(), pytest.raises(InvalidEvent) as caught:
        publish_events(items)
    assert caught.value.field == "[3].payload.call.id"
    assert counts(app) == (0, 0)


def test_a_full_batch_of_interleaved_calls_keeps_the_array_order_in_the_log_and_on_the_wire(
        app, integration, receiver, start_worker):
    # 100 events: 20 calls of five, interleaved as an engine handling them at once
    # would send them; every call's events must arrive in array order.
    calls = [call_lifecycle(700 + c, "outbound", 1) for c in range(20)]
    items = [call[i] for i in range(5) for call in calls]
    with app.app_context():
        ids = publish_events(items)
        rows = db.session.execute(select(Event.id, Delivery.id, Delivery.status, Delivery.call_id)
                                  .join(Delivery, Delivery.event_seq == Event.seq).order_by(Event.seq)).all()
    assert [row[0] for row in rows] == ids  # the log's order is the array's
    assert [row[1] for row in rows] == sorted(row[1] for row in rows)  # and the deliveries' too
    assert {row[2] for row in rows} == {"pending"}
    assert [row[3] for row in rows] == [str(700 + n % 20) for n in range(100)]
    start_worker()
    got = receiver.wait_for(100)
    sent = [r.headers["webhook-id"] for r in got]
    assert sorted(sent) == sorted(ids)
    for c in range(20):
        call = ids[c::20]
        assert [i for i in sent if i in call] == call


def test_a_batch_is_held_while_hookline_switched_the_integration_off(app, integration):
    with app.app_context():
        settings = get_settings()
        after_gone(settings, settings.url)
        db.session.commit()
        ids = publish_events(lifecycle())
        statuses = db.session.scalars(select(Delivery.status).order_by(Delivery.id)).all()
    assert all(ids) and statuses == ["held"] * 6
    with app.app_context():
        settings = get_settings()
        settings.enabled, settings.disabled_reason = False, None  # switched off by an admin
        db.session.commit()
        assert publish_events(lifecycle()) == [None] * 6
    assert counts(app) == (6, 6)


#: A database that refuses one row: a trigger on deliveries that fails for one call id.
REFUSE_CALL_999 = {
    "sqlite": ["CREATE TRIGGER refuse_999 BEFORE INSERT ON deliveries WHEN NEW.call_id = '999'"
               " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"],
    "postgresql": ["CREATE OR REPLACE FUNCTION refuse_999() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                   " IF NEW.call_id = '999' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$",
                   "CREATE TRIGGER refuse_999 BEFORE INSERT ON deliveries FOR EACH ROW EXECUTE FUNCTION refuse_999()"],
}


def test_a_database_error_inside_a_batch_raises_sqlalchemys_error_and_writes_nothing_of_it(app, integration):
    items = [call_lifecycle(998, "outbound", 1)[0], call_lifecycle(999, "outbound", 1)[0],
             call_lifecycle(1000, "outbound", 1)[0]]
    with app.app_context():
        for statement in REFUSE_CALL_999[db.engine.dialect.name]:
            db.session.execute(text(statement))
        db.session.commit()
        with pytest.raises(DBAPIError, match="refused by the test"):
            publish_events(items)
        assert counts(app) == (0, 0)
        assert all(publish_events([items[0], items[2]]))  # the session goes on
    assert counts(app) == (2, 2)


@pytest.mark.parametrize("size, words", [(0, "at least one"), (101, "at most 100")])
def test_batch_size_is_bounded(app, integration, size, words):
    item = ("error", example_envelope("error")["payload"])
    with app.app_context(), pytest.raises(InvalidEvent) as caught:
        publish_events([item] * size)
    assert caught.value.field == "events" and words in caught.value.message
    assert counts(app) == (0, 0)


def test_api_array_is_202_with_every_id_in_order(app, client, token, integration):
    items = lifecycle()
    response = post(client, token, items)
    assert response.status_code == 202
    ids = response.json["ids"]
    assert [i for i, _ in bodies(app)] == ids and len(ids) == 6
    assert [json.loads(b)["event_type"] for _, b in bodies(app)] == list(EVENT_TYPES)


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda items: items.__setitem__(3, dict(items[3], payload=dict(
            items[3]["payload"], call=dict(items[3]["payload"]["call"], id=None)))), "[3].payload.call.id"),
        (lambda items: items.__setitem__(1, {"payload": {}}), "[1].event_type"),
        (lambda items: items.__setitem__(2, {"event_type": "error"}), "[2].payload"),
        (lambda items: items.__setitem__(4, dict(items[4], extra=1)), "[4].extra"),
        (lambda items: items.__setitem__(5, dict(items[5], timestamp_utc="soon")), "[5].timestamp_utc"),
        (lambda items: items.__setitem__(0, dict(items[0], event_type="call_exploded")), "[0].event_type"),
        (lambda items: items.__setitem__(2, 7), "[2]"),
    ],
)
def test_api_refused_array_names_index_and_field_and_writes_nothing(app, client, token, integration,
                                                                      change, field):
    items = lifecycle()
    change(items)
    response = post(client, token, items)
    assert response.status_code == 400
    assert response.json["field"] == field
    assert field in response.json["error"]
    assert counts(app) == (0, 0)


@pytest.mark.parametrize("body, words", [([], "empty"), ([{"event_type": "error", "payload": {}}] * 101, "at most 100")])
def test_api_array_size_is_bounded(app, client, token, integration, body, words):
    response = post(client, token, body)
    assert response.status_code == 400 and response.json["field"] == "body"
    assert words in response.json["error"]
    assert counts(app) == (0, 0)


def big_error(chars):
    return {"event_type": "error", "payload": dict(example_envelope("error")["payload"],
                                                   error_message="x" * chars)}


def test_api_array_may_reach_1_mib_one_event_still_256_kib(app, client, token, integration):
    # 100 events of 9,000 characters: ~0.9 MiB, over the one-event cap of 256 KiB.
    body = json.dumps([big_error(9000)] * 100).encode()
    assert 256 * 1024 < len(body) < 1024 * 1024
    response = post(client, token, body)
    assert response.status_code == 202 and len(response.json["ids"]) == 100
    assert counts(app) == (100, 100)
    over = post(client, token, json.dumps([big_error(200 * 1024)] * 6))  # 1.2 MiB
    assert over.status_code == 413 and over.json["error"] == "The request body is larger than 1 MiB for an array of events."
    single = post(client, token, big_error(300 * 1024))
    assert single.status_code == 413 and single.json["error"] == "The request body is larger than 256 KiB."
    assert counts(app) == (100, 100)


def test_api_array_of_unwanted_events_is_200_with_null_ids(app, client, token):
    response = post(client, token, lifecycle()[:2])
    assert response.status_code == 200
    assert response.json["ids"] == [None, None] and response.json["delivered"] is False
    assert counts(app) == (0, 0)
