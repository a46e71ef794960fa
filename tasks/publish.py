"""Publish: the one entry point for call events from the telephony engine.

In-process (``tasks.publish_event(...)``), enqueued on RQ by dotted path, or
through ``POST /api/v1/events`` — all three end here.
"""

import logging
import time
from json.encoder import encode_basestring

from flask import current_app
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from events import InvalidEvent, call_id_of, validate_event
from models import db, utcnow
from models.events import new_event_id
from tasks import publish_sql
from tasks.jsontext import json_encoder
from tasks.queue import ring_soon

log = logging.getLogger(__name__)

def envelope_body(event_type: str, timestamp_utc: int, payload: dict, is_test: bool) -> str:
    """The seed's envelope as compact JSON: the exact bytes every attempt sends."""
    if type(event_type) is str and type(timestamp_utc) is int and type(is_test) is bool:
        # What a publish passes: the envelope's own four members written as
        # the encoder writes them (a str as encode_basestring, an int as
        # int.__repr__), around the payload's JSON, without the encoder's
        # walk of a dict built for them.
        return (f'{{"event_type":{encode_basestring(event_type)},"timestamp_utc":{timestamp_utc!r},'
                f'"payload":{_ENCODE(payload)},"is_test":{"true" if is_test else "false"}}}')
    return _ENCODE({"event_type": event_type, "timestamp_utc": timestamp_utc, "payload": payload, "is_test": is_test})


# One encoder for every envelope (json.dumps builds one per call with these
# options). allow_nan=False: NaN or Infinity would be invalid JSON under a
# valid signature. No circular check: validate_event refuses a payload
# nested more than 32 levels deep, so a value holding itself never gets here.
_ENCODE = json_encoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def publish_event(event_type, payload, *, timestamp_utc=None, is_test=False) -> str | None:
    """Validate an event and put it in the outbox; return its id (the webhook-id).

    Returns None, writing nothing, when the integration does not want it
    (disabled, no URL, or this type not subscribed). While Hookline has
    switched it off by itself (a 410, a day of failures), a subscribed
    event is stored as held instead, to be sent or discarded when the admin
    re-enables. Raises ``events.InvalidEvent`` naming the bad field. Needs
    an app context (the RQ worker gives every job one).

    The caller's transaction, the same on both databases: if the caller's
    session has a transaction open (it has written or read something and
    not committed yet), the event joins it, a transactional outbox: it is
    sent once the caller commits, and a rollback takes it back with the
    caller's own work. Otherwise the event is committed before this
    returns. Either way a worker is woken once it is committed.

    The engine waits for this, so it is kept to the INSERTs and one commit
    (on PostgreSQL, outside a transaction, one autocommit statement: one
    round trip); the settings check is inside the event's INSERT, and the
    Redis round trip that wakes a worker is left to the Waker thread
    (tasks/queue.py).

    Durability: once committed the event survives the engine's process
    (and the worker's) crashing. It does not wait for the disk flush, on
    either database: SQLite runs with synchronous=NORMAL (models/__init__.py)
    and PostgreSQL commits the one statement with synchronous_commit off,
    so a crash of the database server or the machine can lose the last
    moments of publishes (PostgreSQL: at most 3 x wal_writer_delay, 0.6 s by
    default; nothing is ever half-written). ``HOOKLINE_PUBLISH_SYNC_COMMIT``
    makes PostgreSQL publishes wait for it; a joined event commits as the
    caller's transaction does.
    """
    validate_event(event_type, payload, timestamp_utc)
    if timestamp_utc is None:
        timestamp_utc = int(time.time())
    is_test = bool(is_test)
    call_id = call_id_of(event_type, payload)
    event_id = new_event_id()
    now = utcnow()
    event = dict(id=event_id, event_type=event_type, call_id=call_id, timestamp_utc=timestamp_utc,
                 is_test=is_test, body=envelope_body(event_type, timestamp_utc, payload, is_test),
                 created_at=now)
    app = current_app._get_current_object()
    session = db.session()
    if joined := session.in_transaction():
        # Core statements, not the ORM: they need none of its per-execute
        # work, which cost as much as the INSERTs here.
        written = publish_sql.insert_new(session.connection(), event)
    else:
        written = publish_sql.insert_new_alone(_engine(app), event, app.config["HOOKLINE_PUBLISH_SYNC_COMMIT"])
    if not written:
        log.debug("event %s not wanted by the integration; dropped", event_type)
        return None
    _ring_once_committed(session, joined, app)
    return event_id


#: ``app.extensions`` key: the app's engine, kept by the first publish
#: (``db.engine`` finds it through current_app and a weak dictionary on every
#: use; Flask-SQLAlchemy never replaces an app's engine).
_ENGINE = "hookline_publish_engine"


def _engine(app):
    """The engine of ``app``'s database (``db.engine``), looked up once per app."""
    engine = app.extensions.get(_ENGINE)
    if engine is None:
        engine = app.extensions[_ENGINE] = db.engine
    return engine


#: ``Session.info`` key: the session's transaction holds published events.
_RING_ON_COMMIT = "hookline_ring_on_commit"


def _ring_once_committed(session, joined: bool, app=None) -> None:
    """Wake a worker now, or, for events that joined the caller's transaction, once it commits.

    The Waker thread does the Redis round trip; if it cannot, a worker's
    periodic tick delivers the committed rows, so the engine never sees an
    error. ``app``: the current app, if the caller has it at hand.
    """
    if joined:
        session.info[_RING_ON_COMMIT] = True
    else:
        ring_soon(app)


@sa_event.listens_for(Session, "after_commit")
def _ring_after_commit(session) -> None:
    if session.info.pop(_RING_ON_COMMIT, False):
        ring_soon()


@sa_event.listens_for(Session, "after_rollback")
def _forget_ring(session) -> None:
    session.info.pop(_RING_ON_COMMIT, None)


# -- batches: many events in one transaction

#: The most events one ``publish_events`` call (one API array) may carry.
MAX_BATCH = 100


def _validated_rows(events) -> list[dict]:
    """Each ``(event_type, payload[, timestamp_utc])`` checked, as an event row.

    Raises InvalidEvent whose field starts with the event's index
    (``"[3].payload.call.id"``) at the first one that does not fit.
    """
    now, rows = utcnow(), []
    for index, item in enumerate(events):
        if isinstance(item, dict):
            event_type, payload, timestamp_utc = item.get("event_type"), item.get("payload"), item.get("timestamp_utc")
        else:
            event_type, payload, timestamp_utc = (tuple(item) + (None,))[:3]
        try:
            validate_event(event_type, payload, timestamp_utc)
        except InvalidEvent as exc:
            raise InvalidEvent(f"[{index}].{exc.field}", exc.message) from None
        stamp = int(time.time()) if timestamp_utc is None else timestamp_utc
        call_id = call_id_of(event_type, payload)
        rows.append(dict(id=new_event_id(), event_type=event_type, call_id=call_id, timestamp_utc=stamp,
                         is_test=False, body=envelope_body(event_type, stamp, payload, False), created_at=now))
    return rows


def publish_events(events) -> list[str | None]:
    """Validate up to MAX_BATCH events and put them in the outbox in one transaction.

    ``events`` holds ``(event_type, payload)`` or ``(event_type, payload,
    timestamp_utc)`` tuples, or dicts with those keys. Returns one id per
    event, in order (None where the integration does not want its type).
    Every event is checked before anything is written: if one does not fit,
    InvalidEvent names its index and field (``"[3].payload.call.id"``) and
    nothing of the batch is written. Events of one call keep their order
    here, as in separate ``publish_event`` calls. The caller's transaction
    is joined or not as ``publish_event`` says; joined, a database error
    leaves the rollback to the caller.
    """
    events = list(events)
    if not events:
        raise InvalidEvent("events", "must hold at least one event")
    if len(events) > MAX_BATCH:
        raise InvalidEvent("events", f"holds {len(events)} events; at most {MAX_BATCH} go in one batch")
    rows = _validated_rows(events)
    session = db.session()
    joined = session.in_transaction()
    try:
        conn = session.connection()
        written = publish_sql.insert_batch(conn, rows)
        ids = [event["id"] if event["id"] in written else None for event in rows]
        if not joined:
            session.commit()
    except BaseException:
        if not joined:
            session.rollback()  # nothing of the batch stays
        raise
    if any(ids):
        _ring_once_committed(session, joined)
    return ids
