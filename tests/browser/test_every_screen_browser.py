"""Every panel page at desktop and phone width: axe-core, layout, keyboard, live stats.

axe-core (bundled by axe-playwright-python) runs in the real page; a serious
or critical violation fails the test with the rule, the element and axe's
summary, so the message says what to fix.
"""

import os
from datetime import timedelta

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from events import example_envelope
from models import db, utcnow
from models.events import Delivery
from models.settings import get_settings
from tasks import autodisable, publish_event
from tests.browser.conftest import SCREENSHOTS
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.test_stats import add_delivery

SETTINGS = "/settings/integrations/webhook"
LOG = SETTINGS + "/deliveries"
CATALOG = SETTINGS + "/events"
DESKTOP, PHONE = 1280, 390
#: The pages the walk checks, in the order it reaches them.
PAGES = ["login", "settings (empty)", "settings (with errors)", "settings (secret shown)",
         "settings (saved)", "delivery log", "delivery detail", "event catalog", "admins",
         "settings (auto-disabled, events held)"]


@pytest.fixture
def app_config(app_config):
    app_config["WTF_CSRF_ENABLED"] = True  # as in production
    return app_config


@pytest.fixture
def busy_log(app):
    """A log with every badge: retrying with a next retry, waiting, test, failed, cancelled."""
    now = utcnow()
    with app.app_context():
        ids = {}
        for i in range(6):
            add_delivery(now - timedelta(minutes=30 - i), "delivered", call_id=f"call-{i:06d}-inbound",
                         attempts=[(now - timedelta(minutes=30 - i), 41.5, 200)])
        ids["failed"] = add_delivery(now - timedelta(minutes=9), "failed", event_type="call_answered",
                                     call_id="call-000777-outbound",
                                     attempts=[(now - timedelta(minutes=9), 10_001.0, 503)] * 5)
        ids["cancelled"] = add_delivery(now - timedelta(minutes=8), "cancelled", event_type="transcript",
                                        call_id="call-000778-outbound")
        ids["test"] = add_delivery(now - timedelta(minutes=7), "failed", event_type="call_initiated",
                                   call_id="call-000779-outbound", is_test=True,
                                   attempts=[(now - timedelta(minutes=7), 3.2, None)])
        ids["retrying"] = add_delivery(now - timedelta(minutes=2), "retrying", event_type="call_ringing",
                                       call_id="call-000780-outbound",
                                       attempts=[(now - timedelta(minutes=2), 120.0, 500)] * 3,
                                       due_at=now + timedelta(minutes=6))
        ids["waiting"] = add_delivery(now - timedelta(minutes=1), "pending", event_type="call_answered",
                                      call_id="call-000780-outbound")
    return ids


def serious_violations(page) -> list[str]:
    """axe-core's serious and critical findings on the current page, one line each."""
    results = Axe().run(page)
    lines = []
    for violation in results.response["violations"]:
        if violation["impact"] not in ("serious", "critical"):
            continue
        for node in violation["nodes"]:
            lines.append(f"{violation['id']} ({violation['impact']}) at {node['target']}: "
                         f"{node.get('failureSummary', '').splitlines()[-1].strip()}")
    return lines


def overflow(page) -> int:
    """How many CSS pixels the page is wider than the viewport (0 when it fits)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def new_page(browser, live_server, width, javascript=True):
    context = browser.new_context(viewport={"width": width, "height": 900}, base_url=live_server,
                                  java_script_enabled=javascript)
    page = context.new_page()
    page.set_default_timeout(10_000)
    return page


def sign_in(page):
    page.goto("/login")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**" + SETTINGS)


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_every_page_has_no_serious_axe_violation_and_fits_the_screen(app, browser, live_server, admin,
                                                                     busy_log, width):
    page = new_page(browser, live_server, width)
    problems, too_wide, checked = {}, {}, []

    def check(name):
        page.wait_for_load_state("load")
        checked.append(name)
        if found := serious_violations(page):
            problems[name] = found
        if (extra := overflow(page)) > 0:
            too_wide[name] = extra

    page.goto("/login")
    check("login")
    sign_in(page)
    check("settings (empty)")

    page.get_by_role("switch", name="Enabled").check()
    page.get_by_label("Webhook URL").fill("ftp://files.example.com/drop")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#url-error")).to_be_visible()
    check("settings (with errors)")

    page.get_by_label("Webhook URL").fill("https://crm.example.com/hooks/calls")
    page.get_by_label("call_ended").check()
    page.get_by_label("Header name 1").fill("X-Api-Key")
    page.get_by_label("Header value 1").fill("sk_live_51HxAbCdEf9876")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#signing-secret")).to_be_visible()
    check("settings (secret shown)")
    if width == PHONE:
        page.screenshot(path=os.path.join(SCREENSHOTS, "settings-phone.png"), full_page=True)

    page.reload()
    expect(page.locator("#secret-hint")).to_be_visible()
    check("settings (saved)")

    page.goto(LOG)
    check("delivery log")
    page.goto(f"{LOG}/{busy_log['failed']}")
    check("delivery detail")
    page.goto(CATALOG)
    check("event catalog")
    page.goto("/settings/admins")
    check("admins")

    with app.app_context():  # a 410 switched the integration off; one event held since
        autodisable.after_gone(get_settings(), "https://crm.example.com/hooks/calls")
        db.session.commit()
        publish_event("call_ended", example_envelope("call_ended")["payload"])
    page.goto(SETTINGS)
    expect(page.get_by_text("Re-enable and send them")).to_be_visible()
    check("settings (auto-disabled, events held)")

    assert checked == PAGES
    assert problems == {}, f"axe at {width} px:\n" + "\n".join(
        f"{name}: {line}" for name, lines in problems.items() for line in lines)
    assert too_wide == {}, f"pages wider than the {width} px viewport (px too wide): {too_wide}"
    page.context.close()


def test_the_log_shows_its_actions_column_at_desktop_width(browser, live_server, admin, busy_log):
    page = new_page(browser, live_server, DESKTOP)
    sign_in(page)
    page.goto(LOG)
    for key in ("failed", "cancelled"):
        button = page.locator(f"#redeliver-{busy_log[key]}")
        expect(button).to_be_visible()
        box = button.bounding_box()
        table_box = page.locator("#deliveries-table").evaluate(
            "t => { const r = t.parentElement.getBoundingClientRect(); return [r.right, t.parentElement.scrollWidth - t.parentElement.clientWidth]; }")
        right, hidden = table_box
        assert box["x"] + box["width"] <= right, f"Redeliver #{busy_log[key]} is cut off ({box}, container right {right})"
        assert hidden == 0, f"the log table scrolls sideways by {hidden} px at {DESKTOP} px"
    page.context.close()


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_enter_in_any_field_saves(browser, live_server, admin, javascript):
    page = new_page(browser, live_server, DESKTOP, javascript=javascript)
    sign_in(page)
    page.get_by_role("switch", name="Enabled").check()
    page.get_by_label("call_ended").check()
    values = {"Webhook URL": "https://crm.example.com/hooks/calls",
              "Header name 1": "X-Tenant", "Header value 1": "acme-corporation"}
    for label in values:
        for other, value in values.items():
            page.get_by_label(other).fill(value)
        page.get_by_label(label).press("Enter")
        expect(page.get_by_text("Settings saved.")).to_be_visible()
        expect(page.locator("[data-header-row]")).to_have_count(1)  # no row was added
    page.goto(SETTINGS)
    expect(page.get_by_label("Header name 1")).to_have_value("X-Tenant")
    expect(page.get_by_label("Header value 1")).to_have_value("••••tion")
    page.context.close()


def test_a_skip_link_leads_past_the_navigation(browser, live_server, admin):
    page = new_page(browser, live_server, PHONE)
    sign_in(page)
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()  # shown when focused
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    # The next stop is inside <main>, not the navbar.
    assert page.evaluate("document.activeElement.closest('main') !== null")
    page.context.close()


def test_the_chart_keeps_its_table_alternative_at_phone_width(browser, live_server, admin, busy_log):
    page = new_page(browser, live_server, PHONE)
    sign_in(page)
    page.goto(LOG)
    chart = page.get_by_role("img", name="Delivery attempts per hour by outcome, last 24 hours (UTC)")
    expect(chart).to_be_visible()
    page.screenshot(path=os.path.join(SCREENSHOTS, "delivery-log-phone.png"))
    page.get_by_text("Chart data as a table").click()
    table = page.locator("#outcome-chart-data table")
    expect(table).to_be_visible()
    expect(table.locator("tbody tr")).to_have_count(24)
    # The axis labels keep a readable size on a phone (the SVG scales down with the screen).
    size = page.locator("#outcome-chart .chart-x-axis text").first.evaluate(
        "t => t.getBoundingClientRect().height")
    assert size >= 9, f"axis labels are {size:.1f} px tall at {PHONE} px"
    page.context.close()


def test_the_stats_count_a_test_at_once(browser, live_server, admin, integration, receiver):
    """The stats block refreshes when a Test is recorded, not at its next 5 s poll."""
    page = new_page(browser, live_server, DESKTOP)
    sign_in(page)
    hits = page.locator('#delivery-stats [data-stat="hits"]')
    expect(hits).to_have_text("0")
    page.get_by_role("button", name="Test Webhook Integration").click()
    expect(page.locator("#test-outcome")).to_contain_text("Received: 200 OK")
    # Well inside the first poll (5 s after the page loaded).
    expect(hits).to_have_text("1", timeout=1_500)
    page.context.close()
