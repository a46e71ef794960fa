"""``flask webhook show|set|rotate-secret``: the integration from the shell, JSON out."""

import json
from datetime import timedelta

import click
from flask import current_app
from flask.cli import AppGroup

from cli.devtools import listen
from events import EVENT_TYPES
from forms import url_rules
from models.rules import check_events, check_headers, check_url, parse_header_line, unmask_rows
from models import db
from models.settings import apply_settings, clear_expired_secret, get_settings, rotate_secret
from tasks.signing import generate_secret


def settings_as_dict(settings) -> dict:
    """The settings as operators see them: header values and secret masked."""
    data = {
        "enabled": settings.enabled,
        "url": settings.url,
        "events": settings.events or [],
        "headers": [{"name": n, "value": v} for n, v in settings.masked_headers()],
        "secret": settings.secret_hint or None,
    }
    if settings.rotation_in_progress():
        data["previous_secret"] = settings.previous_secret_hint
        data["previous_secret_valid_until"] = _utc(settings.previous_secret_expires_at)
    return data


def _utc(moment) -> str:
    """A naive UTC datetime as ISO 8601 with a Z, e.g. ``2025-01-02T13:45:00Z``."""
    return moment.replace(microsecond=0).isoformat() + "Z"


def _echo_json(data: dict) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


webhook = AppGroup("webhook", help="Show or change the Custom Webhook integration.")
webhook.add_command(listen)


@webhook.command("show")
def show() -> None:
    """Print the settings as JSON (secret and header values masked)."""
    clear_expired_secret()  # an ended rotation's old secret need not linger
    db.session.commit()
    _echo_json(settings_as_dict(get_settings()))


@webhook.command("set")
@click.option("--url", help="The endpoint URL.")
@click.option("--enable/--disable", default=None, help="Switch the integration on or off.")
@click.option("--events", "events_arg", help="'all' or a comma-separated list of event types.")
@click.option("--header", "header_lines", multiple=True, help="'Name: value'; repeat for more. Replaces all headers.")
def set_(url, enable, events_arg, header_lines) -> None:
    """Change settings with the same rules as the panel; print the result as JSON."""
    settings = get_settings()
    enabled = settings.enabled if enable is None else enable
    url = settings.url or "" if url is None else url.strip()
    if events_arg is None:
        events = list(settings.events or [])
    elif events_arg.strip() == "all":
        events = list(EVENT_TYPES)
    else:
        events = [e.strip() for e in events_arg.split(",") if e.strip()]
    if header_lines:
        try:
            headers = [parse_header_line(line) for line in header_lines]
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--header") from None
        # A value copied from `webhook show` (masked) keeps the stored value of the same row.
        headers = unmask_rows([(n, v, i) for i, (n, v) in enumerate(headers)], settings.headers)
    else:
        headers = [tuple(h) for h in settings.headers or []]

    errors = {}
    if error := check_url(url, enabled=enabled, **url_rules()):
        errors["url"] = error
    if error := check_events(events, enabled=enabled):
        errors["events"] = error
    list_error, row_errors = check_headers(headers)
    if list_error:
        errors["header"] = list_error
    for (i, part), message in row_errors.items():
        errors[f"header[{i + 1}].{part}"] = message
    if errors:
        _echo_json({"errors": errors})
        raise SystemExit(2)  # nothing was written

    created = apply_settings(
        settings, enabled=enabled, url=url, events=events, headers=headers, new_secret=generate_secret
    )
    if created:
        settings.secret_shown = True  # shown here, once
    db.session.commit()
    result = settings_as_dict(settings)
    if created:
        result["secret"] = created
        result["secret_note"] = "Store this signing secret now; it will not be shown again."
    _echo_json(result)


@webhook.command("rotate-secret")
def rotate_secret_cmd() -> None:
    """Make a new signing secret and print it once, as JSON.

    The old secret keeps signing beside it for HOOKLINE_SECRET_OVERLAP_HOURS
    (default 24), so receivers can switch without missing a delivery.
    """
    settings = get_settings()
    hours = current_app.config["HOOKLINE_SECRET_OVERLAP_HOURS"]
    try:
        new = rotate_secret(settings, new_secret=generate_secret, overlap=timedelta(hours=hours))
    except ValueError as exc:
        _echo_json({"errors": {"secret": str(exc)}})
        raise SystemExit(2) from None
    settings.secret_shown = True  # shown here, once
    db.session.commit()
    result = {"secret": new, "secret_note": "Store this signing secret now; it will not be shown again."}
    if settings.previous_secret:
        result["previous_secret"] = settings.previous_secret_hint
        result["previous_secret_valid_until"] = _utc(settings.previous_secret_expires_at)
    _echo_json(result)
