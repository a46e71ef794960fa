"""The "failing" banner on every panel page: the rule, its cost, what it says.

The rule is checked on rows whose times are set in the past (a moved clock,
not a wait); the whole flow with a real receiver and worker is in
tests/browser/test_alerts_browser.py.
"""

from datetime import timedelta

import pytest
from sqlalchemy import event as sa_event

from models import db, utcnow
from models.events import Delivery
from tasks import watch
from tests.test_stats import add_delivery

SETTINGS = "/settings/integrations/webhook"
PAGES = (SETTINGS, f"{SETTINGS}/deliveries", f"{SETTINGS}/events")


@pytest.fixture
def app_config(app_config):
    app_config["HOOKLINE_HEALTH_CACHE_SECONDS"] = 0  # every page computes it afresh
    return app_config


def failures(minutes_ago, count, status="retrying", call="c-1", code=503):
    """``count`` failed attempts of one delivery, evenly spread from ``minutes_ago`` until now."""
    now = utcnow()
    start = now - timedelta(minutes=minutes_ago)
    step = (now - start) / max(count - 1, 1)
    return add_delivery(start, status, call_id=call, due_at=now + timedelta(minutes=5),
                        attempts=[(start + i * step, 3.0, code) for i in range(count)])


def test_five_failed_attempts_over_five_minutes_is_failing(app, integration):
    with app.app_context():
        failures(4, 5)  # five failures, but over 4 minutes only
        db.session.commit()
        assert not watch.check().failing
        failures(6, 5, call="c-2", status="failed")  # five more; the run now spans 6 minutes
        db.session.commit()
        health = watch.check()
    assert health.failing and health.affected == 2
    assert health.last_error == "your endpoint answered 503 Service Unavailable after 3 ms"


def test_a_success_ends_the_run(app, integration):
    with app.app_context():
        failures(20, 8, status="failed")
        add_delivery(utcnow(), "delivered", call_id="c-9", attempts=[(utcnow(), 2.0, 200)])
        db.session.commit()
        assert not watch.check().failing


def test_an_open_delivery_older_than_ten_minutes_is_failing(app, integration):
    with app.app_context():
        # The oldest open delivery is the first published (lowest id) still open.
        oldest = add_delivery(utcnow() - timedelta(minutes=11), "delivered", call_id="c-0")
        add_delivery(utcnow() - timedelta(minutes=9), "pending", due_at=utcnow())
        db.session.commit()
        assert not watch.check().failing
        db.session.execute(db.update(Delivery).where(Delivery.id == oldest).values(status="pending"))
        db.session.commit()
        health = watch.check()
    assert health.failing and health.affected == 2 and health.last_error is None


def test_every_panel_page_shows_the_banner_with_count_error_and_link(app, integration, auth_client):
    with app.app_context():
        failures(6, 6)
        failures(6, 1, call="c-2")
        db.session.commit()
    for page in PAGES:
        html = auth_client.get(page).text
        assert 'id="failing-banner"' in html, page
        assert '<span id="failing-count">2 deliveries</span> affected' in html, page
        assert "Last error: <span id=\"failing-error\">your endpoint answered 503 Service Unavailable after 3 ms</span>" in html
        assert f'href="{SETTINGS}/deliveries?status=retrying"' in html


def test_no_banner_when_healthy_and_the_check_is_one_statement(app, integration, auth_client):
    with app.app_context():
        add_delivery(utcnow(), "delivered", attempts=[(utcnow(), 2.0, 200)])
        db.session.commit()
        statements = []
        capture = lambda conn, cursor, statement, *args: statements.append(statement)  # noqa: E731
        sa_event.listen(db.engine, "before_cursor_execute", capture)
        try:
            assert not watch.check().failing
        finally:
            sa_event.remove(db.engine, "before_cursor_execute", capture)
    assert len(statements) == 1
    for page in PAGES:
        assert 'id="failing-banner"' not in auth_client.get(page).text


def test_no_banner_signed_out_or_on_the_login_page(app, integration, client):
    with app.app_context():
        failures(6, 6)
        db.session.commit()
    assert 'id="failing-banner"' not in client.get("/login").text
