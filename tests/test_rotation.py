"""Signing secret rotation: a new secret shown once, both secrets sign during the overlap.

Deliveries go through the real drain and sender to a real receiver, and are
verified with the public `standardwebhooks` package, as a receiver would.
"""

import html
import json
import re
from datetime import timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from events import example_envelope
from models import db, utcnow
from models.settings import get_settings
from tasks import publish_event
from tasks.drain import drain
from tasks.queue import flush_rings

URL = "/settings/integrations/webhook"
ROTATE = URL + "/rotate-secret"


def deliver_one(app, receiver):
    """Publish an event and run a drain in-process; return the request the receiver got."""
    before = len(receiver.requests)
    with app.app_context():
        publish_event("call_initiated", example_envelope("call_initiated")["payload"])
        flush_rings()  # the publishes' wake-ups have gone out, as in a real run
        drain()
    return receiver.wait_for(before + 1)[-1]


def saved(app):
    with app.app_context():
        settings = get_settings()
        db.session.expunge(settings)
        return settings


def run(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def test_rotate_in_the_panel_shows_the_new_secret_once(app, auth_client, integration):
    auth_client.get(URL)  # the first secret's reveal is used up
    response = auth_client.post(ROTATE)
    assert response.status_code == 302
    settings = saved(app)
    new = settings.secret
    assert new != integration and new.startswith("whsec_")
    assert settings.previous_secret == integration
    overlap = settings.previous_secret_expires_at - utcnow()
    assert timedelta(hours=23, minutes=59) < overlap <= timedelta(hours=24)

    page = html.unescape(auth_client.get(URL).text)
    assert f'value="{new}"' in page and "will not be shown again" in page
    assert "both the new and the previous secret" in page  # the flash
    until = settings.previous_secret_expires_at.strftime("%Y-%m-%d %H:%M")
    assert re.search(rf"Previous secret\s+<code>{re.escape(integration[:10])}…</code> valid until\s+<time[^>]*>{until} UTC", page)
    again = auth_client.get(URL).text
    assert new not in again and integration not in again
    assert new[:10] in again  # only the hint from now on


def test_during_the_overlap_either_secret_verifies_the_same_request(app, auth_client, integration, receiver):
    auth_client.post(ROTATE)
    new = saved(app).secret
    request = deliver_one(app, receiver)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    body = json.loads(request.body)
    assert Webhook(new).verify(request.body, request.headers) == body
    assert Webhook(integration).verify(request.body, request.headers) == body


def test_the_test_button_signs_with_both_during_the_overlap(app, auth_client, integration, receiver):
    auth_client.post(ROTATE)
    new = saved(app).secret
    auth_client.post(URL + "/test", data={"event_type": "call_answered"}, headers={"HX-Request": "true"})
    [request] = receiver.requests
    Webhook(new).verify(request.body, request.headers)
    Webhook(integration).verify(request.body, request.headers)


def test_after_the_overlap_only_the_new_secret_signs(app, auth_client, integration, receiver):
    auth_client.post(ROTATE)
    with app.app_context():
        settings = get_settings()
        new = settings.secret
        settings.previous_secret_expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    request = deliver_one(app, receiver)
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(integration).verify(request.body, request.headers)
    # The panel no longer mentions it, and the expired secret is cleared from the database.
    assert "Previous secret" not in auth_client.get(URL).text
    settings = saved(app)
    assert settings.previous_secret is None and settings.previous_secret_expires_at is None


def test_rotating_again_keeps_at_most_two_secrets(app, auth_client, integration, receiver):
    auth_client.post(ROTATE)
    second = saved(app).secret
    auth_client.post(ROTATE)
    third = saved(app).secret
    request = deliver_one(app, receiver)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(third).verify(request.body, request.headers)
    Webhook(second).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(integration).verify(request.body, request.headers)


@pytest.fixture
def no_overlap(app_config):
    app_config["HOOKLINE_SECRET_OVERLAP_HOURS"] = 0
    return app_config


def test_zero_overlap_retires_the_old_secret_at_once(no_overlap, app, auth_client, integration, receiver):
    auth_client.post(ROTATE)
    settings = saved(app)
    assert settings.previous_secret is None
    request = deliver_one(app, receiver)
    Webhook(settings.secret).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(integration).verify(request.body, request.headers)


def test_overlap_hours_come_from_the_environment(tmp_path, monkeypatch):
    from config import load_config

    assert load_config(str(tmp_path), environ={})["HOOKLINE_SECRET_OVERLAP_HOURS"] == 24
    environ = {"HOOKLINE_SECRET_OVERLAP_HOURS": "2.5"}
    assert load_config(str(tmp_path), environ=environ)["HOOKLINE_SECRET_OVERLAP_HOURS"] == 2.5


def test_nothing_to_rotate_before_a_url_is_saved(app, auth_client):
    response = auth_client.post(ROTATE, follow_redirects=True)
    assert "no signing secret yet" in response.text
    assert saved(app).secret is None
    assert "Rotate secret" not in auth_client.get(URL).text


def test_panel_asks_for_confirmation(app, auth_client, integration):
    page = auth_client.get(URL).text
    # A disclosure, then the real (CSRF-protected) POST button inside it.
    assert re.search(r"<details[^>]*>\s*<summary[^>]*>Rotate secret…</summary>", page)
    assert re.search(r'<button type="submit" form="rotate-secret-form"[^>]*>Yes, rotate the secret</button>', page)
    assert re.search(r'<form method="post" action="/settings/integrations/webhook/rotate-secret" id="rotate-secret-form">\s*'
                     r'<input type="hidden" name="csrf_token"', page)


@pytest.fixture
def csrf_on(app_config):
    app_config["WTF_CSRF_ENABLED"] = True
    return app_config


def test_rotation_needs_a_csrf_token(csrf_on, app, client, admin, integration):
    from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', client.get("/login").text).group(1)
    client.post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": token})
    assert client.post(ROTATE).status_code == 400
    assert saved(app).secret == integration
    assert client.post(ROTATE, data={"csrf_token": token}).status_code == 302
    assert saved(app).secret != integration


def test_cli_rotate_secret_prints_the_new_secret_once(app, integration, receiver):
    result = run(app, "webhook", "rotate-secret")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    settings = saved(app)
    assert out["secret"] == settings.secret != integration
    assert "not be shown again" in out["secret_note"]
    assert out["previous_secret"] == integration[:10] + "…"
    assert out["previous_secret_valid_until"] == settings.previous_secret_expires_at.replace(microsecond=0).isoformat() + "Z"
    # Printed once: neither `show` nor the panel reveals it again.
    assert settings.secret_shown is True
    shown = run(app, "webhook", "show").output
    assert out["secret"] not in shown and integration not in shown
    assert json.loads(shown)["previous_secret_valid_until"] == out["previous_secret_valid_until"]
    request = deliver_one(app, receiver)
    Webhook(out["secret"]).verify(request.body, request.headers)
    Webhook(integration).verify(request.body, request.headers)


def test_cli_rotate_secret_before_any_secret_fails(app):
    result = run(app, "webhook", "rotate-secret")
    assert result.exit_code == 2
    assert "save a webhook URL first" in json.loads(result.output)["errors"]["secret"]


def test_show_drops_an_expired_previous_secret(app, integration):
    run(app, "webhook", "rotate-secret")
    with app.app_context():
        get_settings().previous_secret_expires_at = utcnow() - timedelta(minutes=1)
        db.session.commit()
    shown = json.loads(run(app, "webhook", "show").output)
    assert "previous_secret_valid_until" not in shown
    assert saved(app).previous_secret is None
