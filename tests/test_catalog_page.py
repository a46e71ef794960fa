"""The event catalog page: the six events from the engine's own catalog, and how to verify."""

import html
import json
import re
import time

from standardwebhooks import Webhook

from events import CATALOG, EVENT_TYPES, example_envelope
from tasks.signing import generate_secret, signature_headers

PAGE = "/settings/integrations/webhook/events"


def test_needs_a_login(client):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_lists_all_six_with_when_example_and_schema(auth_client):
    text = html.unescape(auth_client.get(PAGE).text)
    for name in EVENT_TYPES:
        event = CATALOG[name]
        section = re.search(rf'<section[^>]*id="{name}".*?</section>', text, re.S).group(0)
        assert f"<code>{name}</code>" in section and event.title in section
        assert event.when in section
        # The example request body, pretty-printed from the same catalog the engine validates against.
        example = json.dumps(example_envelope(name, is_test=False), indent=2, ensure_ascii=False)
        assert example in section
        assert re.search(r"<details>\s*<summary>JSON Schema of the payload</summary>", section)
        assert json.dumps(event.schema, indent=2, ensure_ascii=False) in section


def test_explains_verification_with_the_right_headers(auth_client):
    text = html.unescape(auth_client.get(PAGE).text)
    for header in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert f"<code>{header}</code>" in text
    assert "from standardwebhooks import Webhook, WebhookVerificationError" in text
    assert 'import { Webhook } from "standardwebhooks";' in text
    assert "webhook.verify(req.body, req.headers)" in text


def test_the_python_snippet_verifies_a_real_signature(auth_client, monkeypatch):
    """Run the page's Python receiver: it must accept a signed request and refuse a forged one."""
    text = auth_client.get(PAGE).text
    code = html.unescape(re.search(r'<code class="language-python">(.*?)</code>', text, re.S).group(1))
    secret = generate_secret()
    monkeypatch.setenv("WEBHOOK_SECRET", secret)
    handled = []
    namespace = {"__name__": "snippet", "handle": lambda *args: handled.append(args)}
    exec(compile(code, "snippet.py", "exec"), namespace)  # noqa: S102 - our own page's code
    receiver = namespace["app"].test_client()

    body = json.dumps(example_envelope("call_ended", is_test=False), separators=(",", ":"))
    headers = signature_headers([secret], "msg_test", int(time.time()), body.encode())
    assert receiver.post("/webhooks/calls", data=body, headers=headers).status_code == 200
    assert handled == [("call_ended", example_envelope("call_ended")["payload"])]
    forged = body.replace("+905555555555", "+900000000000")
    assert receiver.post("/webhooks/calls", data=forged, headers=headers).status_code == 400
    assert Webhook(secret).verify(body, headers)  # the same check the snippet makes


def test_linked_from_the_settings_page_and_the_nav(auth_client):
    page = auth_client.get("/settings/integrations/webhook").text
    assert f'href="{PAGE}"' in page
    assert re.search(rf'<a class="nav-link[^"]*" href="{PAGE}">Events</a>', page)
    catalog = auth_client.get(PAGE).text
    assert re.search(rf'<a class="nav-link active" href="{PAGE}">Events</a>', catalog)
