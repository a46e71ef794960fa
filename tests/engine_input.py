"""The engine's three ways in, driven the same way by tests: the API, the Python call, the RQ job.

Each returns ("accepted", event id or None) or ("refused", field, message), so a
test can ask all three the same question and compare their answers.
"""

import json

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from events import InvalidEvent
from tasks import publish_event
from tasks.worker import HooklineWorker

#: Its own queue, so running the engine's job does not also run drain jobs.
ENGINE_QUEUE = "hookline-engine-test"


def via_api(client, token, body: bytes):
    """POST raw JSON bytes; a 500 fails the caller's assertion, not this helper."""
    response = client.post("/api/v1/events", data=body, content_type="application/json",
                           headers={"Authorization": f"Bearer {token}"})
    if response.status_code in (200, 202):
        return ("accepted", response.json["id"])
    assert response.status_code == 400, (response.status_code, response.text)
    return ("refused", response.json["field"], response.json["error"])


def via_python(app, event_type, payload, **kwargs):
    """``tasks.publish_event`` in-process, as an engine in the same process calls it."""
    with app.app_context():
        try:
            return ("accepted", publish_event(event_type, payload, **kwargs))
        except InvalidEvent as exc:
            return ("refused", exc.field, str(exc))


def via_rq(app, event_type, payload, **kwargs):
    """Enqueue ``tasks.publish_event`` with the JSON serializer and run it in a real worker."""
    connection = redis.Redis.from_url(app.config["REDIS_URL"])
    queue = Queue(ENGINE_QUEUE, connection=connection, serializer=JSONSerializer)
    job = queue.enqueue("tasks.publish_event", event_type, payload, **kwargs)
    worker = HooklineWorker([queue], connection=connection, flask_app=app, serializer=JSONSerializer)
    # The worker's own steps for one job, without work()'s loop, whose pub/sub
    # thread takes up to a minute to stop at the end of a burst.
    job = queue.dequeue_any([queue], None, connection=connection, serializer=JSONSerializer)[0]
    worker.register_birth()
    try:
        worker.execute_job(job, queue)
    finally:
        worker.register_death()
    job.refresh()
    if job.is_finished:
        return ("accepted", job.return_value())
    assert job.is_failed, job.get_status()
    # The traceback ends with "events.catalog.InvalidEvent: <field>: <message>".
    trace = job.latest_result().exc_string
    # Taken from the line that starts with the exception's name: a payload key
    # may itself be called "InvalidEvent" (hypothesis found one).
    prefix = "events.catalog.InvalidEvent: "
    start = trace.rfind("\n" + prefix)
    assert start >= 0, trace
    message = trace[start + 1 + len(prefix):].removesuffix("\n")
    # The field is the message's start; a key holding ": " would blur it, so
    # compare whole messages when that matters.
    return ("refused", message.partition(": ")[0], message)


def api_body(event_type, payload, timestamp_utc=None) -> bytes:
    """The API's body for an event, written as Python's json writes it (NaN included)."""
    body = {"event_type": event_type, "payload": payload}
    if timestamp_utc is not None:
        body["timestamp_utc"] = timestamp_utc
    return json.dumps(body, ensure_ascii=True).encode()
