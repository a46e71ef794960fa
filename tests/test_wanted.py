"""Publish's "is this event wanted?" is SQL inside the event's INSERT; it must say
exactly what the Python rule (``models.settings.wants``) says, on every database."""

import pytest
from sqlalchemy import func, select

from events import example_envelope
from models import db
from models.events import Event
from models.settings import get_settings, wants
from tasks import publish_event


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("url", ["https://example.com/hook", "", None])
@pytest.mark.parametrize("events", [["call_ended"], ["call_initiated", "call_ended"], [], None])
def test_the_sql_check_agrees_with_the_rule(app, enabled, url, events):
    with app.app_context():
        settings = get_settings()
        settings.enabled, settings.url, settings.events = enabled, url, events
        db.session.commit()
        expected = wants(enabled, url, events, "call_ended")
        event_id = publish_event("call_ended", example_envelope("call_ended")["payload"])
        assert (event_id is not None) == expected
        assert db.session.scalar(select(func.count()).select_from(Event)) == (1 if expected else 0)
