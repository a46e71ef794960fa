"""The one WebhookSettings row: the tenant's Custom Webhook integration."""

from datetime import datetime, timedelta

from sqlalchemy import JSON, String, Text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from models import db, utcnow
from models.crypto import EncryptedJSON, EncryptedText
from models.rules import mask_value

SETTINGS_ID = 1
#: How much of the signing secret the panel shows after the first reveal.
SECRET_PREFIX_SHOWN = 10


class WebhookSettings(db.Model):
    """Single-tenant configuration: one row, id 1."""

    __tablename__ = "webhook_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=False)
    url: Mapped[str | None] = mapped_column(String(2048))
    # Subscribed event types, e.g. ["call_initiated", "call_ended"].
    events: Mapped[list] = mapped_column(JSON, default=list)
    # Extra request headers as [[name, value], ...] in the admin's order.
    # Secrets at rest: header values (API keys) and signing secrets are
    # stored encrypted (models/crypto.py); Python code sees plain values.
    headers: Mapped[list] = mapped_column(EncryptedJSON, default=list)
    secret: Mapped[str | None] = mapped_column(EncryptedText)
    # False until the panel (or CLI) has shown the whole secret once.
    secret_shown: Mapped[bool] = mapped_column(default=False)
    secret_created_at: Mapped[datetime | None]
    # During a rotation the replaced secret keeps signing (beside the new one)
    # until previous_secret_expires_at, so receivers can switch without a gap.
    previous_secret: Mapped[str | None] = mapped_column(EncryptedText)
    previous_secret_expires_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Set when Hookline switched the integration off by itself (410 Gone, or
    # everything failing for a day); shown as a banner until re-enabled.
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None]
    # "Keep retrying for": a key of tasks.retry.WINDOWS.
    retry_window: Mapped[str] = mapped_column(String(8), default="40m", server_default="40m")

    def wants(self, event_type: str) -> bool:
        """True when a new event of this type should be delivered."""
        return wants(self.enabled, self.url, self.events, event_type)

    @property
    def holds_events(self) -> bool:
        """Switched off by Hookline itself (not by an admin): new events are stored as held, not dropped."""
        return not self.enabled and self.disabled_reason is not None

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The secrets that sign a delivery right now: [new, old] during a rotation."""
        if not self.secret:
            return []
        if self.rotation_in_progress(now):
            return [self.secret, self.previous_secret]
        return [self.secret]

    def rotation_in_progress(self, now: datetime | None = None) -> bool:
        """True while the previous secret still signs beside the current one."""
        return bool(
            self.previous_secret
            and self.previous_secret_expires_at
            and (now or utcnow()) < self.previous_secret_expires_at
        )

    @property
    def previous_secret_hint(self) -> str:
        """The first characters of the previous secret (rotation in progress)."""
        if not self.previous_secret:
            return ""
        return self.previous_secret[:SECRET_PREFIX_SHOWN] + "…"

    @property
    def secret_hint(self) -> str:
        """The first characters of the secret, for the panel and `webhook show`."""
        if not self.secret:
            return ""
        return self.secret[:SECRET_PREFIX_SHOWN] + "…"

    def masked_headers(self) -> list[tuple[str, str]]:
        """The custom headers with each value masked except its last characters."""
        return [(name, mask_value(value)) for name, value in self.headers or []]




def wants(enabled, url, events, event_type: str) -> bool:
    """The one rule for "deliver this event?": switched on, a URL, the type subscribed."""
    return bool(enabled and url and event_type in (events or []))


def keeps(enabled, disabled_reason, url, events, event_type: str) -> bool:
    """Store this event? Wanted (see :func:`wants`), or held while Hookline has switched the integration off itself."""
    return wants(enabled or disabled_reason is not None, url, events, event_type)


#: Why a claimed delivery is set aside as held, not cancelled: Hookline
#: itself switched the integration off (see tasks.held).
HELD_REASON = "Held: Hookline switched the integration off before this was sent; re-enable to send it."


def refusal(settings, event_type: str, is_test: bool) -> str | None:
    """Why the settings read at send time refuse a claimed delivery, if they do (HELD_REASON: set it aside).

    The same rule as :func:`wants`, said in words for the log; a test
    delivery (the Test button) is sent whatever is subscribed.
    """
    if not settings.enabled:
        if settings.holds_events and settings.url and not is_test:
            return HELD_REASON
        return "Cancelled: the integration was disabled before this was sent."
    if not settings.url:
        return "Cancelled: no webhook URL is configured."
    if event_type not in (settings.events or []) and not is_test:
        return f"Cancelled: {event_type} is no longer subscribed."
    return None


def wants_sql(dialect: str, event_type: str = ":event_type") -> str:
    """:func:`keeps` as an SQL condition on the settings row, for the SQL expression ``event_type``.

    Publish puts it in the event's INSERT ... SELECT, so the check and the
    write are one statement and never disagree with a save committed in
    between (a separate read cost ~0.1-0.2 ms per publish under load). Read
    the plain columns only: nothing encrypted is involved. On PostgreSQL the
    JSON list is tested with jsonb containment, which is simply false for a
    JSON null instead of an error.
    """
    if dialect == "postgresql":
        subscribed = f"s.events::jsonb @> jsonb_build_array(CAST({event_type} AS text))"
    else:
        subscribed = f"EXISTS (SELECT 1 FROM json_each(s.events) WHERE json_each.value = {event_type})"
    return (
        f"EXISTS (SELECT 1 FROM webhook_settings AS s WHERE s.id = {SETTINGS_ID}"
        f" AND (s.enabled OR s.disabled_reason IS NOT NULL) AND s.url <> '' AND {subscribed})"
    )


#: A new delivery's status, read from the settings row in the same statement
#: as the event's INSERT: pending, or held while auto-disabled (only then is a
#: disabled integration's event stored at all, see wants_sql).
NEW_STATUS_SQL = (f"CASE WHEN EXISTS (SELECT 1 FROM webhook_settings AS s WHERE s.id = {SETTINGS_ID}"
                  " AND s.enabled) THEN 'pending' ELSE 'held' END")


def get_settings() -> WebhookSettings:
    """Load the settings row, creating the empty one on first use."""
    settings = db.session.get(WebhookSettings, SETTINGS_ID)
    if settings is None:
        settings = WebhookSettings(id=SETTINGS_ID, enabled=False, events=[], headers=[])
        db.session.add(settings)
        try:
            db.session.commit()
        except IntegrityError:
            # Another process created it between our read and write.
            db.session.rollback()
            settings = db.session.get(WebhookSettings, SETTINGS_ID)
    return settings


def apply_settings(settings, *, enabled, url, events, headers, new_secret) -> str | None:
    """Write validated values onto ``settings``; the caller commits.

    ``headers`` hold real values: callers replace kept masks first
    (:func:`models.rules.unmask_rows`).
    Returns the signing secret when this save created it (the first save of
    a URL), so the caller can show it once; otherwise None.
    """
    settings.enabled = enabled
    if enabled:
        # Switching it on by hand ends an automatic disable.
        settings.disabled_reason = settings.disabled_at = None
    settings.url = url or None
    settings.events = list(events)
    settings.headers = [[n, v] for n, v in headers]
    if settings.url and not settings.secret:
        settings.secret = new_secret()
        settings.secret_shown = False
        settings.secret_created_at = utcnow()
        return settings.secret
    return None


def rotate_secret(settings, *, new_secret, overlap: timedelta) -> str:
    """Replace the signing secret; the old one keeps signing for ``overlap``.

    The caller commits. Returns the new secret. Raises ValueError when there
    is no secret yet (it is created with the first saved URL). Rotating
    again during an overlap retires the oldest secret at once: at most two
    secrets ever sign a delivery.
    """
    if not settings.secret:
        raise ValueError("There is no signing secret yet: save a webhook URL first.")
    now = utcnow()
    if overlap > timedelta(0):
        settings.previous_secret = settings.secret
        settings.previous_secret_expires_at = now + overlap
    else:
        settings.previous_secret = None
        settings.previous_secret_expires_at = None
    settings.secret = new_secret()
    settings.secret_shown = False
    settings.secret_created_at = now
    return settings.secret


def clear_expired_secret() -> None:
    """Forget a previous secret whose overlap has ended; the caller commits.

    signing_secrets() already ignores it; this only keeps it from lingering
    in the database. A conditional UPDATE rather than an attribute write, so
    a process holding stale settings can never erase the previous secret of
    a rotation made meanwhile.
    """
    db.session.execute(
        update(WebhookSettings)
        .where(
            WebhookSettings.id == SETTINGS_ID,
            WebhookSettings.previous_secret_expires_at <= utcnow(),
        )
        .values(previous_secret=None, previous_secret_expires_at=None)
        .execution_options(synchronize_session="fetch")
    )
