"""E-mail alerts to the admins: an outbox of messages, one row per (alert, recipient)."""

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models import db, utcnow


class Alert(db.Model):
    """One alert e-mail to one admin, written when decided and sent (and retried) by a worker.

    ``key`` is unique: workers that decide the same alert at once insert it
    once; the losers' INSERT fails and they move on.
    """

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(400), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # disabled, failing, recovered
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    # A worker sending it holds it until then, so two workers never send it twice.
    claimed_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
