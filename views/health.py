"""Operators' endpoints, open without a login: /healthz and /metrics.

Both read the database and Redis at request time, so every web process
reports the same numbers however many workers deliver.
"""

import logging
import time
from datetime import timedelta

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from sqlalchemy import case, func, select, text

from models import db, utcnow
from models.events import DELIVERED, STATES, UNDELIVERED_STATES, Attempt, Delivery, has_status, is_open
from extensions import get_redis
from tasks.queue import HEARTBEAT_PREFIX, get_queue

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

#: Attempt latency buckets in seconds; the deadline (10 s) is the last one.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The latency histogram covers the attempts started this long ago or later.
LATENCY_WINDOW = timedelta(hours=1)


def worker_heartbeats(redis) -> list[float]:
    """The Unix time of each live worker's latest tick (its key expires when it dies)."""
    keys = list(redis.scan_iter(match=HEARTBEAT_PREFIX + "*", count=500))
    if not keys:
        return []
    return [float(value) for value in redis.mget(keys) if value is not None]


@bp.get("/healthz")
def healthz():
    """200 when the database and Redis answer, 503 (naming what failed) otherwise.

    Workers are reported (how many beat in the last minute, and the age of
    the newest heartbeat) but do not make the status degraded: with no
    worker the panel, the API and the Test button still work and events
    wait safely in the outbox, so a load balancer must not pull this web
    process. Alert on ``workers.live == 0`` (or /metrics) instead.
    """
    checks = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # report, don't crash: this page exists for outages
        checks["database"] = f"error: {exc.__class__.__name__}"
    workers = {"live": None, "newest_heartbeat_age_seconds": None, "status": "unknown (Redis is down)"}
    try:
        redis = get_redis()
        redis.ping()
        checks["redis"] = "ok"
        beats = worker_heartbeats(redis)
        workers = {
            "live": len(beats),
            "newest_heartbeat_age_seconds": round(max(0.0, time.time() - max(beats)), 1) if beats else None,
            "status": "ok" if beats else "no worker",
        }
    except Exception as exc:
        checks["redis"] = f"error: {exc.__class__.__name__}"
    healthy = all(v == "ok" for v in checks.values())
    body = {"status": "ok" if healthy else "degraded", "checks": checks, "workers": workers}
    return jsonify(body), 200 if healthy else 503


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


@bp.get("/metrics")
def metrics():
    """Prometheus text format: deliveries by status, latency, queue depth, oldest open age."""
    return Response(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
