"""Periodic upkeep: prune old deliveries, run at most once per interval across workers."""

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select

from models import db, utcnow
from models.events import OPEN_STATES, Attempt, Delivery, Event
from tasks import rollups
from extensions import get_redis

log = logging.getLogger(__name__)

MAINTENANCE_LOCK = "hookline:maintenance"
VACUUM_LOCK = "hookline:vacuum"
PRUNE_BATCH = 1000


def prune(now: datetime | None = None, retention_days: float | None = None, batch: int = PRUNE_BATCH) -> int:
    """Delete events older than the retention period with their deliveries, attempts and roll-ups.

    Works in batches of ``batch`` events, one short transaction each, so the
    workers writing beside it are never blocked for long. Open deliveries
    (pending or retrying) are kept whatever their age. Returns the count.
    """
    now = now or utcnow()
    if retention_days is None:
        retention_days = current_app.config["HOOKLINE_RETENTION_DAYS"]
    cutoff = now - timedelta(days=retention_days)
    # The stats' per-minute roll-ups go with the attempts they counted.
    rollups.prune(cutoff)
    db.session.commit()
    removed = 0
    while True:
        old = (
            select(Event.seq)
            .join(Delivery, Delivery.event_seq == Event.seq)
            .where(Event.created_at < cutoff, Delivery.status.not_in(OPEN_STATES))
            .order_by(Event.seq)
            .limit(batch)
        )
        seqs = db.session.scalars(old).all()
        if not seqs:
            return removed
        # Attempts and deliveries go with their event (ON DELETE CASCADE).
        db.session.execute(delete(Event).where(Event.seq.in_(seqs)))
        db.session.commit()
        removed += len(seqs)


def run_if_due(app) -> None:
    """Run maintenance if no worker has run it within HOOKLINE_MAINTENANCE_SECONDS.

    Called from every worker's tick; a Redis SET NX makes one of them do it.
    """
    with app.app_context():
        interval = int(app.config["HOOKLINE_MAINTENANCE_SECONDS"])
        if not get_redis().set(MAINTENANCE_LOCK, 1, nx=True, ex=interval):
            return
        count = prune()
        if count:
            log.info("pruned %d events older than %s days", count, app.config["HOOKLINE_RETENTION_DAYS"])


def vacuum_outbox_if_due(app) -> None:
    """PostgreSQL: VACUUM deliveries and attempts every HOOKLINE_VACUUM_SECONDS (one worker does it).

    Why deliveries: every delivery is updated two or three times, and until
    a vacuum the partial index on open rows keeps an entry for each old row
    version. The claim reads that index, so without it each claim walks
    every dead entry since the last vacuum, long before autovacuum comes round.

    Why attempts: the log's stats read the last 24 h of attempts from an
    index alone, but PostgreSQL reads the table too for every page not yet
    marked all-visible, and only a vacuum marks them; autovacuum comes round
    on an insert-only table only after ~20% more rows. Attempts are only
    inserted (and pruned in bulk, which autovacuum cleans up), so this
    vacuum skips index cleanup, which would be most of its cost.

    A plain VACUUM takes no lock that blocks the workers or the engine, and
    on a table it visited seconds ago it reads only the pages changed since.
    """
    interval = app.config["HOOKLINE_VACUUM_SECONDS"]
    if not interval:
        return
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            return
        if not get_redis().set(VACUUM_LOCK, 1, nx=True, ex=max(1, round(interval))):
            return
        # VACUUM cannot run inside a transaction block.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"VACUUM {Delivery.__tablename__}")
            conn.exec_driver_sql(f"VACUUM (INDEX_CLEANUP OFF) {Attempt.__tablename__}")
