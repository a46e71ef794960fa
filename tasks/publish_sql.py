"""A publish's INSERTs: the new event and its delivery, on either database.

tasks.publish calls insert_new_alone (a publish committed on its own) or
insert_new (in the caller's transaction) through tasks.outbox. The
statements are built once per dialect; tasks.publish_pg and
tasks.publish_sqlite run them on the publishing thread's own connection.
"""

import functools

from sqlalchemy import bindparam, insert, literal_column, or_, select, text

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


@functools.cache
def _insert_both(waiting: bool = False):
    """PostgreSQL: the event (if wanted) and, from its RETURNING, the delivery, in one statement.

    Its parameters are named as its columns (the delivery's with a ``d_``
    prefix). With ``waiting``, the delivery's ``head`` is written as
    _waiting_behind says: only for a statement committed on its own, so
    that the row lock it may take is held for no longer than that (a
    drain's promote waits for it); in a caller's transaction the row goes
    in unknown (NULL), as before.
    """
    deliveries = Delivery.__table__
    new_event = _insert_event("postgresql").cte("new_event")
    values = _values(deliveries, _DELIVERY_COLUMNS, prefix="d_")
    columns = ["event_seq", *_DELIVERY_COLUMNS, "status"]
    selected = [new_event.c.seq, *values, literal_column(NEW_STATUS_SQL)]
    if waiting:
        by_name = dict(zip(_DELIVERY_COLUMNS, values))
        columns.append("head")
        selected.append(_waiting_behind(deliveries, by_name["call_id"], by_name["created_at"]))
    return insert(deliveries).from_select(columns, select(*selected)).returning(deliveries.c.id)


def _both_values(event: dict, delivery: dict) -> dict:
    """``_insert_both``'s parameters: the event's as they are, the delivery's with a ``d_`` prefix."""
    return {**event, **{f"d_{k}": v for k, v in delivery.items()}}


@functools.cache
def _insert_both_sql(dialect) -> str:
    """``_insert_both`` (with the waiting mark: a statement of its own) compiled once to the driver's SQL text."""
    return _insert_both(waiting=True).compile(dialect=dialect).string


@functools.cache
def _sqlite_plans(dialect):
    """SQLite: the event's and the delivery's INSERT as driver plans (the delivery's first parameter is event_seq)."""
    insert_delivery = driver.plan(_INSERT_DELIVERY, dialect)
    assert insert_delivery.converters[0][0] == "event_seq"
    return driver.plan(_insert_event("sqlite"), dialect), insert_delivery


def insert_new_alone(engine, event: dict, delivery: dict, wait_for_flush: bool) -> bool:
    """Write a new event and its delivery in a transaction of their own, on the thread's own connection; True if wanted.

    PostgreSQL: one statement in autocommit, one round trip (no BEGIN and
    COMMIT, no pool checkout and its ping: tasks.publish_pg), which waits
    for the disk flush only if ``wait_for_flush``. SQLite: the
    two INSERTs and a commit (tasks.publish_sqlite). The driver's
    connection directly: SQLAlchemy's execute and the session's commit
    around the same statements cost the engine as much CPU again.
    """
    if engine.dialect.name != "postgresql":
        return publish_sqlite.insert(engine, *_sqlite_plans(engine.dialect), event, delivery)
    return publish_pg.insert(engine, _insert_both_sql(engine.dialect), _both_values(event, delivery), wait_for_flush)


def insert_new(conn, event: dict, delivery: dict) -> bool:
    """INSERT a new event and its delivery on ``conn``, in its transaction (both or neither); True if wanted."""
    if conn.dialect.name == "postgresql":
        return conn.execute(_insert_both(), _both_values(event, delivery)).scalar() is not None
    seq = conn.execute(_insert_event(conn.dialect.name), event).scalar()
    if seq is not None:
        conn.execute(_INSERT_DELIVERY, {**delivery, "event_seq": seq})
    return seq is not None
