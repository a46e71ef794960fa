"""Auto-disable: stop sending to an endpoint that is gone or has failed for a day.

A 410 Gone answer disables the integration at once. Otherwise, when no
delivery has succeeded for ``HOOKLINE_AUTO_DISABLE_HOURS`` (default 24) and
at least ``HOOKLINE_AUTO_DISABLE_MIN_FAILURES`` (default 10) deliveries failed
for good in that time, it is disabled too. Pending deliveries and new
publishes are then held (tasks.held), for the admin to send or discard on
re-enabling; "Redeliver all failed since" brings back the failed ones.
"""

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select

from models import db, utcnow
from models.events import DELIVERED, FAILED, Delivery, has_status

log = logging.getLogger(__name__)


def disable(settings, reason: str) -> None:
    """Switch the integration off and say why; the caller commits."""
    if not settings.enabled:
        return
    settings.enabled = False
    settings.disabled_reason = reason
    settings.disabled_at = utcnow()
    log.warning("integration disabled: %s", reason)


def after_gone(settings, url: str) -> None:
    """The endpoint answered 410 Gone: it asked us to stop."""
    disable(settings, f"The endpoint answered 410 Gone ({url}), so Hookline stopped sending.")


def after_failure(settings) -> None:
    """Called when a delivery has failed for good: disable if everything fails for long."""
    config = current_app.config
    window = timedelta(hours=config["HOOKLINE_AUTO_DISABLE_HOURS"])
    minimum = config["HOOKLINE_AUTO_DISABLE_MIN_FAILURES"]
    now = utcnow()
    real = Delivery.is_test.is_(False)
    last_ok = db.session.scalar(select(func.max(Delivery.delivered_at)).where(real, Delivery.status == DELIVERED))
    if last_ok is not None and last_ok > now - window:
        return
    failed_since, failures = db.session.execute(
        select(func.min(Delivery.created_at), func.count())
        .where(real, has_status(Delivery.status, FAILED), Delivery.created_at >= (last_ok or now - 10 * window))
    ).one()
    if failures >= minimum and failed_since is not None and failed_since <= now - window:
        hours = config["HOOKLINE_AUTO_DISABLE_HOURS"]
        disable(settings, f"Every delivery failed for {hours:g} hours ({failures} failed deliveries), "
                          "so Hookline stopped sending.")
