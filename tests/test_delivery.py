"""Call events reach a real receiver: exact bytes, signatures, retries, workers.

Real parts throughout: a private redis-server, `flask worker` processes, and an
HTTP receiver on 127.0.0.1. Signatures are checked with the public
`standardwebhooks` package, as a receiver would.
"""

import json
import time

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer
from sqlalchemy import func, select
from standardwebhooks import Webhook, WebhookVerificationError

from config import load_config
from events import EVENT_TYPES, example_envelope
from models import db
from models.events import Delivery, Event
from models.settings import get_settings
from tasks import publish_event
from tasks.queue import flush_rings
from tests.support import wait_until
from tests.support.receiver import Receiver, Reply


def publish(app, event_type, payload=None, **kwargs):
    with app.app_context():
        if payload is None:
            payload = example_envelope(event_type)["payload"]
        return publish_event(event_type, payload, **kwargs)


def deliveries(app):
    with app.app_context():
        rows = db.session.scalars(select(Delivery).order_by(Delivery.id)).all()
        for row in rows:
            row.attempts  # load before the session closes
        db.session.expunge_all()
        return rows


def verify(secret, request):
    return Webhook(secret).verify(request.body, request.headers)


def test_each_event_arrives_as_the_seed_shows_it_signed(app, integration, receiver, start_worker):
    start_worker()
    ids = []
    for name in EVENT_TYPES:
        seed = example_envelope(name, is_test=True)
        ids.append(publish(app, name, seed["payload"], timestamp_utc=seed["timestamp_utc"], is_test=True))
    got = receiver.wait_for(6)
    assert [r.headers["webhook-id"] for r in got] == ids
    for name, request in zip(EVENT_TYPES, got):
        seed = example_envelope(name, is_test=True)
        assert request.method == "POST" and request.path == "/hooks/calls"
        # Field for field and byte for byte: compact JSON of the seed's example.
        assert json.loads(request.body) == seed
        assert list(json.loads(request.body)) == ["event_type", "timestamp_utc", "payload", "is_test"]
        assert request.body == json.dumps(seed, separators=(",", ":")).encode()
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"] == "Hookline/0.1.0"
        assert request.headers["x-api-key"] == "sk_test_0123456789"
        assert request.headers["webhook-signature"].startswith("v1,")
        assert verify(integration, request) == seed
        tampered = request.body.replace(b'"is_test":true', b'"is_test":tru3')
        with pytest.raises(WebhookVerificationError):
            Webhook(integration).verify(tampered, request.headers)
    wait_until(lambda: all(d.status == "delivered" for d in deliveries(app)))
    assert [d.attempt_count for d in deliveries(app)] == [1] * 6


def test_custom_headers_cannot_replace_reserved_ones(app, integration, receiver, start_worker):
    with app.app_context():
        # Written straight to the database, past the form's validation: the
        # sender must still refuse to let them replace its own headers.
        settings = get_settings()
        settings.headers = [["X-Api-Key", "k-1234567890"], ["Content-Type", "text/plain"],
                            ["webhook-id", "forged"], ["User-Agent", "evil"], ["X-Bad", "a\r\nX-Injected: 1"]]
        db.session.commit()
    start_worker()
    event_id = publish(app, "call_initiated")
    request = receiver.wait_for(1)[0]
    assert request.headers["x-api-key"] == "k-1234567890"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == event_id
    assert request.headers["user-agent"].startswith("Hookline/")
    assert "x-injected" not in request.headers and "x-bad" not in request.headers


def test_failures_are_retried_with_the_same_webhook_id_and_recorded(app, integration, receiver, start_worker):
    receiver.respond(Reply(500, body=b"boom 1"), Reply(500, body=b"boom 2", delay=0.3))
    start_worker()
    event_id = publish(app, "call_answered")
    got = receiver.wait_for(3, timeout=30)
    assert [r.headers["webhook-id"] for r in got] == [event_id] * 3
    # Each retry is signed afresh (new timestamp) and still verifies.
    for request in got:
        verify(integration, request)
    # Schedule (1, 2) with ±10% jitter: gaps of about 1 s and 2 s.
    assert 0.85 <= got[1].at - got[0].at and 1.75 <= got[2].at - got[1].at
    wait_until(lambda: deliveries(app)[0].status == "delivered")
    [delivery] = deliveries(app)
    assert delivery.attempt_count == 3
    assert [(a.number, a.status_code, a.ok) for a in delivery.attempts] == [(1, 500, False), (2, 500, False), (3, 200, True)]
    assert delivery.attempts[0].response_body == "boom 1"
    assert delivery.attempts[0].error_kind == "http_status"
    assert delivery.attempts[0].request_headers["webhook-id"] == event_id
    assert delivery.attempts[0].request_headers["X-Api-Key"] == "••••6789"  # masked in the log
    # The log's duration is the receiver's time to answer: the second took 0.3 s.
    assert delivery.attempts[1].duration_ms >= 300


@pytest.mark.slow
def test_delivery_fails_after_the_last_scheduled_attempt(app, integration, receiver, start_worker):
    receiver.default = Reply(503)
    start_worker()
    publish(app, "error")
    receiver.wait_for(3, timeout=30)
    wait_until(lambda: deliveries(app)[0].status == "failed")
    time.sleep(1.5)
    assert len(receiver.requests) == 3  # schedule (1, 2): three attempts in all
    assert deliveries(app)[0].last_error


def test_retry_after_is_honoured(app, integration, receiver, start_worker):
    receiver.respond(Reply(429, headers={"Retry-After": "4"}))
    start_worker()
    publish(app, "call_ringing")
    first, second = receiver.wait_for(2, timeout=30)
    assert second.at - first.at >= 3.9  # not the 1 s of the schedule


def test_redirect_is_not_followed(app, integration, receiver, start_worker):
    receiver.respond(Reply(302, headers={"Location": "http://127.0.0.1:9/elsewhere"}))
    start_worker()
    publish(app, "call_initiated")
    receiver.wait_for(2, timeout=30)  # the retry comes back here, not to Location
    [delivery] = deliveries(app)
    first = delivery.attempts[0]
    assert first.status_code == 302 and first.error_kind == "redirect"
    assert "not followed" in first.error_message.lower()
    assert all(r.path == "/hooks/calls" for r in receiver.requests)


def test_receiver_that_never_answers_is_cut_at_the_delivery_timeout(tmp_path, app, integration, receiver,
                                                                   start_worker):
    # Ten seconds unless HOOKLINE_DELIVERY_TIMEOUT says otherwise; two here,
    # so the test does not wait out the default.
    assert load_config(str(tmp_path), {"HOOKLINE_ENV": "testing"})["HOOKLINE_DELIVERY_TIMEOUT"] == 10
    app.config["HOOKLINE_DELIVERY_TIMEOUT"] = 2.0
    receiver.respond(Reply(200, delay=60))
    start_worker()
    publish(app, "transcript")
    receiver.wait_for(2, timeout=30)  # the retry after the cut
    first = deliveries(app)[0].attempts[0]
    assert first.error_kind == "timeout"
    assert 1_900 <= first.duration_ms <= 3_000


def test_engine_enqueues_publish_by_dotted_path(app, integration, receiver, start_worker):
    start_worker()
    payload = example_envelope("call_ended")["payload"]
    # The engine's way, as README shows it: the dotted path, JSON-serialized.
    Queue("hookline", connection=redis.Redis.from_url(app.config["REDIS_URL"]),
          serializer=JSONSerializer).enqueue("tasks.publish_event", "call_ended", payload,
                                             timestamp_utc=1760084597)
    request = receiver.wait_for(1)[0]
    body = json.loads(request.body)
    assert body == {"event_type": "call_ended", "timestamp_utc": 1760084597, "payload": payload, "is_test": False}
    verify(integration, request)


def test_engine_enqueues_a_batch_by_dotted_path(app, integration, receiver, start_worker):
    start_worker()
    names = ("call_initiated", "call_ringing", "call_answered")
    payloads = [example_envelope(name)["payload"] for name in names]
    # JSON has no tuples: each event is a list, or a dict with the same keys.
    job = Queue("hookline", connection=redis.Redis.from_url(app.config["REDIS_URL"]),
                serializer=JSONSerializer).enqueue(
        "tasks.publish_events", [[names[0], payloads[0], 1760084500], [names[1], payloads[1], 1760084501],
                                 {"event_type": names[2], "payload": payloads[2], "timestamp_utc": 1760084502}])
    got = receiver.wait_for(3)
    assert [json.loads(r.body) for r in got] == [
        {"event_type": name, "timestamp_utc": 1760084500 + n, "payload": payload, "is_test": False}
        for n, (name, payload) in enumerate(zip(names, payloads))]
    for request in got:
        verify(integration, request)
    assert [r.headers["webhook-id"] for r in got] == job.latest_result(timeout=10).return_value


def test_unwanted_events_cost_no_row_and_no_job(app, integration, receiver):
    r = redis.Redis.from_url(app.config["REDIS_URL"])
    with app.app_context():
        settings = get_settings()
        settings.events = ["call_ended"]
        db.session.commit()
    assert publish(app, "call_initiated") is None
    with app.app_context():
        settings = get_settings()
        settings.enabled = False
        db.session.commit()
    assert publish(app, "call_ended") is None
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Event)) == 0
    assert Queue("hookline", connection=r).count == 0


def test_one_drain_job_is_queued_for_a_burst(app, integration):
    r = redis.Redis.from_url(app.config["REDIS_URL"])
    for _ in range(20):
        publish(app, "transcript")
    with app.app_context():
        assert flush_rings()
    assert Queue("hookline", connection=r).count == 1
    assert len(deliveries(app)) == 20


def test_flushall_between_publish_and_drain_loses_nothing(app, integration, receiver, start_worker):
    ids = [publish(app, "call_initiated") for _ in range(5)]
    redis.Redis.from_url(app.config["REDIS_URL"]).flushall()  # every queued job is gone
    start_worker()
    got = receiver.wait_for(5)
    assert sorted(r.headers["webhook-id"] for r in got) == sorted(ids)


def test_two_workers_deliver_each_event_once_and_calls_in_order(app, integration, receiver, start_worker):
    start_worker(), start_worker()
    published = []
    for step in range(6):
        for call_id in range(1, 9):
            payload = dict(example_envelope("call_initiated")["payload"], call_id=call_id)
            published.append((call_id, publish(app, "call_initiated", payload)))
    got = receiver.wait_for(len(published))
    time.sleep(0.5)
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == len(set(ids)) == len(published)
    for call_id in range(1, 9):
        expected = [i for c, i in published if c == call_id]
        arrived = [r.headers["webhook-id"] for r in got if json.loads(r.body)["payload"]["call_id"] == call_id]
        assert arrived == expected


def test_disabling_cancels_what_is_pending_visibly(app, integration, receiver):
    publish(app, "call_initiated")
    with app.app_context():
        settings = get_settings()
        settings.enabled = False
        db.session.commit()
        from tasks.drain import drain

        flush_rings()  # the publishes' wake-ups have gone out, as in a real run
        drain()
    [delivery] = deliveries(app)
    assert delivery.status == "cancelled"
    assert "disabled" in delivery.last_error
    assert receiver.requests == []


def test_a_claim_names_the_settings_version_it_was_claimed_under(app, integration):
    # The drain keeps its copy of the settings while this matches the row's
    # updated_at, and reads (and decrypts) the row again when it does not.
    from tasks.outbox import claim

    publish(app, "call_initiated")
    with app.app_context():
        [claimed] = claim("version-token", 32, 15)
        assert claimed.settings_version == get_settings().updated_at
        db.session.rollback()


def test_a_running_drain_sends_with_the_settings_saved_between_its_batches(app, integration, receiver):
    # A listening drain lives for minutes and keeps the settings it read;
    # a save (here: a new URL, header and secret) must reach its next batch.
    from tasks.drain import Drainer
    from tasks.signing import generate_secret

    other = Receiver()
    try:
        publish(app, "call_initiated")
        with app.app_context():
            drainer = Drainer(app.config)
            assert drainer.run_batch(claim_next=False) == 1
            settings = get_settings()
            settings.url = other.url
            settings.headers = [["X-Api-Key", "sk_test_rotated_9999"]]
            settings.secret = new_secret = generate_secret()
            db.session.commit()
        publish(app, "call_ringing")
        with app.app_context():
            assert drainer.run_batch(claim_next=False) == 1
        [first], [second] = receiver.wait_for(1), other.wait_for(1)
        assert json.loads(first.body)["event_type"] == "call_initiated"
        assert json.loads(second.body)["event_type"] == "call_ringing"
        assert second.headers["x-api-key"] == "sk_test_rotated_9999"
        verify(new_secret, second)
    finally:
        other.close()
