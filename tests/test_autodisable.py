"""Auto-disable: 410 Gone at once; a day of nothing but failures (at least 10)."""

from datetime import timedelta

from events import example_envelope
from models import db, utcnow
from models.events import Delivery, Event
from models.settings import get_settings
from tasks import publish_event
from tasks.autodisable import after_failure
from tasks.drain import drain
from tasks.queue import flush_rings
from tests.support.receiver import Reply


def test_410_gone_disables_at_once_and_holds_the_rest(app, integration, receiver):
    receiver.respond(Reply(410, body=b"this endpoint is gone"))
    with app.app_context():
        for _ in range(3):
            publish_event("call_ended", example_envelope("call_ended")["payload"])
        flush_rings()  # the publishes' wake-ups have gone out, as in a real run
        drain()
        settings = get_settings()
        assert settings.enabled is False
        assert "410 Gone" in settings.disabled_reason and settings.disabled_at
        statuses = [d.status for d in db.session.scalars(db.select(Delivery).order_by(Delivery.id))]
    assert statuses == ["failed", "held", "held"]
    assert len(receiver.requests) == 1


def add_delivery(status, created, delivered_at=None):
    event = Event(event_type="error", timestamp_utc=0, body="{}", created_at=created)
    db.session.add_all([event, Delivery(event=event, event_type="error", status=status,
                                        created_at=created, delivered_at=delivered_at)])


def nine_failures_after_an_old_success(now):
    """A success 30 h ago, then 9 failures over a day: counted, and not yet enough to disable."""
    add_delivery("delivered", now - timedelta(hours=30), delivered_at=now - timedelta(hours=30))
    for i in range(9):
        add_delivery("failed", now - timedelta(hours=25 - i))
    db.session.commit()
    settings = get_settings()
    after_failure(settings)
    assert settings.enabled is True  # only 9 failures
    return settings


def test_a_day_of_failures_disables(app, integration):
    now = utcnow()
    with app.app_context():
        settings = nine_failures_after_an_old_success(now)
        add_delivery("failed", now - timedelta(minutes=5))
        db.session.commit()
        after_failure(settings)
        assert settings.enabled is False
        assert "failed for 24 hours (10 failed deliveries)" in settings.disabled_reason


def test_failures_for_less_than_the_period_do_not_disable(app, integration):
    now = utcnow()
    with app.app_context():
        for i in range(50):
            add_delivery("failed", now - timedelta(hours=2, minutes=i))
        db.session.commit()
        settings = get_settings()
        after_failure(settings)
        assert settings.enabled is True


def test_a_recent_success_prevents_disabling(app, integration):
    now = utcnow()
    with app.app_context():
        for i in range(20):
            add_delivery("failed", now - timedelta(hours=30 - i))
        add_delivery("delivered", now - timedelta(hours=1), delivered_at=now - timedelta(hours=1))
        db.session.commit()
        settings = get_settings()
        after_failure(settings)
        assert settings.enabled is True


def test_panel_shows_banner_and_reenables(app, integration, auth_client):
    with app.app_context():
        from tasks.autodisable import after_gone

        settings = get_settings()
        after_gone(settings, settings.url)
        db.session.commit()
    html = auth_client.get("/settings/integrations/webhook").text
    assert "Hookline disabled this integration" in html and "410 Gone" in html
    assert "Re-enable" in html
    response = auth_client.post("/settings/integrations/webhook/reenable", follow_redirects=True)
    assert "enabled again" in response.text
    assert "Hookline disabled this integration" not in response.text
    with app.app_context():
        settings = get_settings()
        assert settings.enabled is True and settings.disabled_reason is None


def test_a_success_after_the_failures_were_counted_prevents_disabling(app, integration, receiver):
    # The last success is read from the log once and kept; a delivery that
    # succeeds later (here through the drain) must still count.
    now = utcnow()
    with app.app_context():
        settings = nine_failures_after_an_old_success(now)
        publish_event("call_ended", example_envelope("call_ended")["payload"])
        flush_rings()
        drain()  # the receiver answers 200
        add_delivery("failed", now - timedelta(minutes=5))
        db.session.commit()
        settings = get_settings()
        after_failure(settings)
        assert settings.enabled is True  # 10 failures, but one delivery just succeeded
    assert len(receiver.requests) == 1
