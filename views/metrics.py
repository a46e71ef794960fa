"""/metrics' exposition: Prometheus metrics computed at scrape time (views.health serves them).

A module of its own so that prometheus_client is imported by the web
process on its first scrape, never by a worker (which builds the same app).
"""

import logging
from datetime import timedelta

from flask import current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from sqlalchemy import case, func, select

from extensions import get_redis
from models import db, utcnow
from models.events import DELIVERED, STATES, UNDELIVERED_STATES, Attempt, Delivery, has_status, is_open
from tasks.queue import get_queue
from views.health import worker_heartbeats

log = logging.getLogger(__name__)

#: Attempt latency buckets in seconds; the deadline (10 s) is the last one.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The latency histogram covers the attempts started this long ago or later.
LATENCY_WINDOW = timedelta(hours=1)


class HooklineCollector:
    """Prometheus metrics computed at scrape time from the database and Redis.

    Nothing is counted in process memory: the numbers come from one GROUP BY
    and a few small queries, so they are right whichever process is scraped.
    A source that is down is reported as ``hookline_up{component=...} 0``
    and its metrics are left out, instead of failing the whole scrape.
    """

    def __init__(self, app):
        self.app = app

    def collect(self):
        """Yield every metric family (called by the registry on each scrape)."""
        with self.app.app_context():
            up = GaugeMetricFamily("hookline_up", "1 when the component answered this scrape.", labels=["component"])
            try:
                yield from self._database_metrics()
                up.add_metric(["database"], 1)
            except Exception:
                log.warning("metrics: database unavailable", exc_info=True)
                db.session.rollback()
                up.add_metric(["database"], 0)
            try:
                yield from self._redis_metrics()
                up.add_metric(["redis"], 1)
            except Exception:
                log.warning("metrics: Redis unavailable", exc_info=True)
                up.add_metric(["redis"], 0)
            yield up

    def _database_metrics(self):
        # Run every query before yielding, so a failure yields nothing half-done.
        # Every state but delivered from its partial index, delivered as the
        # rest of the table's count (which reads the smallest index): grouping
        # the whole table by status reads every row.
        counts = dict(db.session.execute(
            select(Delivery.status, func.count()).where(has_status(Delivery.status, *UNDELIVERED_STATES))
            .group_by(Delivery.status)).all())
        total = db.session.scalar(select(func.count()).select_from(Delivery))
        counts[DELIVERED] = max(0, total - sum(counts.values()))
        now = utcnow()
        oldest = db.session.scalar(select(func.min(Delivery.created_at)).where(is_open(Delivery.status)))
        since = now - LATENCY_WINDOW
        latency = db.session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(Attempt.duration_ms), 0.0),
                *[func.coalesce(func.sum(case((Attempt.duration_ms <= b * 1000, 1), else_=0)), 0) for b in LATENCY_BUCKETS],
            ).where(Attempt.started_at >= since)
        ).one()

        deliveries = GaugeMetricFamily("hookline_deliveries", "Deliveries in the log, by status.", labels=["status"])
        for status in STATES:
            deliveries.add_metric([status], counts.get(status, 0))
        yield deliveries

        yield GaugeMetricFamily(
            "hookline_oldest_open_delivery_age_seconds",
            "Age of the oldest pending or retrying delivery (0 when none is open).",
            value=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        )

        total, sum_ms, *cumulative = latency
        buckets = [(floatToGoString(b), int(n)) for b, n in zip(LATENCY_BUCKETS, cumulative)]
        buckets.append(("+Inf", int(total)))
        yield HistogramMetricFamily(
            "hookline_attempt_duration_seconds",
            "Delivery attempt latency over the last hour (a moving window: read the buckets, don't rate() them).",
            buckets=buckets,
            sum_value=float(sum_ms) / 1000,
        )

    def _redis_metrics(self):
        queue = get_queue()
        depth = queue.count
        beats = worker_heartbeats(get_redis())
        gauge = GaugeMetricFamily("hookline_queue_depth", "Jobs waiting in the RQ queue.", labels=["queue"])
        gauge.add_metric([queue.name], depth)
        yield gauge
        yield GaugeMetricFamily("hookline_workers_live", "Workers whose heartbeat is under a minute old.", value=len(beats))


def _registry() -> CollectorRegistry:
    """The app's private registry (not the global one: tests build many apps)."""
    registry = current_app.extensions.get("hookline_metrics")
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(HooklineCollector(current_app._get_current_object()))
        registry = current_app.extensions.setdefault("hookline_metrics", registry)
    return registry


def latest() -> bytes:
    """Every metric, in Prometheus' text format, read now from the database and Redis."""
    return generate_latest(_registry())
