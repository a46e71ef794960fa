"""The engine's ingestion API: ``POST /api/v1/events`` with a bearer token."""

import hmac
import json

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from events import InvalidEvent, bounds
from models import db, utcnow
from models.users import ApiToken
from tasks.publish import MAX_BATCH, publish_event, publish_events

bp = Blueprint("api", __name__, url_prefix="/api/v1")

ALLOWED_FIELDS = {"event_type", "payload", "timestamp_utc"}

#: A JSON array of events may be this large; one event stays within MAX_CONTENT_LENGTH (256 KiB).
MAX_ARRAY_BYTES = 1024 * 1024


def _read_body() -> tuple[bytes | None, str]:
    """The raw body and its cap's name, or (None, cap) when it is over that cap.

    An array of events may be up to MAX_ARRAY_BYTES (1 MiB), one event up to
    MAX_CONTENT_LENGTH (256 KiB); which one is told by the first byte that
    is not whitespace. Reads one byte past the limit from the server's
    stream itself: for a chunked body (no Content-Length) Werkzeug's capped
    stream would stop at the limit and hand back a cut body that then fails
    to parse.
    """
    single = current_app.config["MAX_CONTENT_LENGTH"]
    limit = max(single, MAX_ARRAY_BYTES)
    # No max_content_length here: Werkzeug would refuse a Content-Length over
    # it before the first byte tells an array from one event.
    stream = get_input_stream(request.environ, max_content_length=None)
    raw = stream.read(limit + 1)
    if raw.lstrip(b" \t\r\n")[:1] == b"[":
        return (None if len(raw) > MAX_ARRAY_BYTES else raw), "1 MiB for an array of events"
    return (None if len(raw) > single else raw), "256 KiB"


def _parse_body():
    """The request body as a JSON object or array, or a (response, status) naming what is wrong."""
    raw, cap = _read_body()
    if raw is None:
        return None, _problem(413, f"The request body is larger than {cap}.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, _problem(400, f"The body is not valid UTF-8 (bad byte at position {exc.start}).", "body")
    try:
        data = bounds.loads(text)
    except json.JSONDecodeError as exc:
        return None, _problem(400, f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.", "body")
    except RecursionError:
        return None, _problem(400, f"The body is nested more than {bounds.MAX_DEPTH} levels deep.", "body")
    if not isinstance(data, (dict, list)):
        return None, _problem(400, "The body must be a JSON object: {\"event_type\": ..., \"payload\": {...}}, "
                                   f"or an array of up to {MAX_BATCH} of them.", "body")
    return data, None


def _envelope_problem(data: dict, prefix: str = ""):
    """The API's own fields of one event (unknown or missing ones), or None when they are fine."""
    unknown = sorted(set(data) - ALLOWED_FIELDS)
    if unknown:
        return _problem(400, f"Unknown field: {prefix + unknown[0]!r} (allowed: event_type, payload, timestamp_utc).",
                        prefix + unknown[0])
    for field in ("event_type", "payload"):
        if field not in data:
            return _problem(400, f"{prefix}{field} is required.", prefix + field)
    return None


def _problem(status: int, message: str, field: str | None = None):
    """A JSON error body that names the bad field when there is one."""
    body = {"error": message}
    if field is not None:
        body["field"] = field
    return jsonify(body), status


def _bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if hmac.compare_digest(scheme.lower(), "bearer") and token else None


@bp.errorhandler(RequestEntityTooLarge)
def too_large(exc):
    """Bodies over MAX_CONTENT_LENGTH (256 KiB) that Werkzeug itself refused."""
    return _problem(413, "The request body is larger than 256 KiB.")


@bp.post("/events")
def create_event():
    """Publish one call event (202 with its id, 200 with id null when not wanted), or an array of them."""
    plain = _bearer_token()
    token = ApiToken.find(plain) if plain else None
    if token is None:
        response, status = _problem(401, "A valid API token is required (Authorization: Bearer <token>).")
        response.headers["WWW-Authenticate"] = 'Bearer realm="hookline"'
        return response, status

    data, problem = _parse_body()
    if problem:
        return problem
    if isinstance(data, list):
        return _create_many(token, data)
    if problem := _envelope_problem(data):
        return problem
    # The event joins this transaction (the token was read in it), so the
    # token's use and the event are written by one commit.
    token.last_used_at = utcnow()
    try:
        event_id = publish_event(
            data["event_type"], data["payload"], timestamp_utc=data.get("timestamp_utc")
        )
    except InvalidEvent as exc:
        return _problem(400, str(exc), exc.field)
    db.session.commit()
    if event_id is None:
        return jsonify(id=None, delivered=False,
                       reason="The integration is disabled or not subscribed to this event."), 200
    return jsonify(id=event_id), 202


def _create_many(token, items: list):
    """An array of up to MAX_BATCH events, all written in one transaction or none.

    202 with their ids in order (null where not wanted); 200 when none was
    wanted; 400 naming the first bad event's index and field.
    """
    if not items:
        return _problem(400, "The array is empty: send at least one event.", "body")
    if len(items) > MAX_BATCH:
        return _problem(400, f"The array holds {len(items)} events; at most {MAX_BATCH} go in one request.", "body")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            return _problem(400, f"[{index}]: each event must be a JSON object, not {type(item).__name__}.",
                            f"[{index}]")
        if problem := _envelope_problem(item, f"[{index}]."):
            return problem
    token.last_used_at = utcnow()
    try:
        ids = publish_events(items)
    except InvalidEvent as exc:
        return _problem(400, str(exc), exc.field)
    db.session.commit()
    if not any(ids):
        return jsonify(ids=ids, delivered=False,
                       reason="The integration is disabled or not subscribed to these events."), 200
    return jsonify(ids=ids), 202
