"""The drain job: claim due deliveries, send each, record every attempt.

One drain job delivers everything that is due, in publish order, then
stops. Claims are leases: a drain that dies mid-batch loses its claim when
the lease runs out, and another drain sends those deliveries again (with the
same webhook-id, so receivers can de-duplicate).

Per-call order: a delivery is claimable only when no earlier delivery of the
same call is still open (pending or retrying), so a call's events go out in
the order they were published whatever the number of workers.
"""

import logging
import uuid
from datetime import timedelta

from flask import current_app
from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import aliased

from models import db, utcnow
from models.events import CANCELLED, DELIVERED, FAILED, OPEN_STATES, RETRYING, Attempt, Delivery
from models.settings import get_settings, mask_value
from tasks.queue import clear_wake_flag, wake
from tasks.retry import next_delay
from tasks.sender import Sender
from tasks.signing import signature_headers

log = logging.getLogger(__name__)


def get_sender() -> Sender:
    """The process's one Sender (its connection pool keeps connections alive)."""
    sender = current_app.extensions.get("hookline_sender")
    if sender is None:
        from tasks.netguard import parse_networks

        sender = Sender(
            allowed_networks=parse_networks(current_app.config["HOOKLINE_ALLOWED_NETWORKS"]),
            deadline=current_app.config["HOOKLINE_DELIVERY_TIMEOUT"],
            user_agent=current_app.config["HOOKLINE_USER_AGENT"],
        )
        current_app.extensions["hookline_sender"] = sender
    return sender


def _due_filter(now):
    """Open, due, unleased, and not behind an open earlier delivery of its call."""
    earlier = aliased(Delivery)
    return (
        Delivery.status.in_(OPEN_STATES),
        Delivery.due_at <= now,
        or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
        ~exists().where(
            earlier.call_id == Delivery.call_id,
            earlier.id < Delivery.id,
            earlier.status.in_(OPEN_STATES),
        ),
    )


def claim(owner: str, limit: int, lease_seconds: float) -> list[Delivery]:
    """Lease up to ``limit`` due deliveries to ``owner``, oldest first.

    One UPDATE ... RETURNING: on PostgreSQL the inner SELECT skips rows
    another drain has locked; on SQLite writes are serialised anyway. The
    outer WHERE repeats the lease test so a row claimed meanwhile is skipped.
    """
    now = utcnow()
    candidates = (
        select(Delivery.id)
        .where(*_due_filter(now))
        .order_by(Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = db.session.scalars(
        update(Delivery)
        .where(Delivery.id.in_(candidates.scalar_subquery()))
        .where(Delivery.status.in_(OPEN_STATES))
        .where(or_(Delivery.lease_until.is_(None), Delivery.lease_until < now))
        .values(lease_until=now + timedelta(seconds=lease_seconds), claimed_by=owner)
        .returning(Delivery.id)
    ).all()
    db.session.commit()
    if not claimed:
        return []
    rows = db.session.scalars(
        select(Delivery).where(Delivery.id.in_(claimed)).order_by(Delivery.id)
    ).all()
    return list(rows)


def has_due_work() -> bool:
    """True when some delivery is due now (the periodic tick asks this)."""
    return db.session.scalar(select(exists().where(*_due_filter(utcnow())))) or False


def _cancel(delivery: Delivery, reason: str) -> None:
    """Close a delivery the integration no longer wants, saying why in the log."""
    delivery.status = CANCELLED
    delivery.last_error = reason
    delivery.due_at = None
    delivery.lease_until = None


def _not_wanted_reason(settings, delivery: Delivery) -> str | None:
    """Why the settings read at send time refuse this delivery, if they do."""
    if not settings.enabled:
        return "Cancelled: the integration was disabled before this was sent."
    if not settings.url:
        return "Cancelled: no webhook URL is configured."
    if delivery.event_type not in (settings.events or []) and not delivery.is_test:
        return f"Cancelled: {delivery.event_type} is no longer subscribed."
    return None


def deliver(delivery: Delivery, settings, sender: Sender, schedule) -> Attempt:
    """Send one delivery now and record the attempt and the delivery's next state.

    The caller commits.
    """
    event = delivery.event
    body = event.body.encode("utf-8")
    signed = signature_headers(
        settings.signing_secrets(), event.id, int(utcnow().timestamp()), body
    )
    custom = [(name, value) for name, value in settings.headers or []]
    started = utcnow()
    result = sender.post(settings.url, body, signed, custom)

    number = delivery.attempt_count + 1
    attempt = Attempt(
        delivery_id=delivery.id,
        number=number,
        started_at=started,
        duration_ms=round(result.duration_ms, 2),
        status_code=result.status_code,
        ok=result.ok,
        request_headers={
            **signed,
            **{name: mask_value(value) for name, value in custom},
        },
        response_headers=result.response_headers or {},
        response_body=result.response_body,
        error_kind=result.error_kind,
        error_message=result.error_message,
    )
    db.session.add(attempt)

    delivery.attempt_count = number
    delivery.last_attempt_at = started
    delivery.last_status_code = result.status_code
    delivery.last_duration_ms = attempt.duration_ms
    delivery.lease_until = None
    if result.ok:
        delivery.status = DELIVERED
        delivery.delivered_at = utcnow()
        delivery.last_error = None
        delivery.due_at = None
        return attempt

    delivery.last_error = result.error_message
    delay = next_delay(number, schedule, result.retry_after)
    if delay is None:
        delivery.status = FAILED
        delivery.due_at = None
    else:
        delivery.status = RETRYING
        delivery.due_at = utcnow() + timedelta(seconds=delay)
    return attempt


def drain() -> int:
    """The RQ job: deliver everything due, batch after batch; return how many were sent."""
    clear_wake_flag()
    config = current_app.config
    owner = uuid.uuid4().hex
    batch_size = config["HOOKLINE_BATCH_SIZE"]
    # The lease must outlast a whole batch of receivers that each take the full deadline.
    lease = max(config["HOOKLINE_LEASE_SECONDS"], batch_size * config["HOOKLINE_DELIVERY_TIMEOUT"] + 30)
    schedule = config["HOOKLINE_RETRY_SCHEDULE"]
    sender = get_sender()
    sent = 0
    while True:
        batch = claim(owner, batch_size, lease)
        if not batch:
            return sent
        if len(batch) == batch_size:
            # More may be waiting: let another worker help while this one sends.
            wake()
        settings = get_settings()
        db.session.refresh(settings)  # read at send time, not from a stale identity map
        for delivery in batch:
            reason = _not_wanted_reason(settings, delivery)
            if reason:
                _cancel(delivery, reason)
            else:
                deliver(delivery, settings, sender, schedule)
                sent += 1
            db.session.commit()
