"""The SSRF matrix: private, loopback and odd spellings refused at save and at send time."""

import pytest

from models import db
from models.events import Delivery
from models.settings import get_settings
from tasks import publish_event
from tasks.drain import drain
from tasks.queue import flush_rings
from events import example_envelope

REFUSED_HOSTS = [
    "127.0.0.1", "127.255.0.9", "0.0.0.0", "10.1.2.3", "172.16.0.1", "172.31.255.255",
    "192.168.1.1", "169.254.169.254", "100.64.0.1", "224.0.0.1", "240.0.0.1",
    "255.255.255.255", "[::1]", "[fc00::1]", "[fd12:3456::1]", "[fe80::1]", "[::ffff:127.0.0.1]",
    "[::ffff:10.0.0.1]", "[::]",
    "[fec0::1]",             # site-local
    "[::ffff:0:a9fe:a9fe]",  # IPv4-translated 169.254.169.254
    "[::ffff:0:7f00:1]",     # IPv4-translated 127.0.0.1
    "2130706433",      # decimal 127.0.0.1
    "0x7f000001",      # hex
    "0177.0.0.1",      # octal
    "127.1",           # short form
    "017700000001",    # octal integer
    "localhost",       # a DNS name that resolves to 127.0.0.1
]


@pytest.fixture
def app_config(app_config):
    # Production's default: no private network is open.
    app_config["HOOKLINE_ALLOWED_NETWORKS"] = ""
    return app_config


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_refused_when_saved(auth_client, app, host):
    response = auth_client.post("/settings/integrations/webhook", data={
        "enabled": "y", "url": f"http://{host}:8080/hook", "events": ["call_ended"], "save": "Save"})
    assert response.status_code == 400, host
    assert "Address not allowed" in response.text
    with app.app_context():
        assert get_settings().url is None


@pytest.mark.parametrize("host, message", [
    ("[::]", ":: is an unspecified address"),
    ("[fec0::1]", "fec0::1 is a site-local address"),
    ("[::ffff:0:a9fe:a9fe]", "::ffff:0:a9fe:a9fe is a link-local address"),
])
def test_refusal_names_the_kind_of_address(auth_client, host, message):
    response = auth_client.post("/settings/integrations/webhook", data={
        "enabled": "y", "url": f"https://{host}/hook", "events": ["call_ended"], "save": "Save"})
    assert response.status_code == 400
    assert message in response.text


def test_refused_by_the_cli(app):
    result = app.test_cli_runner().invoke(args=["webhook", "set", "--url", "http://169.254.169.254/latest", "--enable", "--events", "all"])
    assert result.exit_code == 2
    assert "Address not allowed" in result.output


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_refused_at_send_time(app, host):
    with app.app_context():
        # As if the address changed after it was saved (DNS rebinding) or was
        # written around the form: the sender must still refuse it.
        settings = get_settings()
        settings.enabled, settings.events, settings.secret = True, ["call_ended"], "whsec_" + "A" * 43 + "="
        settings.url = f"http://{host}:8080/hook"
        db.session.commit()
        publish_event("call_ended", example_envelope("call_ended")["payload"])
        flush_rings()  # the publishes' wake-ups have gone out, as in a real run
        drain()
        delivery = db.session.scalars(db.select(Delivery)).one()
        attempt = delivery.attempts[0]
        assert attempt.error_kind == "address_not_allowed", (host, attempt.error_message)
        assert attempt.status_code is None
        assert delivery.status == "retrying"


def test_allowed_networks_open_a_range(app, receiver):
    app.config["HOOKLINE_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    with app.app_context():
        settings = get_settings()
        settings.enabled, settings.events, settings.secret = True, ["call_ended"], "whsec_" + "A" * 43 + "="
        settings.url = receiver.url
        db.session.commit()
        publish_event("call_ended", example_envelope("call_ended")["payload"])
        app.extensions.pop("hookline_sender", None)
        flush_rings()  # the publishes' wake-ups have gone out, as in a real run
        drain()
    assert len(receiver.requests) == 1
