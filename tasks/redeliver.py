"""Redeliver: put finished deliveries back in the outbox for the normal drain.

A redelivery is one UPDATE: the row goes back to pending, due now, with no
lease. Its attempts stay (numbers continue) and the drain sends the same
event, so the receiver sees the same ``webhook-id`` and can de-duplicate.
The retry schedule counts every attempt ever made, so a delivery that
already used its schedule gets one attempt: if that fails it is failed again.
"""

import logging
from datetime import datetime

from sqlalchemy import or_, update

from models import db, utcnow
from models.events import CANCELLED, DELIVERED, FAILED, PENDING, RETRYING, Delivery, has_status
from tasks.queue import wake

log = logging.getLogger(__name__)

#: What the log offers to send again. Retrying ones may be sent now instead of
#: waiting for their backoff; pending ones are already due.
REDELIVERABLE = (DELIVERED, FAILED, CANCELLED, RETRYING)


def _requeue(*conditions) -> int:
    """Set the matching deliveries back to pending, due now; return how many."""
    now = utcnow()
    result = db.session.execute(
        update(Delivery)
        .where(*conditions)
        # Never touch a delivery a drain is sending right now: it would be
        # sent twice and the drain would then overwrite our state.
        .where(or_(Delivery.lease_until.is_(None), Delivery.lease_until < now))
        .values(
            status=PENDING,
            due_at=now,
            lease_until=None,
            claimed_by=None,
            delivered_at=None,
            head=None,  # open again: the claim works out whether it is its call's head (tasks.heads)
        )
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if result.rowcount:
        try:
            wake()
        except Exception:
            # Committed: a worker's periodic tick picks it up without Redis.
            log.warning("could not wake a worker after a redelivery; the periodic tick will", exc_info=True)
    return result.rowcount


def redeliver(delivery_id: int) -> bool:
    """Queue one delivery again; False when it is unknown, pending or being sent."""
    return _requeue(Delivery.id == delivery_id, Delivery.status.in_(REDELIVERABLE)) == 1


def redeliver_failed_since(since: datetime, *, include_cancelled: bool = False) -> int:
    """Queue again every failed real (not test) delivery created at or after ``since`` (naive UTC).

    With ``include_cancelled``, deliveries cancelled while the integration
    was off (or the event unsubscribed) go too; the drain cancels again those
    the settings still refuse. Returns how many were queued.
    """
    statuses = (FAILED, CANCELLED) if include_cancelled else (FAILED,)
    # Test deliveries were the Test button's one-off checks: never sent again in bulk.
    return _requeue(has_status(Delivery.status, *statuses), Delivery.created_at >= since,
                    ~Delivery.is_test)
