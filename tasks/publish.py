"""Publish: the one entry point for call events from the telephony engine.

In-process (``tasks.publish_event(...)``), enqueued on RQ by dotted path, or
through ``POST /api/v1/events`` — all three end here.
"""

import json
import logging
import time

from events import call_id_of, validate_event
from models import db
from models.events import Delivery, Event, new_event_id
from models.settings import get_settings
from tasks.queue import wake

log = logging.getLogger(__name__)


def envelope_body(event_type: str, timestamp_utc: int, payload: dict, is_test: bool) -> str:
    """The seed's envelope as compact JSON: the exact bytes every attempt sends."""
    envelope = {
        "event_type": event_type,
        "timestamp_utc": timestamp_utc,
        "payload": payload,
        "is_test": is_test,
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)


def publish_event(event_type, payload, *, timestamp_utc=None, is_test=False) -> str | None:
    """Validate an event and put it in the outbox; return its id (the webhook-id).

    Returns None, writing nothing, when the integration does not want it
    (disabled, no URL, or this type not subscribed). Raises
    ``events.InvalidEvent`` naming the bad field. Needs an app context
    (the RQ worker gives every job one).
    """
    validate_event(event_type, payload, timestamp_utc)
    settings = get_settings()
    if not settings.wants(event_type):
        log.debug("event %s not wanted by the integration; dropped", event_type)
        return None

    if timestamp_utc is None:
        timestamp_utc = int(time.time())
    call_id = call_id_of(event_type, payload)
    # Set the id here, not at flush, so reading it after commit costs no query.
    event_id = new_event_id()
    event = Event(
        id=event_id,
        event_type=event_type,
        call_id=call_id,
        timestamp_utc=timestamp_utc,
        is_test=bool(is_test),
        body=envelope_body(event_type, timestamp_utc, payload, bool(is_test)),
    )
    # Event and Delivery in one transaction: both exist or neither does.
    db.session.add(event)
    db.session.add(
        Delivery(event=event, event_type=event_type, call_id=call_id, is_test=bool(is_test))
    )
    db.session.commit()
    try:
        wake()
    except Exception:
        # The row is committed: a worker's periodic tick delivers it even
        # when Redis is down, so the engine must not see an error here.
        log.warning("could not wake a worker for %s; the periodic tick will", event_id, exc_info=True)
    return event_id
