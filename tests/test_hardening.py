"""Issue 19's smaller items: each test here failed on 0a576cf.

The odd ?before=, stale pooled connections after the database dropped them,
the hits cache shared between databases, create-admin's JSON.
"""

import json
from datetime import timedelta

import pytest
import sqlalchemy
from sqlalchemy import text

from app import create_app
from events import example_envelope
from models import db, utcnow
from tests.test_api import post, token  # noqa: F401  (the fixture)
from tests.test_stats import add_delivery

LOG = "/settings/integrations/webhook/deliveries"


@pytest.mark.parametrize("value", ["²", "1²", "٣", "9" * 40])
def test_log_treats_an_odd_before_as_absent(auth_client, app, value):
    with app.app_context():
        for minutes in (3, 2, 1):
            add_delivery(utcnow() - timedelta(minutes=minutes))
    first = auth_client.get(LOG)
    for arg in ("before", "after"):
        response = auth_client.get(f"{LOG}?{arg}={value}")
        assert response.status_code == 200, (arg, value)
        assert response.text.count("data-delivery-id=") == first.text.count("data-delivery-id=") == 3


def test_stats_are_cached_per_database(app, app_config, tmp_path, integration, receiver):
    """Two databases on one Redis: each log shows its own hits, never the other's cached figures."""
    from models.settings import get_settings
    from tasks import stats
    from tasks.testsend import send_test

    with app.app_context():
        for _ in range(3):
            send_test(get_settings(), "call_ended")
        assert stats.current()["summary"].hits == 3
    other = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'other.sqlite'}"})
    with other.app_context():
        db.create_all()
        assert stats.current()["summary"].hits == 0
        db.engine.dispose()
    with app.app_context():
        assert stats.current()["summary"].hits == 3


def test_create_admin_prints_valid_json_for_any_email(app):
    email = 'o"hara\\x@example.com'
    result = app.test_cli_runner().invoke(args=["create-admin", email, "--password-stdin"],
                                          input="s3cret-pass\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"created": email}


def test_api_answers_after_the_database_dropped_every_connection(app, integration, token):  # noqa: F811
    """PostgreSQL restarted (here: every pooled connection terminated): no 500s, not even the first."""
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("needs PostgreSQL (HOOKLINE_TEST_DATABASE_URL): SQLite has no server to drop connections")
    client = app.test_client()
    body = {"event_type": "call_ended", "payload": example_envelope("call_ended")["payload"]}
    with app.app_context():
        # Fill the pool with a few connections, as a busy web process has.
        held = [db.engine.connect() for _ in range(3)]
        pids = [conn.execute(text("SELECT pg_backend_pid()")).scalar() for conn in held]
        for conn in held:
            conn.close()
    assert post(client, token, body).status_code == 202
    killer = sqlalchemy.create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    with killer.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM unnest(:pids) AS pid"), {"pids": pids})
    killer.dispose()
    statuses = [post(client, token, body).status_code for _ in range(5)]
    assert statuses == [202] * 5
