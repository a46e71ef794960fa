"""E-mail alerts reach a real SMTP server (aiosmtpd): auto-disabled, failing for an hour, recovered.

Failing "for an hour" is data whose times lie an hour back (a moved clock),
never a wait. Rounds run in-process here (tasks.alerts.run_once, what the
worker's alert thread calls); the browser test runs them in a real worker.
"""

import pytest
from sqlalchemy import select

from models import db, utcnow
from models.alerts import Alert
from models.events import Delivery
from models.users import User
from tasks import alerts
from tasks.autodisable import after_gone
from models.settings import get_settings
from tests.smtp import SmtpServer, free_port, text_of
from tests.test_health_banner import failures
from tests.test_stats import add_delivery

SETTINGS = "/settings/integrations/webhook"


@pytest.fixture
def app_config(app_config, request):
    """Mail to the test's SMTP server when the test uses one."""
    if "smtp" in request.fixturenames:
        server = request.getfixturevalue("smtp")
        app_config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port, MAIL_FROM="alerts@hookline.test")
    return app_config


def add_admin(app, email, opt_out=False):
    with app.app_context():
        user = User(email=email, alerts_opt_out=opt_out)
        user.set_password("a-long-password-1")
        db.session.add(user)
        db.session.commit()


def gone(app):
    with app.app_context():
        settings = get_settings()
        after_gone(settings, settings.url)
        db.session.commit()
        return settings.url


def test_auto_disable_mails_every_admin_not_opted_out_once(smtp, app, admin, integration):
    add_admin(app, "second@example.com")
    add_admin(app, "quiet@example.com", opt_out=True)
    url = gone(app)
    alerts.run_once(app)
    alerts.run_once(app)  # the same state: nothing more
    messages = smtp.inbox.wait_for(2)
    assert len(smtp.inbox.messages) == 2
    assert sorted(m["To"] for m in messages) == ["admin@example.com", "second@example.com"]
    for message in messages:
        assert message["From"] == "alerts@hookline.test"
        assert message["Subject"] == "Hookline stopped sending your webhook"
        body = text_of(message)
        assert f"URL: {url}" in body
        assert f"Reason: The endpoint answered 410 Gone ({url}), so Hookline stopped sending." in body


def test_failing_for_an_hour_mails_once_then_recovered_once(smtp, app, admin, integration):
    with app.app_context():
        failures(50, 8)  # failing, but for 50 minutes only
        db.session.commit()
    alerts.run_once(app)
    assert smtp.inbox.messages == []
    with app.app_context():
        failures(61, 3, call="c-2")  # the run now began 61 minutes ago
        db.session.commit()
    alerts.run_once(app)
    alerts.run_once(app)
    [failing] = smtp.inbox.wait_for(1)
    assert failing["Subject"] == "Your webhook deliveries are failing"
    assert "Deliveries affected: 2" in text_of(failing)
    assert "Last error: your endpoint answered 503 Service Unavailable after 3 ms" in text_of(failing)
    with app.app_context():  # the receiver answers again and the backlog drains
        db.session.execute(db.update(Delivery).values(status="delivered"))
        add_delivery(utcnow(), "delivered", call_id="c-3", attempts=[(utcnow(), 2.0, 200)])
        db.session.commit()
    alerts.run_once(app)
    alerts.run_once(app)
    messages = smtp.inbox.wait_for(2)
    assert len(smtp.inbox.messages) == 2
    assert messages[1]["Subject"] == "Your webhook deliveries have recovered"


@pytest.fixture
def closed_port(app_config):
    """Mail to a port where nothing listens yet."""
    port = free_port()
    app_config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_TIMEOUT=2)
    return port


def test_an_smtp_outage_is_logged_and_retried(closed_port, app, admin, integration, caplog):
    gone(app)
    alerts.run_once(app)  # refused: logged, kept
    assert "could not send alert e-mails via 127.0.0.1" in caplog.text
    with app.app_context():
        [alert] = db.session.scalars(select(Alert)).all()
        assert alert.sent_at is None and alert.attempts == 1 and "Error" in alert.last_error
    server = SmtpServer(closed_port).start()
    try:
        alerts.run_once(app)
        [message] = server.inbox.wait_for(1)
    finally:
        server.stop()
    assert message["Subject"] == "Hookline stopped sending your webhook"
    with app.app_context():
        assert db.session.scalars(select(Alert)).one().sent_at is not None


def test_without_mail_server_the_panel_says_alerts_are_off_and_how(app, auth_client):
    html = auth_client.get(SETTINGS).text
    assert "E-mail alerts are off." in html and "set <code>MAIL_SERVER</code>" in html


@pytest.fixture
def development(app_config):
    app_config["HOOKLINE_ENV"] = "development"


def test_development_prints_alerts_to_the_console(development, app, admin, integration, capsys):
    gone(app)
    alerts.run_once(app)
    out = capsys.readouterr().out
    assert "--- e-mail alert (MAIL_SERVER is not set) ---" in out
    assert "To: admin@example.com" in out and "Subject: Hookline stopped sending your webhook" in out


def test_each_admin_chooses_their_own_alerts(app, auth_client):
    response = auth_client.post(f"{SETTINGS}/alerts", data={}, follow_redirects=True)
    assert "You will no longer get the e-mail alerts." in response.text
    assert 'id="alerts-me" checked' not in response.text
    with app.app_context():
        assert db.session.scalars(select(User)).one().alerts_opt_out is True
    response = auth_client.post(f"{SETTINGS}/alerts", data={"alerts": "on"}, follow_redirects=True)
    assert "You will get the e-mail alerts." in response.text
    with app.app_context():
        assert db.session.scalars(select(User)).one().alerts_opt_out is False
