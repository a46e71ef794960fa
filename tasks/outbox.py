"""Every SQL statement of the delivery path: claim, fenced writes, lease renewal.

A claim is a lease under a token of its own (``deliveries.claimed_by``).
Everything a drain writes afterwards for those rows is fenced by that
token: the rows are first taken back with one ``UPDATE ... WHERE id IN
(...) AND claimed_by = :token RETURNING id``, and only the ids it returns
get their attempt and next state. A drain whose lease ran out and whose
rows another drain claimed meanwhile changes nothing, so the log never goes
backwards (the receiver may have seen a duplicate, with the same
webhook-id). Leases are short and renewed while a batch is in flight
(tasks.leases), so a killed worker's deliveries are claimable again within
one lease.
"""

import functools
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import DateTime, Integer, any_, bindparam, func, insert, or_, select, text, update

from models import db, utcnow
from models.events import CANCELLED, HELD, LET_GO_SQL, OPEN_SQL, Attempt, Delivery, Event, is_open
from models.settings import SETTINGS_ID, WebhookSettings
from tasks import rollups

log = logging.getLogger(__name__)

_deliveries = Delivery.__table__
_events = Event.__table__


def new_token() -> str:
    """A fresh claim token: every claim gets its own."""
    return uuid.uuid4().hex


def _heads(dialect: str):
    """The ids of every call's first open delivery still holding it, of let-go heads, and of open deliveries without a call.

    A skip scan over the partial index on open rows: a recursive CTE steps
    from one call id to the next (each step one index seek), then takes each
    call's lowest open id that still holds its call (another seek, stepping
    over the few let-go heads before it). The cost follows the number of
    calls with open deliveries, not the backlog: 50 calls cost ~100 seeks
    whether 50 or 20,000 deliveries are open. On PostgreSQL these are plain
    index scans, which mark the entries of dead row versions as they pass
    them, so later claims skip them; a GROUP BY was planned as a bitmap scan
    that visits every dead entry on every claim (6.6 ms for 38,000, against
    0.3 ms once marked).

    A retrying head holds its call until ``holds_call_until`` (its first
    failed attempt + 32 scaled minutes, or at once after a 4xx other than
    408/429): past that it is its own head, like a delivery without a call,
    found through a second small partial index (``ix_deliveries_let_go``),
    and the next open delivery of its call is the call's head. Still one
    statement: the claim stays one round trip.

    Written as SQL so that SQLite can be told to read those indexes
    (``INDEXED BY``): on a table never ANALYZEd its planner picks the
    status index and reads every open row instead.
    """
    index = " INDEXED BY ix_deliveries_open_call" if dialect == "sqlite" else ""
    let_go_index = " INDEXED BY ix_deliveries_let_go" if dialect == "sqlite" else ""
    holding = "(d.holds_call_until IS NULL OR d.holds_call_until > :now)"
    return text(
        "WITH RECURSIVE calls(call_id) AS ("
        f" SELECT min(call_id) FROM deliveries{index} WHERE {OPEN_SQL} AND call_id IS NOT NULL"
        " UNION ALL"
        f" SELECT (SELECT min(d.call_id) FROM deliveries AS d{index}"
        f" WHERE {OPEN_SQL} AND d.call_id > calls.call_id)"
        " FROM calls WHERE calls.call_id IS NOT NULL)"
        f" SELECT (SELECT min(d.id) FROM deliveries AS d{index}"
        f" WHERE {OPEN_SQL} AND d.call_id = calls.call_id AND {holding})"
        " FROM calls WHERE calls.call_id IS NOT NULL"
        f" UNION ALL SELECT id FROM deliveries{index} WHERE {OPEN_SQL} AND call_id IS NULL"
        f" UNION ALL SELECT id FROM deliveries{let_go_index} WHERE {LET_GO_SQL} AND holds_call_until <= :now"
    ).bindparams(bindparam("now", type_=DateTime())).columns(id=Integer)


def _id_among(ids, dialect: str):
    """``deliveries.id`` is one of the ids the SELECT ``ids`` returns, looked up by primary key.

    PostgreSQL gets ``id = ANY(ARRAY(...))``: the ids are computed first and
    each is one primary-key probe. Written as ``IN (...)``, once the table
    had statistics (autovacuum's ANALYZE) the planner chose a hash join over
    a sequential scan of every delivery, or a walk of the whole primary key
    from the oldest delivered row: each claim then cost time in proportion
    to the delivery log (a bench run after an ANALYZE stalled). SQLite
    already probes the rowid for each id of an ``IN``.
    """
    column = _deliveries.c.id
    if dialect == "postgresql":
        return column == any_(func.ARRAY(ids.scalar_subquery()))
    return column.in_(ids)


def _claimable(dialect: str):
    """The ids a drain may lease at ``:now``, oldest first: due, unleased call heads.

    A call's head is its first open delivery; only heads are sent, so a
    call's events go out in publish order whatever the number of workers,
    and a head that is leased or waiting for a retry holds its call back
    (for its first 32 scaled minutes of retries, see _heads).
    Open deliveries without a call id are not ordered: each is its own head.
    Heads come from the partial index on open rows (one entry per open
    delivery, never the delivered history), so the cost follows the backlog,
    not the size of the log.
    """
    d = _deliveries.c
    now = bindparam("now")
    return (
        select(d.id)
        .where(
            _id_among(_heads(dialect), dialect),
            d.due_at <= now,
            or_(d.lease_until.is_(None), d.lease_until < now),
        )
        .order_by(d.id)
    )


def _of_event(column):
    """A column of the claimed delivery's event, for the claim's RETURNING (no second SELECT)."""
    return select(column).where(_events.c.seq == _deliveries.c.event_seq).scalar_subquery()


def _settings_version():
    """The settings row's updated_at, for the claim's RETURNING: has the row changed since the last batch?"""
    return select(WebhookSettings.updated_at).where(WebhookSettings.id == SETTINGS_ID).scalar_subquery()


@functools.cache
def _claim_statement(dialect: str):
    """The claim's UPDATE ... RETURNING, built once per dialect (bound: now, limit, lease, token).

    Built once because building and cache-keying this statement cost more
    than running it.
    """
    d = _deliveries.c
    now = bindparam("now")
    candidates = _claimable(dialect).limit(bindparam("limit")).with_for_update(skip_locked=True)
    return (
        update(_deliveries)
        .where(_id_among(candidates, dialect))
        .where(is_open(d.status))
        .where(or_(d.lease_until.is_(None), d.lease_until < now))
        .values(lease_until=bindparam("lease"), claimed_by=bindparam("token"))
        .returning(d.id, d.event_type, d.is_test, d.attempt_count, d.delivered_at,
                   _of_event(_events.c.id), _of_event(_events.c.body), d.due_at, _settings_version(),
                   d.holds_call_until)
    )


@functools.cache
def _due_statement(dialect: str):
    """Is anything due at ``:now``? (the tick's question), built once per dialect."""
    return _claimable(dialect).limit(1)


@dataclass
class Claimed:
    """A leased delivery: what sending and recording it need, read without the ORM."""

    id: int
    event_type: str
    is_test: bool
    attempt_count: int
    delivered_at: datetime | None
    event_id: str = ""
    body: str = ""
    due_at: datetime | None = None
    #: The settings row's updated_at when this was claimed.
    settings_version: datetime | None = None
    #: Until when a retrying head holds its call (None: not failed yet).
    holds_call_until: datetime | None = None


def claim(token: str, limit: int, lease_seconds: float) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries under the claim ``token``, oldest first.

    One UPDATE ... RETURNING, which also returns each event's id and bytes:
    on PostgreSQL the inner SELECT skips rows another drain has locked; on
    SQLite writes are serialised anyway. The outer WHERE repeats the state
    and lease tests so a row claimed or closed meanwhile is skipped. Core
    rows, not ORM objects. The lease holds once the caller commits; every
    later write for these rows names ``token`` (see fence), so a drain whose
    lease was lost and taken over writes nothing.
    """
    now = utcnow()
    rows = db.session.execute(
        _claim_statement(db.engine.dialect.name),
        dict(now=now, limit=limit, lease=now + timedelta(seconds=lease_seconds), token=token),
    ).all()
    return sorted((Claimed(*row) for row in rows), key=lambda delivery: delivery.id)


def has_due_work() -> bool:
    """True when some delivery is due now (the periodic tick asks this)."""
    return db.session.scalar(_due_statement(db.engine.dialect.name), {"now": utcnow()}) is not None


#: Take claimed rows back for writing: only those still held under the token.
_FENCE = (
    update(_deliveries)
    .where(_deliveries.c.id.in_(bindparam("ids", expanding=True)),
           _deliveries.c.claimed_by == bindparam("token"))
    .values(claimed_by=bindparam("token"))
    .returning(_deliveries.c.id)
)

#: One UPDATE by id (and token), run as an executemany: every key of the dicts
#: but ``delivery_id`` and ``token`` becomes a SET column.
_UPDATE_HELD = update(_deliveries).where(
    _deliveries.c.id == bindparam("delivery_id"), _deliveries.c.claimed_by == bindparam("held_by"))

_INSERT_ATTEMPTS = insert(Attempt.__table__)

#: Push a batch's lease forward while it is in flight; fenced like every write.
_RENEW = (
    update(_deliveries)
    .where(_deliveries.c.id.in_(bindparam("ids", expanding=True)),
           _deliveries.c.claimed_by == bindparam("token"),
           _deliveries.c.lease_until.is_not(None))
    .values(lease_until=bindparam("lease"))
)


def fence(token: str, ids) -> set[int]:
    """Of ``ids``, the deliveries still held under ``token`` (locked until the caller commits)."""
    if not ids:
        return set()
    rows = db.session.execute(_FENCE, {"ids": list(ids), "token": token}).scalars()
    return set(rows)


#: The reason that sets a claimed delivery aside as held, not cancelled
#: (the integration was switched off by Hookline itself, see tasks.held).
HELD_REASON = "Held: Hookline switched the integration off before this was sent; re-enable to send it."


def cancelled(reasons: dict[int, str]) -> list[dict]:
    """The state changes that close deliveries the integration no longer wants (or hold them), saying why."""
    return [dict(delivery_id=delivery_id, status=HELD if reason == HELD_REASON else CANCELLED,
                 last_error=reason, due_at=None, lease_until=None)
            for delivery_id, reason in reasons.items()]


def write(token: str, attempts: list[dict], changes: list[dict]) -> set[int]:
    """Write attempts and state changes for the rows still held under ``token``; the caller commits.

    Returns the ids written. Rows whose lease was lost and taken over are
    left alone (and logged): their newer state stands. Core executemany, not
    the ORM: the unit of work cost more than the database for a batch. The
    stats' roll-ups get the batch in the same transaction, summed per minute
    first: one upsert, written last so its row lock is held only until the
    commit (on PostgreSQL concurrent drains queue on the current minute's row).
    """
    ids = {change["delivery_id"] for change in changes}
    held = fence(token, ids)
    if len(held) < len(ids):
        log.warning("lease lost for deliveries %s: another drain holds them; nothing written for them",
                    sorted(ids - held))
    changes = [{**change, "held_by": token} for change in changes if change["delivery_id"] in held]
    attempts = [attempt for attempt in attempts if attempt["delivery_id"] in held]
    if attempts:
        db.session.execute(_INSERT_ATTEMPTS, attempts)
    # executemany needs the same keys in every dict: cancellations set fewer columns.
    groups: dict[frozenset, list[dict]] = {}
    for change in changes:
        groups.setdefault(frozenset(change), []).append(change)
    for group in groups.values():
        db.session.execute(_UPDATE_HELD, group)
    rollups.add_batch(attempts, changes)
    return held


def renew(token: str, ids, lease_seconds: float) -> int:
    """Extend the lease of ``ids`` held under ``token``; return how many still were. Commits."""
    result = db.session.execute(_RENEW, {"ids": list(ids), "token": token,
                                         "lease": utcnow() + timedelta(seconds=lease_seconds)})
    db.session.commit()
    return result.rowcount
