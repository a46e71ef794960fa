"""The Test Webhook Integration button: the catalog example, signed, sent now, logged as a test.

Real parts only: an HTTP receiver on 127.0.0.1, the app's own Sender, and
signatures checked with the public `standardwebhooks` package. No worker
runs in these tests: the test is synchronous.
"""

import html
import json
import re
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook

from events import EVENT_TYPES, example_envelope
from models import db
from models.events import Delivery, Event
from models.settings import get_settings
from tasks.drain import has_due_work
from tests.conftest import free_port
from tests.support.receiver import Reply

URL = "/settings/integrations/webhook"
TEST = URL + "/test"
HTMX = {"HX-Request": "true"}


def send(client, event_type="call_initiated"):
    """Press the button the way htmx does; return the fragment's text, unescaped."""
    response = client.post(TEST, data={"event_type": event_type}, headers=HTMX)
    assert response.status_code == 200, response.text
    return html.unescape(re.sub(r"\s+", " ", response.text))


def recorded(app):
    """Every delivery with its attempts and event, detached from the session."""
    with app.app_context():
        rows = db.session.scalars(select(Delivery).order_by(Delivery.id)).all()
        for row in rows:
            row.attempts, row.event  # load before the session closes
        db.session.expunge_all()
        return rows


def point_at(app, url):
    with app.app_context():
        get_settings().url = url
        db.session.commit()


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_sends_the_catalog_example_signed_with_is_test(auth_client, integration, receiver, event_type):
    text = send(auth_client, event_type)
    assert re.search(r"Received: 200 OK in \d+ ms", text)

    [request] = receiver.requests  # already there: the test is synchronous, no worker
    body = json.loads(request.body)
    example = example_envelope(event_type, is_test=True)
    assert body["event_type"] == event_type
    assert body["payload"] == example["payload"]
    assert body["is_test"] is True
    # A current timestamp, so receivers' replay protection accepts the test.
    assert abs(body["timestamp_utc"] - time.time()) < 60
    assert int(request.headers["webhook-timestamp"]) == body["timestamp_utc"]
    assert Webhook(integration).verify(request.body, request.headers) == body
    assert request.headers["x-api-key"] == "sk_test_0123456789"  # the saved custom header
    assert request.headers["user-agent"].startswith("Hookline/")


def test_is_recorded_in_the_log_as_a_test(app, auth_client, integration, receiver):
    send(auth_client, "call_ended")
    [request] = receiver.requests
    [delivery] = recorded(app)
    assert delivery.is_test and delivery.event.is_test
    assert delivery.status == "delivered" and delivery.attempt_count == 1
    assert delivery.event_type == "call_ended" and delivery.call_id == "1"
    assert delivery.event.id == request.headers["webhook-id"]
    assert delivery.event.body.encode() == request.body  # the exact bytes sent
    [attempt] = delivery.attempts
    assert (attempt.number, attempt.status_code, attempt.ok) == (1, 200, True)
    assert attempt.request_headers["webhook-signature"] == request.headers["webhook-signature"]
    assert attempt.request_headers["X-Api-Key"] == "••••6789"  # masked in the log, like real deliveries
    assert attempt.response_body == "ok"


def test_works_without_javascript_redirect_and_flash(app, auth_client, integration, receiver):
    response = auth_client.post(TEST, data={"event_type": "transcript"})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(URL + "#test-webhook")
    page = html.unescape(auth_client.get(URL).text)
    assert "Test transcript sent — Received: 200 OK in" in page  # the flash
    assert 'id="test-outcome"' in page  # and the full result beside the button
    assert '<option value="transcript" selected>' in page
    assert json.loads(receiver.requests[0].body)["event_type"] == "transcript"
    # Shown once: the next visit has a clean panel again.
    assert 'id="test-outcome"' not in auth_client.get(URL).text


def test_closed_port_says_connection_refused(app, auth_client, integration, receiver):
    point_at(app, f"http://127.0.0.1:{free_port()}/hooks")
    text = send(auth_client)
    assert "Failed: connection refused" in text
    assert "Connection refused by 127.0.0.1:" in text
    [delivery] = recorded(app)
    assert delivery.is_test and delivery.status == "failed" and delivery.attempt_count == 1
    assert delivery.attempts[0].error_kind == "refused"
    # A test is never retried: nothing is left for the workers.
    with app.app_context():
        assert not has_due_work()


def test_other_2xx_is_accepted_with_a_note(app, auth_client, integration, receiver):
    receiver.respond(Reply(201, body=b"created"))
    text = send(auth_client)
    assert re.search(r"Accepted \(201 Created\) in \d+ ms — the spec expects 200", text)
    assert "200 OK" in text
    assert recorded(app)[0].status == "delivered"  # real deliveries count any 2xx too


def test_non_2xx_shows_the_start_of_the_body(app, auth_client, integration, receiver):
    body = b"<b>database exploded</b> " + b"x" * 2000 + b"TAIL-NOT-SHOWN"
    receiver.respond(Reply(500, body=body))
    response = auth_client.post(TEST, data={"event_type": "error"}, headers=HTMX)
    assert "&lt;b&gt;database exploded&lt;/b&gt;" in response.text  # escaped, not rendered
    text = html.unescape(response.text)
    assert "Failed: your endpoint answered 500 Internal Server Error" in text
    excerpt = re.search(r"<code>(<b>database exploded.*?)</code>", text, re.S).group(1)
    assert len(excerpt.encode()) == 1024 and "TAIL-NOT-SHOWN" not in text
    [delivery] = recorded(app)
    assert delivery.status == "failed" and delivery.last_status_code == 500


def test_redirect_is_not_followed(app, auth_client, integration, receiver):
    receiver.respond(Reply(301, headers={"Location": "https://elsewhere.example.com/"}))
    text = send(auth_client)
    assert "Failed: redirect not followed" in text
    assert "301 to https://elsewhere.example.com/" in text
    assert len(receiver.requests) == 1


def test_dns_name_not_found(app, auth_client, integration):
    point_at(app, "http://no-such-host.invalid/hooks")
    assert "Failed: DNS name not found" in send(auth_client)


@pytest.fixture
def short_deadline(app_config):
    app_config["HOOKLINE_DELIVERY_TIMEOUT"] = 1.0
    return app_config


def test_slow_receiver_times_out(short_deadline, app, auth_client, integration, receiver):
    receiver.respond(Reply(200, delay=3))
    assert "Failed: timed out after 1 s" in send(auth_client)
    assert recorded(app)[0].attempts[0].error_kind == "timeout"


@pytest.fixture
def no_private_networks(app_config):
    app_config["HOOKLINE_ALLOWED_NETWORKS"] = ""
    return app_config


def test_private_address_is_not_allowed(no_private_networks, app, auth_client, integration, receiver):
    # The same SSRF rules as real deliveries: loopback is refused in production.
    text = send(auth_client)
    assert "Failed: address not allowed" in text
    assert receiver.requests == []


@pytest.fixture
def https_receiver(tmp_path):
    """An HTTPS server with a self-signed certificate (which no client should trust)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_port}/hooks"
    server.shutdown()
    server.server_close()


def test_untrusted_certificate_is_a_tls_problem(app, auth_client, integration, https_receiver):
    point_at(app, https_receiver)
    text = send(auth_client)
    assert "Failed: TLS certificate problem" in text
    assert recorded(app)[0].attempts[0].error_kind == "tls"


def test_without_a_saved_url_it_explains(app, auth_client):
    page = auth_client.get(URL).text
    assert "save a webhook URL first" in page
    text = send(auth_client)
    assert "Test not sent: Save a webhook URL first" in text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Event)) == 0


def test_unknown_event_type_is_refused(app, auth_client, integration, receiver):
    assert "Unknown event type" in send(auth_client, "call_exploded")
    assert receiver.requests == []


def test_disabled_integration_can_still_be_tested(app, auth_client, integration, receiver):
    with app.app_context():
        get_settings().enabled = False
        db.session.commit()
    assert "Received: 200 OK" in send(auth_client)


def test_panel_offers_the_six_events_and_warns_about_unsaved_changes(auth_client, integration):
    page = auth_client.get(URL).text
    assert re.search(r'<select[^>]*name="event_type"[^>]*form="webhook-test-form"', page)
    for name in EVENT_TYPES:
        assert f'<option value="{name}"' in page
    assert '<option value="call_initiated" selected>' in page
    assert 'hx-post="/settings/integrations/webhook/test"' in page and 'hx-target="#test-result"' in page
    assert "The test uses the saved settings" in page


@pytest.fixture
def csrf_on(app_config):
    app_config["WTF_CSRF_ENABLED"] = True
    return app_config


def test_needs_a_csrf_token_which_htmx_sends(csrf_on, app, client, admin, integration, receiver):
    from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', client.get("/login").text).group(1)
    client.post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": token})
    assert client.post(TEST, data={"event_type": "call_initiated"}, headers=HTMX).status_code == 400
    assert receiver.requests == []
    # The token in the test form's hidden input, which htmx posts with the form.
    page = client.get(URL).text
    token = re.search(r'id="webhook-test-form".*?name="csrf_token" value="([^"]+)"', page, re.S).group(1)
    response = client.post(TEST, data={"event_type": "call_initiated", "csrf_token": token}, headers=HTMX)
    assert "Received: 200 OK" in response.text
    # Flask-WTF also accepts it as the X-CSRFToken header.
    response = client.post(TEST, data={"event_type": "call_initiated"}, headers={**HTMX, "X-CSRFToken": token})
    assert "Received: 200 OK" in response.text
    assert len(receiver.requests) == 2
