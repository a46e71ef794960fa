"""Publish: the one entry point for call events from the telephony engine.

In-process (``tasks.publish_event(...)``), enqueued on RQ by dotted path, or
through ``POST /api/v1/events`` — all three end here.
"""

import functools
import json
import logging
import time

from flask import current_app
from sqlalchemy import bindparam, insert, literal_column, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from events import InvalidEvent, call_id_of, validate_event
from models import db, utcnow
from models.events import Delivery, Event, new_event_id
from models.settings import NEW_STATUS_SQL, wants_sql
from tasks.queue import ring_soon

log = logging.getLogger(__name__)

_EVENT_COLUMNS = ("id", "event_type", "call_id", "timestamp_utc", "is_test", "body", "created_at")
_DELIVERY_COLUMNS = ("event_type", "call_id", "is_test", "due_at", "created_at", "attempt_count")

#: PostgreSQL, in the publish statement's WHERE: the statement is its own
#: transaction, and this makes that transaction commit without waiting for
#: the disk flush (synchronous_commit = off for it alone; see publish_event).
_NO_FLUSH_WAIT_SQL = "set_config('synchronous_commit', 'off', true) = 'off'"


def _values(table, columns, prefix=""):
    """Typed bind parameters for ``columns`` of ``table`` (named ``prefix`` + column)."""
    return [bindparam(prefix + c, type_=table.c[c].type) for c in columns]


@functools.cache
def _insert_event(dialect: str, wait_for_flush: bool = True):
    """INSERT the event if the integration wants its type, RETURNING its seq (no row: not wanted).

    Built once per dialect: building and cache-keying a statement costs as
    much as running it on SQLite.
    """
    events = Event.__table__
    wanted = select(*_values(events, _EVENT_COLUMNS)).where(text(wants_sql(dialect)))
    if not wait_for_flush:
        wanted = wanted.where(text(_NO_FLUSH_WAIT_SQL))
    return insert(events).from_select(_EVENT_COLUMNS, wanted).returning(events.c.seq)


#: SQLite: the delivery of the event just inserted (``:event_seq``), pending
#: or held as the settings row says (in the same transaction as the event's).
_INSERT_DELIVERY = insert(Delivery.__table__).from_select(
    ["event_seq", *_DELIVERY_COLUMNS, "status"],
    select(bindparam("event_seq"), *_values(Delivery.__table__, _DELIVERY_COLUMNS), literal_column(NEW_STATUS_SQL)))


@functools.cache
def _insert_both(wait_for_flush: bool):
    """PostgreSQL: the event (if wanted) and, from its RETURNING, the delivery, in one statement.

    Its parameters are named as its columns (the delivery's with a ``d_`` prefix).
    """
    deliveries = Delivery.__table__
    new_event = _insert_event("postgresql", wait_for_flush).cte("new_event")
    return insert(deliveries).from_select(
        ["event_seq", *_DELIVERY_COLUMNS, "status"],
        select(new_event.c.seq, *_values(deliveries, _DELIVERY_COLUMNS, prefix="d_"), literal_column(NEW_STATUS_SQL)),
    ).returning(deliveries.c.id)


@functools.cache
def _insert_both_sql(dialect, wait_for_flush: bool) -> str:
    """``_insert_both`` compiled once to the driver's SQL text."""
    return _insert_both(wait_for_flush).compile(dialect=dialect).string


@functools.cache
def _sqlite_plan(dialect):
    """SQLite: the two INSERTs compiled once to sqlite3's SQL, with how to turn a row into its parameters."""
    def plan(statement):
        compiled = statement.compile(dialect=dialect)
        converters = [(name, compiled.binds[name].type.bind_processor(dialect)) for name in compiled.positiontup]
        return compiled.string, converters
    return plan(_insert_event("sqlite")), plan(_INSERT_DELIVERY)


def _parameters(converters, values: dict) -> tuple:
    """``values`` in the compiled statement's order, each stored as SQLAlchemy would store it."""
    return tuple(convert(values[name]) if convert else values[name] for name, convert in converters)


def _write_outside(engine, event: dict, delivery: dict, wait_for_flush: bool) -> bool:
    """Write the event and its delivery in a transaction of their own, on a pooled driver connection; True if wanted.

    PostgreSQL: one statement in autocommit (one round trip instead of
    BEGIN, INSERT, COMMIT). SQLite: the two INSERTs and a commit. The
    driver's connection directly: SQLAlchemy's execute and the session's
    commit around the same statements cost the engine as much CPU again.
    """
    dbapi = engine.dialect.dbapi
    try:
        raw = engine.raw_connection()
    except dbapi.Error as exc:  # the server is down: the same SQLAlchemy error as elsewhere
        raise DBAPIError.instance(None, None, exc, dbapi.Error) from exc
    statement = None
    try:
        connection = raw.driver_connection
        cursor = connection.cursor()
        if engine.dialect.name == "postgresql":
            statement = _insert_both_sql(engine.dialect, wait_for_flush)
            connection.autocommit = True
            cursor.execute(statement, {**event, **{f"d_{k}": v for k, v in delivery.items()}})
            written = cursor.fetchone() is not None
            connection.autocommit = False
        else:
            (event_sql, event_converters), (delivery_sql, delivery_converters) = _sqlite_plan(engine.dialect)
            statement = event_sql
            row = cursor.execute(event_sql, _parameters(event_converters, event)).fetchone()
            if written := row is not None:
                statement = delivery_sql
                cursor.execute(delivery_sql, _parameters(delivery_converters, {**delivery, "event_seq": row[0]}))
            connection.commit()
        cursor.close()
    except BaseException as exc:
        raw.invalidate()  # in an unknown state: the pool must not hand it out again
        if isinstance(exc, dbapi.Error):  # the SQLAlchemy error the rest of the app would raise
            raise DBAPIError.instance(statement, None, exc, dbapi.Error) from exc
        raise
    finally:
        raw.close()
    return written


def envelope_body(event_type: str, timestamp_utc: int, payload: dict, is_test: bool) -> str:
    """The seed's envelope as compact JSON: the exact bytes every attempt sends."""
    envelope = {
        "event_type": event_type,
        "timestamp_utc": timestamp_utc,
        "payload": payload,
        "is_test": is_test,
    }
    # allow_nan=False: NaN or Infinity would be invalid JSON under a valid signature.
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


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
    delivery = dict(event_type=event_type, call_id=call_id, is_test=is_test,
                    due_at=now, created_at=now, attempt_count=0)
    session = db.session()
    if joined := session.in_transaction():
        # Core statements, not the ORM: they need none of its per-execute
        # work, which cost as much as the INSERTs here.
        written = _insert_rows(session.connection(), event, delivery) is not None
    else:
        written = _write_outside(db.engine, event, delivery, current_app.config["HOOKLINE_PUBLISH_SYNC_COMMIT"])
    if not written:
        log.debug("event %s not wanted by the integration; dropped", event_type)
        return None
    _ring_once_committed(session, joined)
    return event_id


def _insert_rows(conn, event: dict, delivery: dict) -> int | None:
    """INSERT the event and its delivery on ``conn`` (both or neither); the event's seq, None if not wanted."""
    if conn.dialect.name == "postgresql":
        values = {**event, **{f"d_{k}": v for k, v in delivery.items()}}
        return conn.execute(_insert_both(True), values).scalar()
    seq = conn.execute(_insert_event(conn.dialect.name), event).scalar()
    if seq is not None:
        conn.execute(_INSERT_DELIVERY, {**delivery, "event_seq": seq})
    return seq


#: ``Session.info`` key: the session's transaction holds published events.
_RING_ON_COMMIT = "hookline_ring_on_commit"


def _ring_once_committed(session, joined: bool) -> None:
    """Wake a worker now, or, for events that joined the caller's transaction, once it commits.

    The Waker thread does the Redis round trip; if it cannot, a worker's
    periodic tick delivers the committed rows, so the engine never sees an error.
    """
    if joined:
        session.info[_RING_ON_COMMIT] = True
    else:
        ring_soon()


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


def _validated_rows(events) -> list[tuple[dict, dict]]:
    """Each ``(event_type, payload[, timestamp_utc])`` checked, as (event, delivery) rows.

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
        rows.append((dict(id=new_event_id(), event_type=event_type, call_id=call_id, timestamp_utc=stamp,
                          is_test=False, body=envelope_body(event_type, stamp, payload, False),
                          created_at=now),
                     dict(event_type=event_type, call_id=call_id, is_test=False,
                          due_at=now, created_at=now, attempt_count=0)))
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
        ids = [event["id"] if _insert_rows(conn, event, delivery) is not None else None
               for event, delivery in rows]
        if not joined:
            session.commit()
    except BaseException:
        if not joined:
            session.rollback()  # nothing of the batch stays
        raise
    if any(ids):
        _ring_once_committed(session, joined)
    return ids
