"""Is the integration failing? The one answer for the panel's banner and the e-mail alerts.

"Failing" (issue 20): the last 5 or more attempts, spread over 5 minutes or
more, all failed; or the oldest open delivery is more than 10 minutes old.
Both thresholds are settings (HOOKLINE_FAILING_SECONDS,
HOOKLINE_STUCK_SECONDS) so tests can shorten them.

Cheap on purpose, as every panel page asks: one statement reads the run of
attempts since the last success (ranges of the attempts' time index) and
the open deliveries (an index on open rows); only while failing, two more read
how many failed and the last failure. The panel caches the answer for a
few seconds (HOOKLINE_HEALTH_CACHE_SECONDS).
"""

import time
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import func, or_, select

from models import db, utcnow
from models.events import FAILED, Attempt, Delivery, has_status, is_open
from tasks.testsend import describe

#: Failed attempts in a row it takes (over HOOKLINE_FAILING_SECONDS) to call it failing.
MIN_FAILED_ATTEMPTS = 5
#: How long the panel reuses an answer.
CACHE_SECONDS = 5.0


@dataclass
class Health:
    """What the banner and the alerts say."""

    failing: bool
    affected: int = 0  # open deliveries, and those failed since it began
    since: datetime | None = None  # when the failing began (first failed attempt of the run, or oldest open)
    last_error: str | None = None  # the last failure, in words
    has_open: bool = False


def _stats():
    """One round trip: the failed run since the last success, and the open deliveries."""
    last_ok = select(func.max(Attempt.started_at)).where(Attempt.ok.is_(True)).scalar_subquery()
    after_ok = or_(last_ok.is_(None), Attempt.started_at > last_ok)
    oldest_id = select(func.min(Delivery.id)).where(is_open(Delivery.status)).scalar_subquery()
    return db.session.execute(select(
        select(func.count()).select_from(Attempt).where(after_ok).scalar_subquery(),
        select(func.min(Attempt.started_at)).where(after_ok).scalar_subquery(),
        select(func.max(Attempt.started_at)).where(after_ok).scalar_subquery(),
        select(func.count()).select_from(Delivery).where(is_open(Delivery.status)).scalar_subquery(),
        select(Delivery.created_at).where(Delivery.id == oldest_id).scalar_subquery(),
    )).one()


def check(now: datetime | None = None) -> Health:
    """Compute the integration's health now (no cache)."""
    config = current_app.config
    now = now or utcnow()
    run_count, run_first, run_last, open_count, oldest = _stats()
    failing_run = (run_count >= MIN_FAILED_ATTEMPTS and run_first is not None
                   and (run_last - run_first).total_seconds() >= config["HOOKLINE_FAILING_SECONDS"])
    stuck = oldest is not None and (now - oldest).total_seconds() > config["HOOKLINE_STUCK_SECONDS"]
    if not (failing_run or stuck):
        return Health(False, has_open=bool(open_count))
    since = min(t for t in (run_first if failing_run else None, oldest if stuck else None) if t)
    failed = db.session.scalar(select(func.count()).select_from(Delivery).where(
        has_status(Delivery.status, FAILED), Delivery.created_at >= since)) or 0
    last = db.session.scalars(
        select(Attempt).where(Attempt.ok.is_(False)).order_by(Attempt.started_at.desc()).limit(1)).first()
    last_error = describe(last).headline.removeprefix("Failed: ") if last else None
    return Health(True, affected=open_count + failed, since=since, last_error=last_error, has_open=bool(open_count))


def cached() -> Health:
    """check(), reused for CACHE_SECONDS per process (every panel page shows the banner)."""
    store = current_app.extensions.setdefault("hookline_health", {})
    at, health = store.get("value", (0.0, None))
    if health is None or time.monotonic() - at > current_app.config.get("HOOKLINE_HEALTH_CACHE_SECONDS", CACHE_SECONDS):
        health = check()
        store["value"] = (time.monotonic(), health)
    return health
