"""What the publish tests share: a payload per turn, and what the outbox holds."""

from sqlalchemy import func, select

from events import example_envelope
from models import db
from models.events import Delivery, Event


def payload(turn):
    """A transcript payload whose text names ``turn`` (each publish a different body)."""
    base = example_envelope("transcript")["payload"]
    return {**base, "transcript": f"turn {turn}"}


def stored(app):
    """(events, deliveries) in the outbox, read on a session of its own."""
    with app.app_context():
        counts = (db.session.scalar(select(func.count()).select_from(Event)),
                  db.session.scalar(select(func.count()).select_from(Delivery)))
        db.session.remove()
        return counts
