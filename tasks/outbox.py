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
one lease. Which deliveries are claimable (each call's head) is kept in
``deliveries.head`` on write; tasks.heads holds those statements.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert, update

from models import db, utcnow
from models.events import CANCELLED, HELD, Attempt, Delivery
from tasks import heads, rollups

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
    (see fence), so a drain whose lease was lost and taken over writes
    nothing.
    """
    now = utcnow()
    params = dict(heads.params(limit, now), lease=now + timedelta(seconds=lease_seconds), token=token)
    rows = db.session.execute(heads.claim_statement(db.engine.dialect.name), params).all()
    # Rows marked as waiting come back too, not leased (head FALSE).
    return sorted((Claimed(*row[1:]) for row in rows if row[0]), key=lambda delivery: delivery.id)


def has_due_work() -> bool:
    """True when some delivery is due now (the periodic tick asks this)."""
    statement = heads.due_statement(db.engine.dialect.name)
    return db.session.execute(statement, heads.params(1, utcnow())).first() is not None


#: Take claimed rows back for writing: only those still held under the token.
_FENCE = (
    update(_deliveries)
    .where(_deliveries.c.id.in_(bindparam("ids", expanding=True)),
           _deliveries.c.claimed_by == bindparam("token"))
    .values(claimed_by=bindparam("token"))
    .returning(_deliveries.c.id, _deliveries.c.call_id)
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


def fence(token: str, ids) -> dict[int, str | None]:
    """Of ``ids``, the deliveries still held under ``token``, with their call ids (locked until the caller commits)."""
    if not ids:
        return {}
    return dict(db.session.execute(_FENCE, {"ids": list(ids), "token": token}).all())


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
                    sorted(ids - held.keys()))
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
    # Closed or let go: the row behind becomes its call's head in this transaction.
    heads.promote(db.session, held.values(), utcnow())
    rollups.add_batch(attempts, changes)
    return set(held)


def renew(token: str, ids, lease_seconds: float) -> int:
    """Extend the lease of ``ids`` held under ``token``; return how many still were. Commits."""
    result = db.session.execute(_RENEW, {"ids": list(ids), "token": token,
                                         "lease": utcnow() + timedelta(seconds=lease_seconds)})
    db.session.commit()
    return result.rowcount
