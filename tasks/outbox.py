"""The delivery path's SQL: the claim, fenced writes, lease renewal (new events' INSERTs: tasks.publish_sql).

A claim is a lease under a token of its own (``deliveries.claimed_by``).
Everything a drain writes afterwards for those rows is fenced by that
token: each row's next state is written by ``UPDATE ... WHERE id = :id
AND claimed_by = :token``, and only the rows it changed get their attempt.
A drain whose lease ran out and whose
rows another drain claimed meanwhile changes nothing, so the log never goes
backwards (the receiver may have seen a duplicate, with the same
webhook-id). Leases are short and renewed while a batch is in flight
(tasks.leases), so a killed worker's deliveries are claimable again within
one lease. Which deliveries are claimable (each call's head) is kept in
``deliveries.head`` on write; tasks.heads holds those statements. Every
branch on the database (SQLite or PostgreSQL) of the delivery path is in
these two modules, tasks.driver, tasks.statements, tasks.publish_sql, tasks.publish_pg and,
for SQLite's write lock, tasks.sqlite_lock and tasks.publish_sqlite.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from models import db, utcnow
from models.events import CANCELLED, HELD, Attempt, Delivery
from models.settings import HELD_REASON
from tasks import driver, heads, rollups, sqlite_lock, statements

log = logging.getLogger(__name__)

_deliveries = Delivery.__table__


def new_token() -> str:
    """A fresh claim token: every claim gets its own."""
    return uuid.uuid4().hex


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
    """Lease up to ``limit`` due call heads under the claim ``token``, earliest due first.

    One UPDATE ... RETURNING (tasks.heads.claim_statement), which also
    returns each event's id and bytes: on PostgreSQL its reads skip rows
    another drain has locked; on SQLite writes are serialised anyway. Its
    WHERE repeats the state and lease tests so a row claimed or closed
    meanwhile is skipped. Core rows, not ORM objects. The lease holds once
    the caller commits; every later write for these rows names ``token``
    (see write), so a drain whose lease was lost and taken over writes
    nothing.
    """
    sqlite_lock.begin_writing(db.session)  # a no-op when claimed inside a batch's write
    now = utcnow()
    params = dict(heads.params(limit, now, db.session.info.pop(_PROMOTE, ())),  # see _write
                  lease=now + timedelta(seconds=lease_seconds), token=token)
    with statements.by_key(db.session):
        rows = statements.run(db.session, heads.claim_statement(db.engine.dialect.name), params, heads.RETURNED)
    # Rows marked as waiting come back too, not leased (head FALSE).
    return sorted((Claimed(*row[1:]) for row in rows if row[0]), key=lambda delivery: delivery.id)


def has_due_work() -> bool:
    """True when some delivery is due now (the periodic tick asks this)."""
    statement = heads.due_statement(db.engine.dialect.name)
    with statements.by_key(db.session):  # the claim's reads: planned as the claim is
        return db.session.execute(statement, heads.params(1, utcnow())).first() is not None


#: One UPDATE by id (and token), run as an executemany: every key of the dicts
#: but ``delivery_id`` and ``token`` becomes a SET column.
_UPDATE_HELD = update(_deliveries).where(
    _deliveries.c.id == bindparam("delivery_id"), _deliveries.c.claimed_by == bindparam("held_by"))

_INSERT_ATTEMPTS = insert(Attempt.__table__).inline()  # no RETURNING of ids: nothing reads them

_STILL_HELD = select(_deliveries.c.id).where(
    _deliveries.c.id.in_(bindparam("ids", expanding=True)), _deliveries.c.claimed_by == bindparam("token"))

#: Push a batch's lease forward while it is in flight; fenced like every write.
_RENEW = (
    update(_deliveries)
    .where(_deliveries.c.id.in_(bindparam("ids", expanding=True)),
           _deliveries.c.claimed_by == bindparam("token"),
           _deliveries.c.lease_until.is_not(None))
    .values(lease_until=bindparam("lease"))
)


def cancelled(reasons: dict[int, str]) -> list[dict]:
    """The state changes that close deliveries the integration no longer wants (or hold them), saying why."""
    return [dict(delivery_id=delivery_id, status=HELD if reason == HELD_REASON else CANCELLED,
                 last_error=reason, due_at=None, lease_until=None)
            for delivery_id, reason in reasons.items()]


def write(token: str, attempts: list[dict], changes: list[dict]) -> set[int]:
    """Write attempts and state changes for the rows still held under ``token``; the caller commits.

    Returns the ids written. Rows whose lease was lost and taken over are
    left alone (and logged): their newer state stands. The state UPDATE is
    the fence: it names the token, and only when it wrote fewer rows than
    it was given are the rows still held read back, so that the attempts
    go in for those alone. Core executemany, not the ORM: the unit of work
    cost more than the database for a batch. The stats' roll-ups get the
    batch in the same transaction, summed per minute first: one upsert,
    written last so its row lock is held only until the commit (on
    PostgreSQL concurrent drains queue on the current minute's row).
    """
    if not changes:
        return set()  # nothing changed, so no attempt goes in either
    ids = {change["delivery_id"] for change in changes}
    # Only rows whose state this write changes get an attempt (none without a change).
    attempts = [attempt for attempt in attempts if attempt["delivery_id"] in ids]
    # executemany needs the same keys in every dict: cancellations set fewer columns.
    groups: dict[frozenset, list[dict]] = {}
    for change in changes:
        change = {**change, "held_by": token}
        groups.setdefault(frozenset(change), []).append(change)
    # Every row's parameters and the roll-ups' sums are built before the
    # transaction begins: on SQLite it holds the one write lock, which the
    # engine's publishes wait for, until the commit.
    dialect = db.engine.dialect
    batch = _Batch([(group, driver.parameters_for(dialect, _UPDATE_HELD, group)) for group in groups.values()],
                   attempts, driver.parameters_for(dialect, _INSERT_ATTEMPTS, attempts),
                   rollups.batch_tally(attempts, changes))
    sqlite_lock.begin_writing(db.session)  # the write transaction's first statement
    with statements.by_key(db.session):
        return _write(token, ids, changes, batch)


@dataclass
class _Batch:
    """write's rows with their driver parameters (None: built when run) and its roll-up sums."""

    updates: list[tuple[list[dict], list | None]]
    attempts: list[dict]
    attempt_parameters: list | None
    tallies: dict


def _write(token: str, ids: set[int], changes: list[dict], batch: _Batch) -> set[int]:
    """write's statements (see write)."""
    written = sum(driver.executemany(db.session, _UPDATE_HELD, group, parameters)
                  for group, parameters in batch.updates)
    attempts, parameters, tallies = batch.attempts, batch.attempt_parameters, batch.tallies
    if written < len(ids):
        held = _still_held(token, ids)
        log.warning("lease lost for deliveries %s: another drain holds them; nothing written for them",
                    sorted(ids - held))
        changes = [change for change in changes if change["delivery_id"] in held]
        attempts, parameters = [attempt for attempt in attempts if attempt["delivery_id"] in held], None
        tallies = rollups.batch_tally(attempts, changes)
    else:
        held = ids
    if attempts:
        driver.executemany(db.session, _INSERT_ATTEMPTS, attempts, parameters)
    # Closed or let go: the row behind becomes its call's head in this
    # transaction. On PostgreSQL by the claim that follows in it (one write
    # of that row, not two, when the claim leases it), or before the commit.
    if db.engine.dialect.name == "postgresql":
        db.session.info.setdefault(_PROMOTE, set()).update(held)
    else:
        heads.promote(db.session, held, utcnow())
    rollups.add(tallies)
    return set(held)


#: ``Session.info`` key: ids written in this transaction whose calls' next rows are not promoted yet.
_PROMOTE = "hookline_promote"


@sa_event.listens_for(Session, "before_commit")
def _promote_before_commit(session) -> None:
    """Promote what a write left to a claim that did not come (see _write)."""
    ids = session.info.pop(_PROMOTE, None)
    if ids:
        with statements.by_key(session):
            heads.promote(session, ids, utcnow())


@sa_event.listens_for(Session, "after_transaction_end")
def _forget_promote(session, transaction) -> None:
    """A rolled back write promotes nothing."""
    if transaction.parent is None:
        session.info.pop(_PROMOTE, None)


def _still_held(token: str, ids) -> set[int]:
    """Of ``ids``, those still claimed under ``token`` (a lost lease taken over names another)."""
    rows = db.session.execute(_STILL_HELD, {"ids": sorted(ids), "token": token}).scalars()
    return set(rows)


def renew(token: str, ids, lease_seconds: float) -> int:
    """Extend the lease of ``ids`` held under ``token``; return how many still were. Commits."""
    sqlite_lock.begin_writing(db.session)
    with statements.by_key(db.session):
        result = db.session.execute(_RENEW, {"ids": list(ids), "token": token,
                                             "lease": utcnow() + timedelta(seconds=lease_seconds)})
    db.session.commit()
    return result.rowcount
