"""The "Test Webhook Integration" button: one signed test delivery, sent now.

The test goes through the same Sender, signing and custom headers as real
deliveries (SSRF rules, deadline, no redirects), but synchronously in the
web request, so it works with no worker running. It is recorded in the
delivery log as a test: an Event, a final Delivery and its one Attempt,
written in one transaction after the send.
"""

import time
from dataclasses import dataclass
from http import HTTPStatus

from flask import current_app
from sqlalchemy.exc import DBAPIError

from events import call_id_of, example_envelope
from extensions import get_sender
from models import db, utcnow
from models.events import Attempt, Delivery, Event, new_event_id
from tasks import attempts, rollups, stats
from tasks.publish import envelope_body

#: How much of a failing receiver's reply the panel shows.
BODY_EXCERPT_BYTES = 1024


class CannotTest(Exception):
    """The saved settings do not allow a test yet; the message says why."""


def send_test(settings, event_type: str) -> Delivery:
    """Send ``event_type``'s catalog example with ``is_test: true`` to the saved URL.

    Returns the recorded Delivery (its one Attempt holds the outcome),
    recorded by the same recorder as real deliveries; a test is never
    retried. Raises CannotTest when no URL or signing secret is saved.
    """
    if not settings.url:
        raise CannotTest("Save a webhook URL first: the test is sent to the saved URL.")
    if not settings.signing_secrets():
        raise CannotTest("There is no signing secret yet: save the settings to create one.")

    payload = example_envelope(event_type)["payload"]
    # The example's payload as the catalog shows it, but a current timestamp:
    # receivers reject signatures older than a few minutes as replays.
    now = int(time.time())
    body = envelope_body(event_type, now, payload, True)
    event = Event(id=new_event_id(), event_type=event_type, call_id=call_id_of(event_type, payload),
                  timestamp_utc=now, is_test=True, body=body)
    header_log = attempts.HeaderLog(current_app.config["HOOKLINE_USER_AGENT"], settings.headers or [])
    out = attempts.prepare(None, 1, event.id, body.encode("utf-8"), settings, header_log)
    started = utcnow()
    result = get_sender().post(out.url, out.body, out.signed, out.custom)
    recorded = attempts.record(out, result, (), started=started, final=True)
    try:
        return _store(event, recorded)
    except DBAPIError as error:
        # The database refused what the receiver sent back: log the test without it.
        db.session.rollback()
        event = Event(**{key: getattr(event, key) for key in ("id", "event_type", "call_id", "timestamp_utc",
                                                             "is_test", "body")})
        return _store(event, recorded.stripped(error))


def _store(event: Event, recorded: attempts.Recorded) -> Delivery:
    """Write the test's Event, final Delivery, Attempt and roll-up in one transaction; return the Delivery.

    The stats cache is forgotten afterwards, so the panel shows the test at once.
    """
    change = {key: value for key, value in recorded.change.items() if key != "delivery_id"}
    delivery = Delivery(event=event, event_type=event.event_type, call_id=event.call_id, is_test=True, **change)
    attempt = Attempt(delivery=delivery, **{key: value for key, value in recorded.attempt.items()
                                            if key != "delivery_id"})
    db.session.add_all([event, delivery, attempt])
    rollups.add_batch([recorded.attempt], [recorded.change])
    db.session.commit()
    stats.forget()
    return delivery


# -- saying what happened, in plain words -------------------------------------


@dataclass
class Outcome:
    """What the panel says about a test: a Bootstrap level and a few sentences."""

    level: str  # "success", "warning" or "danger"
    headline: str
    detail: str | None = None
    note: str | None = None
    body_excerpt: str | None = None


# What an admin can do about each failure.
_ADVICE = {
    "dns": ("DNS name not found", "Check the host name in the webhook URL."),
    "refused": (
        "connection refused",
        "Nothing accepted the connection at that host and port: is your server running, and is the port right?",
    ),
    "tls": (
        "TLS certificate problem",
        "The certificate must be valid for the URL's host name and issued by a public certificate authority.",
    ),
    "timeout": (
        "timed out",
        "Your endpoint must answer within the deadline: reply 200 first and do slow work afterwards.",
    ),
    "redirect": (
        "redirect not followed",
        "Hookline never follows redirects: save the final URL of your endpoint instead.",
    ),
    "address_not_allowed": (
        "address not allowed",
        "Webhooks are only sent to public internet addresses, not to private, loopback or link-local ones.",
    ),
    "connection": ("connection failed", None),
}


def _status_text(code: int) -> str:
    """``200`` → ``"200 OK"``; unknown codes stay bare."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _excerpt(body: str | None) -> str | None:
    """The first KiB of a reply body (cut on a character boundary)."""
    if not body:
        return None
    return body.encode("utf-8")[:BODY_EXCERPT_BYTES].decode("utf-8", errors="ignore")


def describe(attempt) -> Outcome:
    """Turn a recorded Attempt (or a SendResult) into what the panel shows.

    Only 200 is the spec's success ("Your server should respond with a 200
    OK"); another 2xx was accepted, and real deliveries count it as
    delivered, but the admin is told the spec expects 200.
    """
    took = f"{attempt.duration_ms:.0f} ms"
    if attempt.ok and attempt.status_code == 200:
        return Outcome("success", f"Received: {_status_text(200)} in {took}")
    if attempt.ok:
        return Outcome(
            "warning",
            f"Accepted ({_status_text(attempt.status_code)}) in {took} — the spec expects 200",
            note="Real deliveries count any 2xx answer as delivered, but the integration "
            "guide asks your server to respond with 200 OK: change it to be safe.",
        )
    if attempt.error_kind == "http_status":
        return Outcome(
            "danger",
            f"Failed: your endpoint answered {_status_text(attempt.status_code)} after {took}",
            detail="Your server should respond with 200 OK to acknowledge the request.",
            body_excerpt=_excerpt(attempt.response_body),
        )
    reason, advice = _ADVICE.get(attempt.error_kind, ("connection failed", None))
    message = attempt.error_message or ""
    if attempt.error_kind == "timeout" and message:
        reason = message[:1].lower() + message[1:]  # "timed out after 10 s"
    elif attempt.error_kind in ("dns", "tls") and ":" in message:
        reason = message.split(":", 1)[0]  # e.g. "TLS handshake failed"
    detail = attempt.error_message
    if advice:
        detail = f"{detail}. {advice}" if detail else advice
    return Outcome("danger", f"Failed: {reason}", detail=detail)
