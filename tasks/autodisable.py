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
from models.rollups import minute_of, rollups

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
    last_ok = _last_success(now, window)
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


#: ``app.extensions`` key: (the last real success, when the log was read for it).
_LAST_SUCCESS = "hookline_last_success"
#: Roll-ups count an attempt under the minute it started; it may commit up to
#: a request's deadline and a lease later. Successes are looked for from this
#: long before the last read.
_MARGIN = timedelta(minutes=5)


def _last_success(now, window):
    """When a real delivery last succeeded (None: never), as the log says.

    The log's answer reads every delivered row (no index holds delivered_at:
    one would cost every delivery a write), a second on a million rows. So
    the answer is kept per app, and read again only if it may have changed
    and it matters: a success within the window settles it (a later one can
    only be later), and otherwise, as while everything fails, the roll-ups
    (one row a minute) tell whether anything has succeeded since the last read.
    """
    kept = current_app.extensions.get(_LAST_SUCCESS)
    if kept is not None:
        last_ok, read_at = kept
        if last_ok is not None and last_ok > now - window:
            return last_ok
        since = minute_of(read_at - _MARGIN)
        if db.session.scalar(select(func.count()).select_from(rollups)
                             .where(rollups.c.minute >= since, rollups.c.delivered > 0)) == 0:
            return last_ok
    last_ok = db.session.scalar(select(func.max(Delivery.delivered_at))
                                .where(Delivery.is_test.is_(False), Delivery.status == DELIVERED))
    current_app.extensions[_LAST_SUCCESS] = (last_ok, now)
    return last_ok
