"""Events published while Hookline switched the integration off by itself are held, then sent or discarded.

Real receiver, real drain, SQLite or PostgreSQL (the publish's one
statement decides pending or held from the settings row).
"""

from sqlalchemy import select

from events import example_envelope
from models import db
from models.events import Delivery
from models.settings import get_settings
from tasks import publish_event
from tasks.autodisable import after_gone
from tasks.drain import Drainer
from tasks.held import DISCARDED
from tests.test_delivery import deliveries

SETTINGS = "/settings/integrations/webhook"


def gone(app):
    """What a 410 Gone does: Hookline switches the integration off by itself."""
    with app.app_context():
        settings = get_settings()
        after_gone(settings, settings.url)
        db.session.commit()


def publish_call(app, call_id, *event_types):
    with app.app_context():
        return [publish_event(name, {**example_envelope(name)["payload"], "call_id": call_id})
                for name in event_types]


def test_events_published_while_auto_disabled_are_held_then_sent_in_order(app, integration, receiver, auth_client):
    gone(app)
    ids = publish_call(app, 9, "call_initiated", "call_ringing", "call_answered")
    assert all(ids)  # stored, not dropped
    with app.app_context():
        assert Drainer(app.config).run_until_empty() == 0
    assert [d.status for d in deliveries(app)] == ["held"] * 3
    assert receiver.requests == []
    # The banner on every panel page says how many and since when, and offers both ways.
    for page in (SETTINGS, f"{SETTINGS}/deliveries", f"{SETTINGS}/events"):
        html = auth_client.get(page).text
        assert "Hookline disabled this integration" in html and "410 Gone" in html, page
        assert "3 events held since" in html, page
        assert "Re-enable and send them" in html and "Re-enable and discard them" in html, page

    response = auth_client.post(f"{SETTINGS}/reenable", data={"held": "send", "next": f"{SETTINGS}/events"})
    assert response.status_code == 302 and response.location.endswith(f"{SETTINGS}/events")
    html = auth_client.get(f"{SETTINGS}/events").text
    assert "3 held events will be sent now, each call&#39;s in order." in html or \
        "3 held events will be sent now, each call's in order." in html
    assert "held since" not in html
    with app.app_context():
        Drainer(app.config).run_until_empty()
        Drainer(app.config).run_until_empty()
    assert [r.headers["webhook-id"] for r in receiver.requests] == ids
    assert [d.status for d in deliveries(app)] == ["delivered"] * 3


def test_discarding_the_held_events_cancels_them_and_says_why(app, integration, receiver, auth_client):
    gone(app)
    publish_call(app, 10, "call_initiated", "call_ended")
    response = auth_client.post(f"{SETTINGS}/reenable", data={"held": "discard"}, follow_redirects=True)
    assert "2 held events were discarded (cancelled)." in response.text
    with app.app_context():
        assert get_settings().enabled is True
        Drainer(app.config).run_until_empty()
    rows = deliveries(app)
    assert [(d.status, d.last_error) for d in rows] == [("cancelled", DISCARDED)] * 2
    assert receiver.requests == []


def test_an_unknown_choice_changes_nothing(app, integration, auth_client):
    gone(app)
    publish_call(app, 11, "call_initiated")
    response = auth_client.post(f"{SETTINGS}/reenable", data={"held": "later"}, follow_redirects=True)
    assert "Nothing changed: choose to send or to discard the held events." in response.text
    assert "1 event held since" in response.text
    with app.app_context():
        assert get_settings().enabled is False


def test_switched_off_by_an_admin_nothing_is_stored(app, integration):
    with app.app_context():
        get_settings().enabled = False
        db.session.commit()
    assert publish_call(app, 12, "call_initiated") == [None]
    with app.app_context():
        assert db.session.scalars(select(Delivery)).all() == []


def test_unsubscribed_types_are_not_held(app, integration):
    with app.app_context():
        get_settings().events = ["call_ended"]
        db.session.commit()
    gone(app)
    assert publish_call(app, 13, "call_initiated") == [None]
    assert publish_call(app, 13, "call_ended") != [None]
    assert [d.status for d in deliveries(app)] == ["held"]
