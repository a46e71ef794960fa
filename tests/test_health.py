"""/healthz and /metrics: open without a login, computed from the database and Redis."""

import time

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from events import example_envelope
from models import db
from tasks import publish_event
from tasks.queue import flush_rings
from tests.conftest import free_port
from tests.support.receiver import Reply


def health(client):
    response = client.get("/healthz")
    return response.status_code, response.get_json()


def scrape(client) -> dict:
    """/metrics parsed by Prometheus' own parser: {(sample name, labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def break_redis(app):
    """Point the app at a port where no Redis listens (as if Redis went down)."""
    app.extensions["hookline_redis"] = redis.Redis(port=free_port(), socket_connect_timeout=0.5)


def test_healthz_without_a_worker_is_ok_but_says_so(client):
    status, body = health(client)
    assert status == 200
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "redis": "ok"}
    assert body["workers"] == {"live": 0, "newest_heartbeat_age_seconds": None, "status": "no worker"}


def test_healthz_reports_the_worker_heartbeat(app, client, start_worker):
    start_worker()
    deadline = time.time() + 30
    while time.time() < deadline:
        status, body = health(client)
        if body["workers"]["live"]:
            break
        time.sleep(0.1)
    assert status == 200
    assert body["workers"]["live"] == 1 and body["workers"]["status"] == "ok"
    assert 0 <= body["workers"]["newest_heartbeat_age_seconds"] < 5
    keys = redis.Redis.from_url(app.config["REDIS_URL"]).keys("hookline:worker:*")
    assert len(keys) == 1
    assert 0 < redis.Redis.from_url(app.config["REDIS_URL"]).ttl(keys[0]) <= 60  # it expires if the worker dies


def test_healthz_is_degraded_when_redis_is_down(app, client):
    break_redis(app)
    status, body = health(client)
    assert status == 503
    assert body["status"] == "degraded"
    assert body["checks"]["database"] == "ok" and body["checks"]["redis"].startswith("error:")
    assert body["workers"]["live"] is None


def test_healthz_is_degraded_when_the_database_is_down(tmp_path, redis_url):
    # A database that cannot be opened: its directory does not exist.
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/missing/db.sqlite",
                      "REDIS_URL": redis_url, "SECRET_KEY": "test"})
    status, body = health(app.test_client())
    assert status == 503
    assert body["checks"]["database"].startswith("error:") and body["checks"]["redis"] == "ok"
    with app.app_context():
        db.engine.dispose()


def test_metrics_has_every_family(app, auth_client, integration, receiver):
    # Two recorded deliveries (via the Test button: one failed, one delivered) and one pending.
    receiver.respond(Reply(500))
    auth_client.post("/settings/integrations/webhook/test", data={"event_type": "call_initiated"})
    auth_client.post("/settings/integrations/webhook/test", data={"event_type": "call_ended"})
    with app.app_context():
        publish_event("call_ringing", example_envelope("call_ringing")["payload"])  # no worker: stays pending
        assert flush_rings()  # the Waker thread has queued its drain job

    samples = scrape(app.test_client())  # no login needed
    assert samples[("hookline_deliveries", (("status", "delivered"),))] == 1
    assert samples[("hookline_deliveries", (("status", "failed"),))] == 1
    assert samples[("hookline_deliveries", (("status", "pending"),))] == 1
    assert samples[("hookline_deliveries", (("status", "retrying"),))] == 0
    assert samples[("hookline_attempt_duration_seconds_count", ())] == 2
    assert samples[("hookline_attempt_duration_seconds_bucket", (("le", "+Inf"),))] == 2
    assert samples[("hookline_attempt_duration_seconds_bucket", (("le", "10.0"),))] == 2
    assert samples[("hookline_attempt_duration_seconds_sum", ())] > 0
    assert samples[("hookline_queue_depth", (("queue", "hookline"),))] == 1  # one drain job waits
    assert samples[("hookline_oldest_open_delivery_age_seconds", ())] > 0
    assert samples[("hookline_workers_live", ())] == 0
    assert samples[("hookline_up", (("component", "database"),))] == 1
    assert samples[("hookline_up", (("component", "redis"),))] == 1


def test_metrics_on_an_empty_database(client):
    samples = scrape(client)
    assert samples[("hookline_attempt_duration_seconds_count", ())] == 0
    assert samples[("hookline_oldest_open_delivery_age_seconds", ())] == 0
    assert samples[("hookline_deliveries", (("status", "pending"),))] == 0


def test_metrics_survive_redis_being_down(app, client):
    break_redis(app)
    samples = scrape(client)
    assert samples[("hookline_up", (("component", "redis"),))] == 0
    assert ("hookline_queue_depth", (("queue", "hookline"),)) not in samples
    assert samples[("hookline_deliveries", (("status", "delivered"),))] == 0


def test_each_app_has_its_own_registry(app, client, app_config):
    # Tests (and gunicorn's preloading) build several apps in one process.
    other = create_app(app_config)
    assert other.test_client().get("/metrics").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert other.extensions["hookline_metrics"] is not app.extensions["hookline_metrics"]
    with other.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_open_without_login(client, path):
    assert client.get(path).status_code == 200
