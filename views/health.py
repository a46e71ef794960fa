"""Operators' endpoints, open without a login: /healthz and /metrics.

Both read the database and Redis at request time, so every web process
reports the same numbers however many workers deliver.
"""

import time

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from models import db
from extensions import get_redis
from tasks.queue import HEARTBEAT_PREFIX

bp = Blueprint("health", __name__)


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


@bp.get("/metrics")
def metrics():
    """Prometheus text format: deliveries by status, latency, queue depth, oldest open age."""
    # Imported on the first scrape, not with the app: every worker builds
    # this app too and never serves /metrics.
    from views import metrics as exposition

    return Response(exposition.latest(), content_type=exposition.CONTENT_TYPE_LATEST)
