"""One rule set for the integration's settings: what the panel or the CLI saves is what the
sender sends (issue 18, item 1)."""

import json

import pytest

from models import db
from models.settings import get_settings
from tasks.sender import RESERVED_HEADERS, build_headers
from tests.test_settings_panel import URL, field_error, form_data, saved

DROPPED_NAMES = ["Accept-Encoding", "TE", "Upgrade", "Keep-Alive", "Trailer", "Expect"]
DROPPED_VALUES = ["Bearer tökén€", "a\x01b", "a\x0bb", "a\x7fb", "a\u2028b"]


def sent_custom(headers):
    """The custom headers the sender puts on the wire for these saved rows."""
    built = build_headers("Hookline/test", {}, headers)
    return [(n, v) for n, v in built.items() if n not in ("Content-Type", "User-Agent")]


@pytest.mark.parametrize("name", DROPPED_NAMES)
def test_the_panel_refuses_a_name_the_sender_would_drop(auth_client, app, name):
    assert sent_custom([(name, "x")]) == []
    response = auth_client.post(URL, data=form_data(**{"headers-0-name": name}))
    assert response.status_code == 400
    assert "is set by Hookline and cannot be replaced" in field_error(response.text, "headers-0-name")
    assert saved(app).headers == []


@pytest.mark.parametrize("value", DROPPED_VALUES)
def test_the_panel_refuses_a_value_the_sender_would_drop(auth_client, app, value):
    assert sent_custom([("X-Api-Key", value)]) == []
    response = auth_client.post(URL, data=form_data(**{"headers-0-value": value}))
    assert response.status_code == 400
    error = field_error(response.text, "headers-0-value")
    assert ("use ASCII; encode other text, e.g. base64" in error) or ("control characters" in error)
    assert saved(app).headers == []


def test_the_cli_refuses_what_the_panel_refuses(app):
    def webhook_set(*headers):
        args = ["webhook", "set", "--url", "https://hooks.example.com/in"]
        for header in headers:
            args += ["--header", header]
        return app.test_cli_runner().invoke(args=args)

    result = webhook_set("X-Ok: fine", "TE: trailers", "X-Token: Bearer tökén€")
    assert result.exit_code == 2
    errors = json.loads(result.output)["errors"]
    assert errors == {
        "header[2].name": "TE is set by Hookline and cannot be replaced.",
        "header[3].value": "The value may only hold visible ASCII characters, spaces and tabs: use ASCII; "
                           "encode other text, e.g. base64.",
    }
    assert saved(app).url is None
    # A masked value copied from `webhook show` keeps the stored value of the same row.
    assert webhook_set("X-Token: sk_live_1234567890abcd").exit_code == 0
    assert webhook_set("X-Renamed: ••••abcd").exit_code == 0
    assert saved(app).headers == [["X-Renamed", "sk_live_1234567890abcd"]]


def test_every_reserved_name_of_the_sender_is_refused_by_the_panel(auth_client, app):
    for name in sorted(RESERVED_HEADERS) + ["webhook-signature", "Webhook-Anything"]:
        response = auth_client.post(URL, data=form_data(**{"headers-0-name": name}))
        assert response.status_code == 400, name
        assert sent_custom([(name, "x")]) == [], name


def test_header_names_are_at_most_256_characters(auth_client, app):
    for length in (257, 10_000):
        response = auth_client.post(URL, data=form_data(**{"headers-0-name": "X" * length}))
        assert response.status_code == 400
        assert f"{length:,} characters long; the limit is 256" in field_error(response.text, "headers-0-name")
    assert auth_client.post(URL, data=form_data(**{"headers-0-name": "X" * 256})).status_code == 302
    assert saved(app).headers == [["X" * 256, "sk_live_1234567890abcd"]]


def test_a_renamed_row_keeps_its_stored_value(auth_client, app):
    two = form_data(**{"headers-1-name": "X-Tenant", "headers-1-value": "acme-corp-0042"})
    assert auth_client.post(URL, data=two).status_code == 302
    # Rename the first row and swap the names around: each masked value follows its row.
    response = auth_client.post(URL, data=form_data(**{
        "headers-0-name": "X-Tenant", "headers-0-value": "••••0042", "headers-0-saved_row": "1",
        "headers-1-name": "Authorization", "headers-1-value": "••••abcd", "headers-1-saved_row": "0",
    }))
    assert response.status_code == 302
    assert saved(app).headers == [["X-Tenant", "acme-corp-0042"], ["Authorization", "sk_live_1234567890abcd"]]
    # A mask in a row that was never saved is refused, not stored as the value.
    response = auth_client.post(URL, data=form_data(**{"headers-0-name": "X-New", "headers-0-value": "••••abcd"}))
    assert response.status_code == 400
    assert "mask" in field_error(response.text, "headers-0-value")
    assert saved(app).headers == [["X-Tenant", "acme-corp-0042"], ["Authorization", "sk_live_1234567890abcd"]]


def test_saved_settings_that_break_the_rules_are_shown_with_the_reason(auth_client, app):
    with app.app_context():
        settings = get_settings()
        settings.url = "https://hooks.example.com/in"
        settings.events = ["call_initiated"]
        settings.headers = [["TE", "trailers"], ["X-Token", "Bearer tökén€ 1234"], ["X-Ok", "fine-value-1234"]]
        db.session.commit()
    html = auth_client.get(URL).text
    assert "Some saved settings break the current rules" in html
    assert field_error(html, "headers-0-name") == "TE is set by Hookline and cannot be replaced. This header is not sent."
    assert "use ASCII" in field_error(html, "headers-1-value") and "not sent" in field_error(html, "headers-1-value")
    with pytest.raises(AssertionError):
        field_error(html, "headers-2-value")
    assert sent_custom(saved(app).headers) == [("X-Ok", "fine-value-1234")]
