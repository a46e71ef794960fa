"""The delivery log's read queries: its filters, keyset pages and per-call waiting notes.

Pages go by keyset (``?before=<id>`` / ``?after=<id>``), never OFFSET, so
every page costs one short index range whatever the table's size. An open
delivery behind an earlier open delivery of the same call is shown as
"waiting for earlier event" (the drain only claims a call's first open
delivery, so that a call's events arrive in publish order); one that went on
while an earlier one kept retrying on its own schedule is "sent ahead".
"""

from dataclasses import dataclass
from datetime import datetime

from flask import current_app, request
from sqlalchemy import func, literal_column, or_, select
from sqlalchemy.orm import raiseload

from events import EVENT_TYPES
from models import db, utcnow
from models.events import OPEN_STATES, STATES, Attempt, Delivery, Event, has_status, is_open
from models.settings import get_settings
from tasks.retry import max_attempts, schedule_for

PAGE_SIZE = 50
KINDS = {"real": False, "test": True}
#: Event ids (the webhook-id header) look like ``msg_…``; call ids never do.
WEBHOOK_ID_PREFIX = "msg_"


@dataclass
class LogFilter:
    """The log's filters as given in the query string (unknown values are ignored)."""

    status: str = ""
    event_type: str = ""
    call_id: str = ""
    kind: str = ""  # "", "real" or "test"

    @classmethod
    def from_args(cls, args) -> "LogFilter":
        """Read the filters from ``request.args``."""
        status = args.get("status", "")
        event_type = args.get("event_type", "")
        kind = args.get("kind", "")
        return cls(
            status=status if status in STATES else "",
            event_type=event_type if event_type in EVENT_TYPES else "",
            call_id=args.get("call_id", "").strip()[:100],
            kind=kind if kind in KINDS else "",
        )

    def args(self) -> dict:
        """The non-empty filters, for building links that keep them."""
        return {k: v for k, v in vars(self).items() if v}

    def conditions(self) -> list:
        """WHERE clauses, read newest first by an index where the value is rare.

        Rare values (any status but delivered, the error type, test
        deliveries) have partial indexes ending in id; common ones
        (delivered, real, the usual types) walk the primary key newest first
        and find a page within a few thousand rows. The values are written as
        literals (they are checked against our lists in ``from_args``) so
        that both databases match the partial indexes.
        """
        where = []
        if self.status:
            where.append(has_status(Delivery.status, self.status))
        if self.event_type:
            where.append(Delivery.event_type == literal_column(f"'{self.event_type}'"))
        if self.call_id.startswith(WEBHOOK_ID_PREFIX):
            # The search box also takes a webhook-id (the receiver's view of an event):
            # events.id is unique, so this is one index lookup.
            where.append(Delivery.event_seq == select(Event.seq).where(Event.id == self.call_id)
                         .scalar_subquery())
        elif self.call_id:
            where.append(Delivery.call_id == self.call_id)
        if self.kind:
            # The column itself (SQLite: "is_test = 1"), as the partial index's WHERE says.
            where.append(Delivery.is_test if KINDS[self.kind] else ~Delivery.is_test)
        return where


@dataclass
class Page:
    """One page of the log, newest first."""

    rows: list[Delivery]
    newer: int | None  # the ?after= of the "Newer" link
    older: int | None  # the ?before= of the "Older" link

    @property
    def is_first(self) -> bool:
        """The newest page: the one that refreshes itself."""
        return self.newer is None


def int_arg(name: str) -> int | None:
    """A positive integer query parameter, or None."""
    value = request.args.get(name, "")
    # isdigit() alone accepts "²", which int() refuses.
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def log_page(where: list, before: int | None = None, after: int | None = None,
             size: int = PAGE_SIZE) -> Page:
    """Fetch one page by keyset: one indexed query of at most ``size + 1`` rows.

    ``before`` gives the rows just older than that id, ``after`` the rows just
    newer (read upwards, then reversed). The extra row tells whether there is
    another page that way. ``after`` reaching the newest rows gives the first
    page, so "Newer" always lands on a full, live page.
    """
    query = select(Delivery).options(raiseload(Delivery.event)).where(*where)
    if after is not None:
        rows = db.session.scalars(
            query.where(Delivery.id > after).order_by(Delivery.id.asc()).limit(size + 1)
        ).all()
        if len(rows) > size:
            rows = list(reversed(rows[:size]))
            return Page(rows, newer=rows[0].id, older=rows[-1].id)
        before = None  # nothing newer beyond these: show the first page
    query = query.order_by(Delivery.id.desc()).limit(size + 1)
    if before is not None:
        query = query.where(Delivery.id < before)
    rows = list(db.session.scalars(query).all())
    older = rows[size - 1].id if len(rows) > size else None
    rows = rows[:size]
    newer = rows[0].id if before is not None and rows else None
    if before is not None and not rows:
        # Paged past the oldest row (or a stale link): offer the way back.
        newer = before - 1
    return Page(rows, newer=newer, older=older)


def schedule_attempts() -> int:
    """How many attempts a delivery gets under the retry schedule in force (panel choice or override)."""
    return max_attempts(schedule_for(get_settings().retry_window, current_app.config))


def _holding(now: datetime):
    """An open delivery still holds its call: not yet failed, or failed less than 32 (scaled) minutes ago."""
    return or_(Delivery.holds_call_until.is_(None), Delivery.holds_call_until > now)


def _lets_go(delivery: Delivery, now: datetime) -> bool:
    """Has this head stopped holding its call (its own schedule goes on)?"""
    return delivery.holds_call_until is not None and delivery.holds_call_until <= now


def waiting_for(rows: list[Delivery], now: datetime | None = None) -> dict[int, int]:
    """Which of ``rows`` the drain holds back: {delivery id: the earliest open delivery of its call}.

    The same rule as the drain's claim: an open delivery waits while an
    earlier delivery of its call is still open and still holds the call
    (tasks.heads). One query for the whole page,
    and only when the page shows open deliveries of a call (a page of finished
    ones costs nothing): the earliest open id per call among the page's calls,
    read through the partial index on open rows (call_id, id), so it touches
    only those calls' open rows, never their delivered history.
    """
    now = now or utcnow()
    candidates = [d for d in rows if d.status in OPEN_STATES and d.call_id and not _lets_go(d, now)]
    if not candidates:
        return {}
    heads = dict(db.session.execute(
        select(Delivery.call_id, func.min(Delivery.id))
        .where(Delivery.call_id.in_(sorted({d.call_id for d in candidates})),
               is_open(Delivery.status), _holding(now),
               Delivery.id < max(d.id for d in candidates))
        .group_by(Delivery.call_id)
    ).all())
    return {d.id: heads[d.call_id] for d in candidates if heads.get(d.call_id, d.id) < d.id}


def sent_ahead(rows: list[Delivery]) -> dict[int, int]:
    """Which of ``rows`` were sent while an earlier event of their call was still retrying: {id: that event's id}.

    An earlier delivery that stopped holding its call (holds_call_until
    passed) and was still open when this one was first attempted. Costs
    nothing unless the page's calls have such a delivery (one query by the
    call index; then one for the first attempts' times).
    """
    sent = [d for d in rows if d.call_id and d.attempt_count]
    if not sent:
        return {}
    let_go = db.session.execute(
        select(Delivery.id, Delivery.call_id, Delivery.holds_call_until, Delivery.status,
               Delivery.last_attempt_at)
        .where(Delivery.call_id.in_(sorted({d.call_id for d in sent})),
               Delivery.holds_call_until.is_not(None), Delivery.id < max(d.id for d in sent))
    ).all()
    if not let_go:
        return {}
    first = dict(db.session.execute(
        select(Attempt.delivery_id, func.min(Attempt.started_at))
        .where(Attempt.delivery_id.in_([d.id for d in sent])).group_by(Attempt.delivery_id)
    ).all())
    ahead = {}
    for d in sent:
        began = first.get(d.id)
        for other in let_go:
            if (other.call_id == d.call_id and other.id < d.id and began is not None
                    and other.holds_call_until <= began
                    and (other.status in OPEN_STATES or other.last_attempt_at > began)):
                ahead[d.id] = other.id
                break
    return ahead


def earliest_open_before(delivery: Delivery) -> Delivery | None:
    """The earliest still-open delivery of ``delivery``'s call published before it, if any.

    That is the one the drain is working through (the call's head); while it
    exists ``delivery`` is not sent. None for a finished delivery or one
    without a call id.
    """
    now = utcnow()
    if delivery.status not in OPEN_STATES or not delivery.call_id or _lets_go(delivery, now):
        return None
    return db.session.scalars(
        select(Delivery).options(raiseload(Delivery.event))
        .where(Delivery.call_id == delivery.call_id, Delivery.id < delivery.id,
               is_open(Delivery.status), _holding(now))
        .order_by(Delivery.id).limit(1)
    ).first()
