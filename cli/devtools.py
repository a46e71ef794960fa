"""Developer tools: publish events, simulate a whole call, listen like a receiver."""

import json
import random
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click
from flask.cli import AppGroup, with_appcontext

from events import EVENT_TYPES, InvalidEvent
from models.settings import get_settings
from tasks.publish import publish_event

events_cli = AppGroup("events", help="Publish call events by hand.")

CUSTOMER_LINES = [
    "Hello, I'd like to check the status of my order.",
    "It's order number 4 8 1 5.",
    "Great, when will it arrive?",
    "Perfect, thank you very much.",
]
AI_LINES = [
    "Hello! Thanks for calling. How can I help you today?",
    "Let me look that up for you.",
    "Your order has shipped and is on its way.",
    "It should arrive tomorrow before noon.",
    "You're welcome. Have a nice day!",
]


@events_cli.command("publish")
@click.argument("event_type", type=click.Choice(EVENT_TYPES))
@click.option("--payload", required=True, help="The event's payload as a JSON object.")
@click.option("--timestamp", "timestamp_utc", type=int, help="Unix seconds (default: now).")
def publish(event_type: str, payload: str, timestamp_utc: int | None) -> None:
    """Publish one event as the engine would; print its id as JSON."""
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from None
    try:
        event_id = publish_event(event_type, data, timestamp_utc=timestamp_utc)
    except InvalidEvent as exc:
        raise click.BadParameter(str(exc), param_hint="--payload") from None
    click.echo(json.dumps(_published(event_id, event_type)))


def _published(event_id, event_type: str, **extra) -> dict:
    """One output line: published means queued in the outbox, not yet delivered."""
    line = {"id": event_id, "event_type": event_type, **extra, "published": event_id is not None}
    if event_id is None:
        line["note"] = "the integration does not want this event (switched off or not subscribed)"
    return line


def call_lifecycle(call_id: int, direction: str, transcripts: int) -> list[tuple[str, dict]]:
    """The events of one realistic call, in order, as (event_type, payload)."""
    ours, theirs = "+905555555554", "+90555" + str(random.randint(1000000, 9999999))
    caller, callee = (theirs, ours) if direction == "inbound" else (ours, theirs)
    source = "salprebox:SALPRE_" + "%08X" % random.getrandbits(32)
    party = {"from": caller, "to": callee, "direction": direction, "source": source, "call_id": call_id}
    call = {"id": call_id, "from": caller, "to": callee, "source": source, "direction": direction}
    events = [("call_initiated", dict(party)), ("call_ringing", dict(party)), ("call_answered", dict(party))]
    turns = [{"type": "ai", "message": AI_LINES[0]}]
    now = int(time.time())
    for i in range(transcripts):
        speaker = "customer" if i % 2 == 0 else "ai"
        lines = CUSTOMER_LINES if speaker == "customer" else AI_LINES[1:]
        text = lines[(i // 2) % len(lines)]
        stamp = str(now + i)
        events.append(("transcript", {"call": dict(call), "type": speaker, "transcript": text,
                                      "timestamp_utc": stamp}))
        turns.append({"type": speaker, "message": text, "utc_timestamp": stamp})
    events.append(("call_ended", {**party, "transcript": turns}))
    return events


@click.command("simulate-call")
@click.option("--transcripts", default=4, show_default=True, help="Transcript turns during the call.")
@click.option("--direction", type=click.Choice(["inbound", "outbound"]), default="outbound", show_default=True)
@click.option("--call-id", type=int, help="Default: a random id.")
@with_appcontext
def simulate_call(transcripts: int, direction: str, call_id: int | None) -> None:
    """Publish a whole call: initiated, ringing, answered, transcripts, ended."""
    call_id = call_id or random.randint(1000, 999999)
    for event_type, payload in call_lifecycle(call_id, direction, transcripts):
        event_id = publish_event(event_type, payload)
        click.echo(json.dumps(_published(event_id, event_type, call_id=call_id)))


class _ListenHandler(BaseHTTPRequestHandler):
    """Verifies each POST like a receiver would and prints one line per event."""

    secret: str = ""

    def do_POST(self):
        from standardwebhooks import Webhook, WebhookVerificationError

        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            Webhook(self.secret).verify(body, dict(self.headers))
            verdict = "verified"
            status = 200
        except WebhookVerificationError as exc:
            verdict = f"BAD SIGNATURE ({exc})"
            status = 401
        try:
            envelope = json.loads(body)
            payload = envelope.get("payload", {})
            call_id = payload.get("call_id") or (payload.get("call") or {}).get("id")
            summary = f"{envelope.get('event_type'):<15} call {call_id}"
            if envelope.get("event_type") == "transcript":
                summary += f"  {payload.get('type')}: {payload.get('transcript')}"
            if envelope.get("is_test"):
                summary += "  (test)"
        except (ValueError, AttributeError):
            summary = f"{len(body)} bytes, not JSON"
        click.echo(f"{time.strftime('%H:%M:%S')} {self.headers.get('webhook-id')}  {summary}  [{verdict}]")
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):  # one line per event is enough
        pass


def describe_repoint(before: tuple, url: str) -> str:
    """Say what ``listen`` changed in the settings, and how to undo it."""
    old_url, old_enabled, old_events = before
    if (old_url, old_enabled, sorted(old_events)) == (url, True, sorted(EVENT_TYPES)):
        return f"The integration already points at {url} with every event: nothing changed."
    was = (f"it was {old_url} ({'enabled' if old_enabled else 'disabled'}, "
           f"{len(old_events)} of {len(EVENT_TYPES)} events)") if old_url else "no URL was saved before"
    undo = (f"\nTo point it back: flask webhook set --url '{old_url}' "
            f"--{'enable' if old_enabled else 'disable'} --events {','.join(old_events) or 'all'}") if old_url else ""
    return (f"Changed the Custom Webhook settings: URL {url}, enabled, all {len(EVENT_TYPES)} events "
            f"({was}).{undo}\n(--no-configure leaves the settings alone.)")


@click.command("listen")
@click.option("--port", default=8765, show_default=True)
@click.option("--configure/--no-configure", default=None,
              help="Point the integration at this listener, all events on "
                   "(default: yes in development, no elsewhere).")
@with_appcontext
def listen(port: int, configure: bool | None) -> None:
    """Run a local receiver that verifies signatures and prints each event."""
    from flask import current_app

    from models import db
    from tasks.signing import generate_secret

    if configure is None:
        configure = current_app.config["HOOKLINE_ENV"] == "development"
    settings = get_settings()
    url = f"http://127.0.0.1:{port}/webhook"
    if configure:
        before = (settings.url, settings.enabled, list(settings.events or []))
        settings.url, settings.enabled, settings.events = url, True, list(EVENT_TYPES)
        if not settings.secret:
            settings.secret, settings.secret_shown = generate_secret(), True
        db.session.commit()
        click.echo(describe_repoint(before, url))
    if not settings.secret:
        raise click.ClickException("No signing secret yet: save a URL in the panel first.")
    _ListenHandler.secret = settings.secret
    server = ThreadingHTTPServer(("127.0.0.1", port), _ListenHandler)
    click.echo(f"Listening on {url} — verifying with {settings.secret[:10]}… (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
