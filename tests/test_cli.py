"""Operator commands: create-admin, ensure-admin, webhook show/set."""

import json

from models import db
from models.settings import get_settings
from models.users import User


def run(app, *args, input=None):
    return app.test_cli_runner().invoke(args=list(args), input=input)


def test_create_admin_from_stdin_and_login(app, client):
    result = run(app, "create-admin", "Ops@Example.com", "--password-stdin", input="s3cret-pass\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"created": "ops@example.com"}
    response = client.post("/login", data={"email": "ops@example.com", "password": "s3cret-pass"})
    assert response.status_code == 302
    again = run(app, "create-admin", "ops@example.com", "--password-stdin", input="another-pass\n")
    assert again.exit_code != 0 and "already exists" in again.output


def test_create_admin_prompts_for_password(app):
    result = run(app, "create-admin", "p@example.com", input="long-password\nlong-password\n")
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert User.by_email("p@example.com").check_password("long-password")


def test_ensure_admin_only_on_first_run(app):
    first = run(app, "ensure-admin")
    assert "password:" in first.output
    password = first.output.split("password:")[1].split()[0]
    with app.app_context():
        assert User.by_email("admin@example.com").check_password(password)
    assert run(app, "ensure-admin").output == ""


def test_webhook_set_and_show(app):
    result = run(app, "webhook", "set", "--url", "https://hooks.example.com/in", "--enable",
                 "--events", "call_initiated,call_ended", "--header", "X-Api-Key: sk_live_abcdef123456")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["secret"].startswith("whsec_") and "not be shown again" in out["secret_note"]
    assert out["headers"] == [{"name": "X-Api-Key", "value": "••••3456"}]

    shown = json.loads(run(app, "webhook", "show").output)
    assert shown == {
        "enabled": True,
        "url": "https://hooks.example.com/in",
        "events": ["call_initiated", "call_ended"],
        "headers": [{"name": "X-Api-Key", "value": "••••3456"}],
        "secret": out["secret"][:10] + "…",
    }
    # The secret was printed by `set`, so the panel will not reveal it again.
    with app.app_context():
        assert get_settings().secret_shown is True
    # A second set keeps the secret and does not print it.
    again = json.loads(run(app, "webhook", "set", "--events", "all").output)
    assert again["secret"] == out["secret"][:10] + "…"
    assert len(again["events"]) == 6


def test_webhook_set_refuses_what_the_form_refuses(app):
    result = run(app, "webhook", "set", "--url", "ftp://x", "--enable", "--events", "nope",
                 "--header", "Content-Type: text/plain", "--header", "X-Ok: a\rb")
    assert result.exit_code == 2
    errors = json.loads(result.output)["errors"]
    assert "https://" in errors["url"]
    assert "Unknown event type: nope" in errors["events"]
    assert "set by Hookline" in errors["header[1].name"]
    assert "line breaks" in errors["header[2].value"]
    with app.app_context():
        settings = get_settings()
        assert settings.url is None and settings.headers == []
        db.session.rollback()


def test_webhook_set_bad_header_syntax(app):
    result = run(app, "webhook", "set", "--header", "no-colon-here")
    assert result.exit_code == 2
    assert "Name: value" in result.output
