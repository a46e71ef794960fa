"""A publish's INSERTs: the new event and its delivery, on either database.

tasks.publish calls insert_new_alone (a publish committed on its own),
insert_new (in the caller's transaction) or insert_batch (publish_events). The
statements are built once per dialect; tasks.publish_pg and
tasks.publish_sqlite run them on the publishing thread's own connection.
"""

import functools

from sqlalchemy import TextClause, bindparam, insert, literal_column, or_, select, text
from sqlalchemy.exc import DBAPIError

from models.events import Delivery, Event, is_open
from models.settings import NEW_STATUS_SQL, wants_sql
from tasks import driver, publish_pg, publish_sqlite


_EVENT_COLUMNS = ("id", "event_type", "call_id", "timestamp_utc", "is_test", "body", "created_at")
_DELIVERY_COLUMNS = ("event_type", "call_id", "is_test", "due_at", "created_at", "attempt_count")

def _values(table, columns, prefix=""):
    """Typed bind parameters for ``columns`` of ``table`` (named ``prefix`` + column)."""
    return [bindparam(prefix + c, type_=table.c[c].type) for c in columns]


@functools.cache
def _insert_event(dialect: str):
    """INSERT the event if the integration wants its type, RETURNING its seq (no row: not wanted).

    Built once per dialect: building and cache-keying a statement costs as
    much as running it on SQLite.
    """
    events = Event.__table__
    wanted = select(*_values(events, _EVENT_COLUMNS)).where(text(wants_sql(dialect)))
    return insert(events).from_select(_EVENT_COLUMNS, wanted).returning(events.c.seq)


#: SQLite: the delivery of the event just inserted (``:event_seq``), pending
#: or held as the settings row says (in the same transaction as the event's).
_INSERT_DELIVERY = insert(Delivery.__table__).from_select(
    ["event_seq", *_DELIVERY_COLUMNS, "status"],
    select(bindparam("event_seq"), *_values(Delivery.__table__, _DELIVERY_COLUMNS), literal_column(NEW_STATUS_SQL)))


def _waiting_behind(deliveries, call_id, now):
    """FALSE when an older open row of the call holds it and is not leased (locked FOR SHARE), else NULL.

    A publish's ``head`` (see tasks.heads): a row published behind a
    waiting row of its call goes in as FALSE, so no claim has to mark it
    (a write of the whole row and of each of its index entries). The lock
    keeps that older row unleased until the publish commits, so the write
    that later closes it sees the new row when it promotes the call's next
    one. SKIP LOCKED: a row a drain is writing now is passed over (NULL is
    always a safe answer), so a publish never waits for a drain. Newest
    first: the row found is the call's last open one, rarely the head a
    claim is about to lease.
    """
    o = deliveries.alias("o")
    return (select(literal_column("FALSE")).select_from(o)
            .where(is_open(o.c.status), o.c.call_id == call_id, o.c.lease_until.is_(None),
                   or_(o.c.holds_call_until.is_(None), o.c.holds_call_until > now))
            .order_by(o.c.id.desc()).limit(literal_column("1")).with_for_update(read=True, skip_locked=True)
            .scalar_subquery())


#: A new delivery's columns, each the event's value of the same name
#: (``due_at``: due at once, at its ``created_at``), and its first attempt count.
_DELIVERY_FROM_EVENT = (("event_type", "event_type"), ("call_id", "call_id"), ("is_test", "is_test"),
                        ("due_at", "created_at"), ("created_at", "created_at"))


def delivery_of(event: dict) -> dict:
    """The new delivery of ``event`` (a row of ``_EVENT_COLUMNS``), as _DELIVERY_FROM_EVENT says: no attempt yet."""
    return {**{column: event[name] for column, name in _DELIVERY_FROM_EVENT}, "attempt_count": 0}


@functools.cache
def _insert_both(waiting: bool = False):
    """PostgreSQL: the event (if wanted) and, from its RETURNING, the delivery, in one statement.

    Its parameters are the event's, named as its columns: the delivery's
    values are the same parameters (as delivery_of says), so that each is
    sent and converted once. With ``waiting``, the delivery's ``head`` is
    written as _waiting_behind says: only for a statement committed on its
    own, so that the row lock it may take is held for no longer than that
    (a drain's promote waits for it); in a caller's transaction the row
    goes in unknown (NULL), as before. No RETURNING: the command's row
    count says whether the event was wanted, and a returned row costs the
    server and the client a row description and a data row per publish.
    """
    deliveries = Delivery.__table__
    new_event = _insert_event("postgresql").cte("new_event")
    by_name = dict(zip(_EVENT_COLUMNS, _values(Event.__table__, _EVENT_COLUMNS)))
    columns = ["event_seq", *(column for column, _ in _DELIVERY_FROM_EVENT), "attempt_count", "status"]
    selected = [new_event.c.seq, *(by_name[name] for _, name in _DELIVERY_FROM_EVENT),
                literal_column("0"), literal_column(NEW_STATUS_SQL)]
    if waiting:
        columns.append("head")
        selected.append(_waiting_behind(deliveries, by_name["call_id"], by_name["created_at"]))
    # preserve_rowcount: SQLAlchemy keeps an INSERT's count only when asked (insert_new reads it).
    return insert(deliveries).from_select(columns, select(*selected)).execution_options(preserve_rowcount=True)


@functools.cache
def _insert_both_sql(dialect) -> str:
    """``_insert_both`` (with the waiting mark: a statement of its own) compiled once to the driver's SQL text."""
    return _insert_both(waiting=True).compile(dialect=dialect).string


@functools.cache
def _insert_batch(dialect) -> TextClause:
    """PostgreSQL: a batch's events (those wanted) and their deliveries in one statement; RETURNING the ids written.

    Its parameters are one array per event column, the events in list
    order; they go in in that order (``ORDER BY`` their position, then the
    deliveries by the events' seq), so a call's events keep their order.
    One statement, not one per event: each statement costs a round trip
    and an executor start-up, which made a batch cost as much as separate
    publishes. The deliveries' ``head`` goes in unknown (NULL), as
    insert_new's do.
    """
    events = Event.__table__
    arrays = ", ".join(f"CAST(:{c} AS {events.c[c].type.compile(dialect=dialect)}[])" for c in _EVENT_COLUMNS)
    columns = ", ".join(_EVENT_COLUMNS)
    delivery_columns = ", ".join(["event_seq", *(c for c, _ in _DELIVERY_FROM_EVENT), "attempt_count", "status"])
    from_event = ", ".join(["seq", *(name for _, name in _DELIVERY_FROM_EVENT), "0", NEW_STATUS_SQL])
    return text(
        f"WITH batch AS (SELECT * FROM unnest({arrays}) WITH ORDINALITY AS batch({columns}, position)),"
        f" new_event AS (INSERT INTO events ({columns}) SELECT {columns} FROM batch"
        f" WHERE {wants_sql('postgresql', 'batch.event_type')} ORDER BY position"
        f" RETURNING seq, id, {', '.join(dict.fromkeys(name for _, name in _DELIVERY_FROM_EVENT))}),"
        f" new_delivery AS (INSERT INTO deliveries ({delivery_columns}) SELECT {from_event} FROM new_event ORDER BY seq)"
        " SELECT id FROM new_event")


def insert_batch(conn, rows: list[dict]) -> set[str]:
    """INSERT events (rows of ``_EVENT_COLUMNS``) and their deliveries on ``conn``; the ids of those wanted.

    In ``conn``'s transaction, in list order (a call's events keep theirs).

    PostgreSQL: one statement for the whole batch (_insert_batch). SQLite,
    which has no round trip to save: the two INSERTs of each event on the
    driver's cursor, their parameters built before the first takes the
    write lock (as publish_sqlite's).
    """
    if conn.dialect.name == "postgresql":
        arrays = {column: [row[column] for row in rows] for column in _EVENT_COLUMNS}
        return set(conn.execute(_insert_batch(conn.dialect), arrays).scalars())
    insert_event, insert_delivery = _sqlite_plans(conn.dialect)
    values = [(row["id"], insert_event.parameters(row),
               insert_delivery.parameters({**delivery_of(row), "event_seq": None})) for row in rows]
    dbapi, written, statement = conn.dialect.dbapi, set(), None
    cursor = conn.connection.driver_connection.cursor()
    try:
        for event_id, event_values, delivery_values in values:
            statement = insert_event.sql
            seq = cursor.execute(statement, event_values).fetchone()
            if seq is not None:
                statement, delivery_values[0] = insert_delivery.sql, seq[0]
                cursor.execute(statement, delivery_values)
                written.add(event_id)
    except dbapi.Error as exc:  # the SQLAlchemy error the rest of the app would raise
        raise DBAPIError.instance(statement, None, exc, dbapi.Error) from exc
    finally:
        cursor.close()
    return written


@functools.cache
def _sqlite_plans(dialect):
    """SQLite: the event's and the delivery's INSERT as driver plans (the delivery's first parameter is event_seq)."""
    insert_delivery = driver.plan(_INSERT_DELIVERY, dialect)
    assert insert_delivery.converters[0][0] == "event_seq"
    return driver.plan(_insert_event("sqlite"), dialect), insert_delivery


def insert_new_alone(engine, event: dict, wait_for_flush: bool) -> bool:
    """Write a new event and its delivery (delivery_of) in a transaction of their own, on the thread's own connection; True if wanted.

    PostgreSQL: one statement in autocommit, one round trip (no BEGIN and
    COMMIT, no pool checkout and its ping: tasks.publish_pg), which waits
    for the disk flush only if ``wait_for_flush``. SQLite: the
    two INSERTs and a commit (tasks.publish_sqlite). The driver's
    connection directly: SQLAlchemy's execute and the session's commit
    around the same statements cost the engine as much CPU again.
    """
    if engine.dialect.name != "postgresql":
        return publish_sqlite.insert(engine, *_sqlite_plans(engine.dialect), event, delivery_of(event))
    return publish_pg.insert(engine, _insert_both_sql(engine.dialect), event, wait_for_flush)


def insert_new(conn, event: dict) -> bool:
    """INSERT a new event and its delivery (delivery_of) on ``conn``, in its transaction (both or neither); True if wanted."""
    if conn.dialect.name == "postgresql":
        return conn.execute(_insert_both(), event).rowcount > 0
    seq = conn.execute(_insert_event(conn.dialect.name), event).scalar()
    if seq is not None:
        conn.execute(_INSERT_DELIVERY, {**delivery_of(event), "event_seq": seq})
    return seq is not None
