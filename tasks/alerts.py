"""E-mail alerts: tell every admin who has not opted out before events are lost.

Three alerts: the integration was switched off automatically (naming the URL
and the reason); it has been failing for HOOKLINE_ALERT_AFTER_SECONDS (an
hour; once, then not again until it recovers); it recovered (once).

Sent from the worker, never from a web request: a thread of its own in
``flask worker`` (run_forever), so a slow or absent SMTP server never holds
up a delivery or the tick. Deciding writes one ``alerts`` row per alert and
recipient, with a unique key, so workers deciding at once write it once;
sending sends the unsent rows and, when the SMTP server fails, logs it and
tries again next round (for a day at most).

Configured by MAIL_SERVER, MAIL_PORT, MAIL_USERNAME, MAIL_PASSWORD,
MAIL_USE_TLS (STARTTLS) and MAIL_FROM. Without MAIL_SERVER alerts are off,
except in development, where they are printed to the worker's console.
"""

import logging
import smtplib
import sys
import threading
from datetime import timedelta
from email.message import EmailMessage

from flask import current_app
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from models import db, utcnow
from models.alerts import Alert
from models.settings import get_settings
from models.users import User
from tasks import watch

log = logging.getLogger(__name__)

#: An alert the SMTP server keeps refusing is given up after this long.
GIVE_UP = timedelta(days=1)


def mode(config) -> str:
    """How alerts go out: "smtp", "console" (development without MAIL_SERVER) or "off"."""
    if config.get("MAIL_SERVER"):
        return "smtp"
    return "console" if config["HOOKLINE_ENV"] == "development" else "off"


def _admins() -> list[str]:
    """Every admin who has not opted out of alerts."""
    return list(db.session.scalars(select(User.email).where(User.alerts_opt_out.is_(False)).order_by(User.id)))


def _write(kind: str, episode: str, subject: str, body: str) -> int:
    """Write an alert for each admin, once per ``episode``; return how many rows were new."""
    new = 0
    for email in _admins():
        try:
            with db.session.begin_nested():
                db.session.add(Alert(key=f"{kind}:{episode}:{email}", kind=kind, recipient=email,
                                     subject=subject, body=body))
            new += 1
        except IntegrityError:
            pass  # decided already, here or by another worker
    db.session.commit()
    return new


def _last_state_alert() -> Alert | None:
    """The latest failing or recovered alert: is a failing episode open?"""
    return db.session.scalars(select(Alert).where(Alert.kind.in_(("failing", "recovered")))
                              .order_by(Alert.id.desc()).limit(1)).first()


def decide() -> int:
    """Write the alerts the integration's state calls for now; return how many rows were written."""
    settings = get_settings()
    if settings.holds_events:
        return _write(
            "disabled", settings.disabled_at.isoformat(),
            "Hookline stopped sending your webhook",
            f"Hookline switched off your Custom Webhook integration on "
            f"{settings.disabled_at:%Y-%m-%d %H:%M} UTC.\n\nURL: {settings.url}\nReason: "
            f"{settings.disabled_reason}\n\nNew events are kept as held (not sent). Fix the endpoint, then "
            "open Settings > Integrations > Custom Webhook and choose \"Re-enable and send them\" "
            "(or discard them).\n")
    if not settings.enabled:
        return 0
    health = watch.check()
    last = _last_state_alert()
    episode_open = last is not None and last.kind == "failing"
    after = current_app.config["HOOKLINE_ALERT_AFTER_SECONDS"]
    if health.failing and not episode_open and (utcnow() - health.since).total_seconds() >= after:
        return _write(
            "failing", f"after-{last.id if last else 0}",
            "Your webhook deliveries are failing",
            f"Deliveries to {settings.url} have been failing since {health.since:%Y-%m-%d %H:%M} UTC.\n\n"
            f"Deliveries affected: {health.affected}\nLast error: {health.last_error or 'none recorded'}\n\n"
            "Hookline keeps retrying for the window chosen in the panel; after that they fail. "
            "See the delivery log in Settings > Integrations > Custom Webhook.\n")
    if episode_open and not health.failing:
        return _write(
            "recovered", f"after-{last.id}",
            "Your webhook deliveries have recovered",
            f"Deliveries to {settings.url} are going through again (checked {utcnow():%Y-%m-%d %H:%M} UTC).\n")
    return 0


def _message(alert: Alert, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = alert.recipient
    message["Subject"] = alert.subject
    message.set_content(alert.body)
    return message


def send_due() -> int:
    """Send every unsent alert; return how many went out. An SMTP failure is logged and left for the next round."""
    config = current_app.config
    how = mode(config)
    if how == "off":
        return 0
    now = utcnow()
    # Claim first, in a statement of its own, then send outside any transaction:
    # two workers never send one alert twice, and no lock is held while SMTP talks.
    hold = now + timedelta(seconds=2 * config["MAIL_TIMEOUT"] + 30)
    ids = db.session.scalars(
        update(Alert).where(Alert.sent_at.is_(None), Alert.created_at > now - GIVE_UP,
                            or_(Alert.claimed_until.is_(None), Alert.claimed_until < now))
        .values(claimed_until=hold).returning(Alert.id)).all()
    db.session.commit()
    if not ids:
        return 0
    pending = db.session.scalars(select(Alert).where(Alert.id.in_(ids)).order_by(Alert.id)).all()
    sender = config.get("MAIL_FROM") or "hookline@localhost"
    sent = 0
    try:
        if how == "console":
            for alert in pending:
                print(f"--- e-mail alert (MAIL_SERVER is not set) ---\n{_message(alert, sender)}", file=sys.stdout,
                      flush=True)
                alert.sent_at, sent = utcnow(), sent + 1
        else:
            with smtplib.SMTP(config["MAIL_SERVER"], config["MAIL_PORT"], timeout=config["MAIL_TIMEOUT"]) as smtp:
                if config["MAIL_USE_TLS"]:
                    smtp.starttls()
                if config.get("MAIL_USERNAME"):
                    smtp.login(config["MAIL_USERNAME"], config.get("MAIL_PASSWORD") or "")
                for alert in pending:
                    smtp.send_message(_message(alert, sender))
                    alert.sent_at, sent = utcnow(), sent + 1
    except (OSError, smtplib.SMTPException) as error:
        log.warning("could not send alert e-mails via %s:%s (%s); retrying next round",
                    config.get("MAIL_SERVER"), config.get("MAIL_PORT"), error)
        for alert in pending:
            if alert.sent_at is None:
                alert.attempts += 1
                alert.last_error = f"{type(error).__name__}: {error}"[:500]
                alert.claimed_until = None
    db.session.commit()
    return sent


def run_once(app) -> None:
    """One round: decide, then send. Never raises (logged instead)."""
    try:
        with app.app_context():
            decide()
            send_due()
    except Exception:
        log.warning("alert round failed; trying again next round", exc_info=True)


def run_forever(app, stop: threading.Event) -> None:
    """The worker's alert thread: a round every HOOKLINE_ALERT_SECONDS until ``stop``."""
    interval = app.config["HOOKLINE_ALERT_SECONDS"]
    while not stop.wait(interval):
        run_once(app)
