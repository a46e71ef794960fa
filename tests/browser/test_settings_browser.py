"""The settings panel in headless Chromium, as a tenant admin uses it."""

import os

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import SCREENSHOTS


@pytest.fixture
def app_config(app_config):
    # A real browser session: CSRF on, as in production.
    app_config["WTF_CSRF_ENABLED"] = True
    return app_config


def test_configure_save_reload_and_see_values_kept(page):
    page.get_by_role("switch", name="Enabled").check()
    page.get_by_label("Webhook URL").fill("https://crm.example.com/hooks/calls")
    page.get_by_label("Header name 1").fill("X-Api-Key")
    page.get_by_label("Header value 1").fill("sk_live_51HxAbCdEf9876")
    page.get_by_role("button", name="Add header").click()  # client-side row
    page.locator("[data-header-row]").nth(1).locator("input").nth(0).fill("X-Tenant")
    page.locator("[data-header-row]").nth(1).locator("input").nth(1).fill("acme-corporation")
    page.get_by_role("button", name="Select none").click()
    page.get_by_label("call_initiated").check()
    page.get_by_label("call_ended").check()
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_text("Settings saved.")).to_be_visible()
    secret = page.locator("#signing-secret").input_value()
    assert secret.startswith("whsec_")

    page.reload()
    expect(page.locator("#signing-secret")).to_have_count(0)  # shown once only
    expect(page.get_by_role("switch", name="Enabled")).to_be_checked()
    expect(page.get_by_label("Webhook URL")).to_have_value("https://crm.example.com/hooks/calls")
    expect(page.get_by_label("Header name 1")).to_have_value("X-Api-Key")
    expect(page.get_by_label("Header value 1")).to_have_value("••••9876")
    expect(page.get_by_label("Header value 2")).to_have_value("••••tion")
    expect(page.get_by_label("call_initiated")).to_be_checked()
    expect(page.get_by_label("call_ended")).to_be_checked()
    expect(page.get_by_label("call_ringing")).not_to_be_checked()
    assert "sk_live_51HxAbCdEf9876" not in page.content()
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, "settings-panel.png"), full_page=True)

    # Remove the second header, save, and it is gone; the masked first one is kept.
    page.get_by_role("button", name="Remove header 2").click()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    expect(page.get_by_label("Header value 1")).to_have_value("••••9876")
    expect(page.get_by_label("Header name 2")).to_have_count(0)


def test_invalid_url_shows_error_next_to_the_field(page):
    page.get_by_role("switch", name="Enabled").check()
    page.get_by_label("Webhook URL").fill("ftp://files.example.com/drop")
    page.get_by_label("call_ended").check()
    page.get_by_role("button", name="Save").click()

    url_field = page.get_by_label("Webhook URL")
    expect(url_field).to_have_attribute("aria-invalid", "true")
    error = page.locator("#url-error")
    expect(error).to_contain_text("must start with https://")
    assert "url-error" in url_field.get_attribute("aria-describedby")
    expect(page.get_by_text("Nothing was saved")).to_be_visible()
    page.screenshot(path=os.path.join(SCREENSHOTS, "settings-error.png"), full_page=True)


def test_header_injection_is_refused_in_the_browser(page):
    page.get_by_role("switch", name="Enabled").check()
    page.get_by_label("Webhook URL").fill("https://crm.example.com/hooks")
    page.get_by_label("call_ended").check()
    page.get_by_label("Header name 1").fill("Content-Type")
    page.get_by_label("Header value 1").fill("text/plain")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#headers-0-name-error")).to_contain_text("set by Hookline")
