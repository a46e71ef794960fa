"""Events held while Hookline has switched the integration off by itself.

After a 410 Gone or a day of failures the integration is disabled
automatically; publishes still store subscribed events, as ``held``
(tasks.publish), and deliveries claimed meanwhile are set aside as held too
(tasks.drain). They are kept for the retention period. When the admin
re-enables, they are sent (back to pending: the drain sends each call's in
publish order, since claims follow delivery ids) or discarded (cancelled,
saying so).
"""

import logging
from datetime import datetime

from sqlalchemy import func, select, update

from models import db, utcnow
from models.events import CANCELLED, HELD, PENDING, Delivery, has_status
from tasks.queue import wake

log = logging.getLogger(__name__)

DISCARDED = "Discarded: held while the integration was switched off, and the admin chose not to send it."


def held_summary() -> tuple[int, datetime | None]:
    """How many deliveries are held, and since when (the oldest one's publish time); one index range."""
    count, since = db.session.execute(
        select(func.count(), func.min(Delivery.created_at)).where(has_status(Delivery.status, HELD))).one()
    return count, since


def send_held() -> int:
    """Queue every held delivery to be sent now; return how many. The caller commits, then calls wake_up().

    Commit it with the re-enable itself: a publish that lands in between
    would otherwise be sent before the held events of its call.
    """
    return db.session.execute(
        update(Delivery).where(has_status(Delivery.status, HELD))
        .values(status=PENDING, due_at=utcnow(), lease_until=None, claimed_by=None, last_error=None,
                # open again: the claim works out which is each call's head (tasks.heads)
                head=None)
        .execution_options(synchronize_session=False)
    ).rowcount


def discard_held() -> int:
    """Cancel every held delivery, saying why; return how many. The caller commits."""
    return db.session.execute(
        update(Delivery).where(has_status(Delivery.status, HELD))
        .values(status=CANCELLED, due_at=None, last_error=DISCARDED)
        .execution_options(synchronize_session=False)
    ).rowcount


def wake_up() -> None:
    """Wake a worker for what was just queued; without Redis the periodic tick sends it."""
    try:
        wake()
    except Exception:
        log.warning("could not wake a worker for the held deliveries; the periodic tick will", exc_info=True)
