"""The Custom Webhook settings form: validation, saving, masking, the secret."""

import re

import pytest

from events import EVENT_TYPES
from models import db
from models.settings import WebhookSettings, get_settings

URL = "/settings/integrations/webhook"


def form_data(**overrides):
    """A valid submission; overrides replace fields (None removes one)."""
    data = {
        "enabled": "y",
        "url": "https://hooks.example.com/calls",
        "events": ["call_initiated", "call_ended"],
        "headers-0-name": "X-Api-Key",
        "headers-0-value": "sk_live_1234567890abcd",
        "save": "Save",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def saved(app) -> WebhookSettings:
    with app.app_context():
        settings = get_settings()
        db.session.expunge(settings)
        return settings


def field_error(html: str, field_id: str) -> str:
    """The text of the error element linked to a field, as a screen reader finds it."""
    match = re.search(rf'id="{re.escape(field_id)}-error">\s*(.*?)\s*</div>', html, re.S)
    assert match, f"no error shown for {field_id}"
    return match.group(1)


def test_page_shows_the_seed_form(auth_client):
    html = auth_client.get(URL).text
    assert "Settings</li>" in html and "Integrations</li>" in html and "Custom Webhook</li>" in html
    for label in ["Enabled", "Webhook URL", "Additional Headers (Optional)", "Subscribe to Events", "Save",
                  "Test Webhook Integration"]:
        assert label in html
    for name in EVENT_TYPES:
        assert f'value="{name}"' in html
    assert "Select all" in html and "Select none" in html


def test_save_keeps_values_and_masks_header(auth_client, app):
    response = auth_client.post(URL, data=form_data())
    assert response.status_code == 302
    settings = saved(app)
    assert settings.enabled is True
    assert settings.url == "https://hooks.example.com/calls"
    assert settings.events == ["call_initiated", "call_ended"]
    assert settings.headers == [["X-Api-Key", "sk_live_1234567890abcd"]]

    html = auth_client.get(URL).text
    assert "Settings saved." in html
    assert "sk_live_1234567890abcd" not in html
    assert 'value="••••abcd"' in html
    assert 'value="X-Api-Key"' in html


def test_resaving_masked_value_keeps_the_stored_one(auth_client, app):
    auth_client.post(URL, data=form_data())
    # The page renders each saved row with its row number in a hidden field.
    assert 'name="headers-0-saved_row" type="hidden" value="0"' in auth_client.get(URL).text
    auth_client.post(URL, data=form_data(**{"headers-0-value": "••••abcd", "headers-0-saved_row": "0",
                                            "url": "https://other.example.com/"}))
    settings = saved(app)
    assert settings.url == "https://other.example.com/"
    assert settings.headers == [["X-Api-Key", "sk_live_1234567890abcd"]]
    # A new value replaces it.
    auth_client.post(URL, data=form_data(**{"headers-0-value": "new-secret-value-9999"}))
    assert saved(app).headers == [["X-Api-Key", "new-secret-value-9999"]]


def test_empty_header_rows_are_dropped_and_rows_can_be_removed(auth_client, app):
    data = form_data(**{"headers-1-name": "X-Tenant", "headers-1-value": "acme-corp",
                        "headers-5-name": "", "headers-5-value": ""})
    auth_client.post(URL, data=data)
    assert saved(app).headers == [["X-Api-Key", "sk_live_1234567890abcd"], ["X-Tenant", "acme-corp"]]
    # Removing a row (the browser drops its inputs) removes the header; the other keeps its value.
    auth_client.post(URL, data=form_data(**{"headers-0-name": None, "headers-0-value": None,
                                            "headers-1-name": "X-Tenant", "headers-1-value": "••••corp",
                                            "headers-1-saved_row": "1"}))
    assert saved(app).headers == [["X-Tenant", "acme-corp"]]


def test_add_header_without_javascript_adds_a_row_and_saves_nothing(auth_client, app):
    response = auth_client.post(URL, data=form_data(save=None, add_header="Add header"))
    assert response.status_code == 200
    assert 'name="headers-1-name"' in response.text
    assert 'value="sk_live_1234567890abcd"' in response.text  # what was typed is kept
    assert saved(app).url is None


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"url": ""}, "url", "Enter the URL"),
        ({"url": "ftp://example.com/x"}, "url", "must start with https://"),
        ({"url": "https://example.com/" + "a" * 2048}, "url", "the limit is 2,048"),
        ({"url": "https://exa mple.com/"}, "url", "spaces"),
        ({"url": "https:///nohost"}, "url", "no host"),
        ({"url": "https://user:pw@example.com/"}, "url", "credentials"),
        ({"events": []}, "events", "at least one event"),
        ({"events": ["call_initiated", "call_exploded"]}, "events", "Unknown event type: call_exploded"),
        ({"headers-0-name": "X Api Key"}, "headers-0-name", "not a valid header name"),
        ({"headers-0-name": "X-Api-Key:"}, "headers-0-name", "not a valid header name"),
        ({"headers-0-name": "X-Evil\r\nInjected"}, "headers-0-name", "not a valid header name"),
        ({"headers-0-value": "abc\r\nX-Injected: 1"}, "headers-0-value", "line breaks"),
        ({"headers-0-value": "abc\nX-Injected: 1"}, "headers-0-value", "line breaks"),
        ({"headers-0-value": "abc\x00def"}, "headers-0-value", "NUL"),
        ({"headers-0-value": "x" * 4097}, "headers-0-value", "longer than 4,096"),
        ({"headers-0-value": ""}, "headers-0-value", "Enter a value"),
        ({"headers-0-name": ""}, "headers-0-name", "Enter a header name"),
        ({"headers-1-name": "x-api-key", "headers-1-value": "dup"}, "headers-1-name", "must be unique"),
    ],
)
def test_invalid_input_names_the_field_and_saves_nothing(auth_client, app, overrides, field, message):
    response = auth_client.post(URL, data=form_data(**overrides))
    assert response.status_code == 400
    assert message in field_error(response.text, field)
    assert "Nothing was saved" in response.text
    settings = saved(app)
    assert settings.url is None and settings.headers == [] and settings.secret is None


@pytest.mark.parametrize(
    "name",
    ["Host", "content-type", "Content-Length", "Transfer-Encoding", "Connection", "User-Agent",
     "webhook-id", "Webhook-Signature", "webhook-timestamp", "webhook-anything"],
)
def test_reserved_header_names_are_refused(auth_client, app, name):
    response = auth_client.post(URL, data=form_data(**{"headers-0-name": name}))
    assert response.status_code == 400
    assert "set by Hookline" in field_error(response.text, "headers-0-name")
    assert saved(app).headers == []


def test_at_most_twenty_headers(auth_client, app):
    data = form_data()
    for i in range(21):
        data[f"headers-{i}-name"] = f"X-H{i}"
        data[f"headers-{i}-value"] = f"value-{i}"
    response = auth_client.post(URL, data=data)
    assert response.status_code == 400
    assert "At most 20 headers" in response.text
    data.pop("headers-20-name"), data.pop("headers-20-value")
    assert auth_client.post(URL, data=data).status_code == 302
    assert len(saved(app).headers) == 20


def test_http_url_refused_when_https_required(app_config, auth_client, app):
    app.config["HOOKLINE_REQUIRE_HTTPS"] = True
    response = auth_client.post(URL, data=form_data(url="http://hooks.example.com/"))
    assert response.status_code == 400
    assert "must use https://" in field_error(response.text, "url")


def test_http_url_allowed_when_https_not_required(auth_client, app):
    assert app.config["HOOKLINE_REQUIRE_HTTPS"] is False
    assert auth_client.post(URL, data=form_data(url="http://hooks.example.com/")).status_code == 302


def test_disabled_integration_may_be_saved_without_url_or_events(auth_client, app):
    response = auth_client.post(URL, data=form_data(enabled=None, url="", events=[]))
    assert response.status_code == 302
    settings = saved(app)
    assert settings.enabled is False and settings.secret is None


def test_secret_is_created_on_first_url_and_shown_exactly_once(auth_client, app):
    assert "whsec_" not in auth_client.get(URL).text
    auth_client.post(URL, data=form_data())
    secret = saved(app).secret
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret)

    first = auth_client.get(URL).text
    assert secret in first and "will not be shown again" in first
    second = auth_client.get(URL).text
    assert secret not in second
    assert secret[:10] in second  # the hint stays
    # Saving again does not make a new secret.
    auth_client.post(URL, data=form_data(url="https://changed.example.com/"))
    assert saved(app).secret == secret
    assert secret not in auth_client.get(URL).text


def test_secret_and_header_values_are_encrypted_at_rest(auth_client, app):
    from sqlalchemy import text

    auth_client.post(URL, data=form_data())
    with app.app_context():
        row = db.session.execute(text("SELECT secret, headers FROM webhook_settings")).one()
        secret = get_settings().secret
    assert secret.startswith("whsec_")
    assert "whsec_" not in row.secret and secret not in row.secret
    assert "sk_live_1234567890abcd" not in row.headers and "X-Api-Key" not in row.headers


def test_encryption_key_can_be_rotated(app_config, auth_client, app):
    from app import create_app

    auth_client.post(URL, data=form_data())
    secret = saved(app).secret
    rotated = create_app({**app_config, "HOOKLINE_ENCRYPTION_KEY": "new-key-material, " + app_config["SECRET_KEY"]})
    with rotated.app_context():
        assert get_settings().secret == secret
    wrong = create_app({**app_config, "HOOKLINE_ENCRYPTION_KEY": "some-other-key"})
    with wrong.app_context(), pytest.raises(RuntimeError, match="HOOKLINE_ENCRYPTION_KEY"):
        get_settings()


def test_a_resolver_that_does_not_answer_does_not_hold_the_save(auth_client, app, monkeypatch):
    """A lost DNS answer costs getaddrinfo the resolver's 5 s per try: the form waits 2 s at most."""
    import socket
    import threading
    import time

    from tasks import netguard

    answer = threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def silent_resolver(host, *args, **kwargs):
        if host == "hooks.slow-dns.example.com":
            answer.wait(30)  # until the test ends: a resolver that never answers meanwhile
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", silent_resolver)
    try:
        started = time.monotonic()
        response = auth_client.post(URL, data=form_data(url="https://hooks.slow-dns.example.com/calls"))
        waited = time.monotonic() - started
    finally:
        answer.set()
    assert response.status_code == 302  # saved: the sender checks the address when it connects
    assert saved(app).url == "https://hooks.slow-dns.example.com/calls"
    assert netguard.FORM_RESOLVE_SECONDS <= waited < netguard.FORM_RESOLVE_SECONDS + 2
