"""Event ids (the webhook-id header): Standard Webhooks' shape, unique, in publish order.

Ids sort in the order they were made, a millisecond apart or more, so that
each publish adds its id at the end of the events.id index (models.events).
"""

import re
import time

from sqlalchemy import select

from models import db
from models.events import Event, new_event_id
from tasks import publish_event
from tests.support.publishing import payload

SHAPE = re.compile(r"msg_[A-Za-z0-9_-]{22}")


def test_published_ids_have_the_webhook_id_shape_and_sort_in_publish_order(app, integration):
    with app.app_context():
        published = []
        for turn in range(5):
            published.append(publish_event("transcript", payload(turn)))
            time.sleep(0.002)
        stored = db.session.scalars(select(Event.id).order_by(Event.seq)).all()
    assert stored == published
    assert all(SHAPE.fullmatch(event_id) for event_id in published)
    assert sorted(published) == published  # byte order, as SQLite's index compares them


def test_ids_made_in_the_same_millisecond_differ():
    ids = [new_event_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(SHAPE.fullmatch(event_id) for event_id in ids)
