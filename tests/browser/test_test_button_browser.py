"""The Test button and secret rotation in headless Chromium, as a tenant admin uses them."""

import json

import pytest
from playwright.sync_api import expect
from standardwebhooks import Webhook

from events import example_envelope
from models import db
from models.settings import get_settings
from tasks import publish_event
from tests.conftest import free_port


@pytest.fixture
def app_config(app_config):
    # A real browser session: CSRF on, as in production.
    app_config["WTF_CSRF_ENABLED"] = True
    return app_config


def mark_page(page):
    """Leave a marker in the page's JavaScript state; a full reload would lose it."""
    page.evaluate("window.__marker = 1")


def same_page(page) -> bool:
    return page.evaluate("window.__marker") == 1


def test_test_button_shows_success_in_place(integration, receiver, page):
    page.reload()  # the integration was configured after sign-in
    mark_page(page)
    page.get_by_label("Event to test").select_option("transcript")
    page.get_by_role("button", name="Test Webhook Integration").click()

    outcome = page.locator("#test-outcome")
    expect(outcome).to_contain_text("Received: 200 OK in")
    expect(outcome).to_contain_text("recorded in the delivery log")
    assert same_page(page)  # htmx swapped the result in; no navigation
    expect(page.get_by_role("button", name="Test Webhook Integration")).to_be_enabled()

    [request] = receiver.requests
    body = json.loads(request.body)
    assert body["is_test"] is True and body["event_type"] == "transcript"
    assert body["payload"] == example_envelope("transcript")["payload"]
    assert Webhook(integration).verify(request.body, request.headers) == body


def test_test_button_shows_connection_refused_in_place(app, integration, page):
    with app.app_context():
        get_settings().url = f"http://127.0.0.1:{free_port()}/hooks"
        db.session.commit()
    page.reload()
    mark_page(page)
    page.get_by_role("button", name="Test Webhook Integration").click()
    expect(page.locator("#test-outcome")).to_contain_text("connection refused")
    assert same_page(page)


def test_unsaved_changes_notice_and_the_test_uses_saved_settings(integration, receiver, page):
    page.reload()
    notice = page.get_by_text("The test uses the saved settings")
    expect(notice).to_be_hidden()
    page.get_by_label("Event to test").select_option("error")  # not a settings change
    expect(notice).to_be_hidden()
    page.get_by_label("Webhook URL").fill(f"http://127.0.0.1:{free_port()}/unsaved")
    expect(notice).to_be_visible()
    page.get_by_role("button", name="Test Webhook Integration").click()
    expect(page.locator("#test-outcome")).to_contain_text("Received: 200 OK")
    assert receiver.requests[0].path == "/hooks/calls"  # the saved URL, not the typed one


def test_rotate_secret_in_the_panel_and_either_secret_verifies(app, integration, receiver, page, start_worker):
    page.reload()
    page.get_by_text("Rotate secret…").click()
    page.get_by_role("button", name="Yes, rotate the secret").click()

    expect(page.get_by_text("New signing secret created")).to_be_visible()
    new = page.locator("#signing-secret").input_value()
    assert new.startswith("whsec_") and new != integration
    expect(page.locator("#previous-secret-note")).to_contain_text("valid until")

    start_worker()
    with app.app_context():
        publish_event("call_answered", example_envelope("call_answered")["payload"])
    [request] = receiver.wait_for(1)
    body = json.loads(request.body)
    assert Webhook(new).verify(request.body, request.headers) == body
    assert Webhook(integration).verify(request.body, request.headers) == body

    page.reload()
    expect(page.locator("#signing-secret")).to_have_count(0)  # shown once only
