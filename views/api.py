"""The engine's ingestion API: ``POST /api/v1/events`` with a bearer token."""

import hmac
import json

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from events import InvalidEvent, bounds
from models import db, utcnow
from models.users import ApiToken
from tasks.publish import publish_event

bp = Blueprint("api", __name__, url_prefix="/api/v1")

ALLOWED_FIELDS = {"event_type", "payload", "timestamp_utc"}


def _read_body() -> bytes | None:
    """The raw body, or None when it is over MAX_CONTENT_LENGTH.

    Reads one byte past the limit from the server's stream itself: for a
    chunked body (no Content-Length) Werkzeug's capped stream would stop at
    the limit and hand back a cut body that then fails to parse.
    """
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    stream = get_input_stream(request.environ, max_content_length=limit + 1)
    raw = stream.read(limit + 1)
    return None if len(raw) > limit else raw


def _parse_body():
    """The request body as a JSON object, or a (response, status) naming what is wrong."""
    raw = _read_body()
    if raw is None:
        return None, too_large(None)
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
    if not isinstance(data, dict):
        return None, _problem(400, "The body must be a JSON object: {\"event_type\": ..., \"payload\": {...}}.", "body")
    return data, None


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
    """Bodies over MAX_CONTENT_LENGTH (256 KiB)."""
    return _problem(413, "The request body is larger than 256 KiB.")


@bp.post("/events")
def create_event():
    """Publish one call event; 202 with its id, or 200 with id null when not wanted."""
    plain = _bearer_token()
    token = ApiToken.find(plain) if plain else None
    if token is None:
        response, status = _problem(401, "A valid API token is required (Authorization: Bearer <token>).")
        response.headers["WWW-Authenticate"] = 'Bearer realm="hookline"'
        return response, status

    data, problem = _parse_body()
    if problem:
        return problem
    unknown = sorted(set(data) - ALLOWED_FIELDS)
    if unknown:
        return _problem(400, f"Unknown field: {unknown[0]!r} (allowed: event_type, payload, timestamp_utc).", unknown[0])
    if "event_type" not in data:
        return _problem(400, "event_type is required.", "event_type")
    if "payload" not in data:
        return _problem(400, "payload is required.", "payload")
    # Written by publish's commit, so tracking use costs no extra round trip.
    token.last_used_at = utcnow()
    try:
        event_id = publish_event(
            data["event_type"], data["payload"], timestamp_utc=data.get("timestamp_utc")
        )
    except InvalidEvent as exc:
        return _problem(400, str(exc), exc.field)

    if event_id is None:
        db.session.commit()
        return jsonify(id=None, delivered=False,
                       reason="The integration is disabled or not subscribed to this event."), 200
    return jsonify(id=event_id), 202
