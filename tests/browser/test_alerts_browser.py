"""Issue 20's flows in headless Chromium, with a real receiver and a real worker.

Times run scaled (HOOKLINE_RETRY_SCALE and the failing thresholds shortened
alike): "5 minutes" is 1.5 s here, so nothing sleeps through a schedule.
"""

import re
import time

import pytest
from playwright.sync_api import expect

from events import example_envelope
from tasks import publish_event, watch
from tests.support.receiver import Reply
from tests.smtp import text_of
from tests.support import wait_until
from tests.test_delivery import deliveries

SETTINGS = "/settings/integrations/webhook"
SCALE = 0.005  # 5 min -> 1.5 s; the 40 min window's delays: 0.15, 0.6, 2.4, 9.6 s


@pytest.fixture
def app_config(app_config, smtp):
    app_config.update(
        MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp.port, MAIL_FROM="alerts@hookline.test",
        HOOKLINE_ALERT_SECONDS=0.2,
        WTF_CSRF_ENABLED=True,  # as in production
        HOOKLINE_RETRY_SCHEDULE=None, HOOKLINE_RETRY_SCALE=SCALE, HOOKLINE_TICK_SECONDS=0.1,
        HOOKLINE_FAILING_SECONDS=300 * SCALE, HOOKLINE_STUCK_SECONDS=600 * SCALE,
        HOOKLINE_HEALTH_CACHE_SECONDS=0,
    )
    return app_config


def failing(app) -> bool:
    with app.app_context():
        return watch.check().failing


def publish(app, name, call_id):
    with app.app_context():
        return publish_event(name, {**example_envelope(name)["payload"], "call_id": call_id})


def test_failing_banner_appears_with_the_count_then_goes_when_the_receiver_recovers(
        page, app, integration, receiver, start_worker):
    receiver.default = Reply(503, body=b"down for lunch")
    start_worker()
    # The receiver fails for "6 minutes" (1.8 s) while calls go on: 9 events, each its own call.
    for call_id in range(1, 10):
        publish(app, "call_initiated", call_id)
        time.sleep(0.2)
    # Every delivery tried and failed once, and the whole failing for longer
    # than the threshold (on a busy box the worker may start after the publishes).
    wait_until(lambda: {d.status for d in deliveries(app)} == {"retrying"} and failing(app), timeout=20,
               what="all nine deliveries retrying and the integration failing")
    page.goto(f"{SETTINGS}/events")  # any panel page
    banner = page.locator("#failing-banner")
    expect(banner).to_be_visible()
    expect(banner.locator("#failing-count")).to_have_text("9 deliveries")
    expect(banner.locator("#failing-error")).to_contain_text("your endpoint answered 503 Service Unavailable")
    page.screenshot(path="/tmp/hookline-failing-banner.png")
    banner.get_by_role("link", name="See the failing deliveries").click()
    expect(page).to_have_url(re.compile(r"/deliveries\?status=retrying$"))
    expect(page.locator("#failing-banner")).to_be_visible()

    receiver.default = Reply(200)
    wait_until(lambda: all(d.status == "delivered" for d in deliveries(app)), timeout=30)
    page.goto(SETTINGS)
    expect(page.locator("#failing-banner")).to_have_count(0)


def test_410_disables_mails_the_admin_holds_3_events_and_re_enable_sends_them_in_order(
        page, app, integration, receiver, start_worker, smtp):
    receiver.respond(Reply(410, body=b"gone"))
    start_worker()
    publish(app, "call_initiated", 77)
    [mail] = smtp.inbox.wait_for(1)
    assert mail["To"] == "admin@example.com" and mail["Subject"] == "Hookline stopped sending your webhook"
    assert f"URL: {receiver.url}" in text_of(mail)
    assert f"Reason: The endpoint answered 410 Gone ({receiver.url})" in text_of(mail)

    # The admin fixes the receiver meanwhile; three events of a call are published while it is off.
    held = [publish(app, name, 78) for name in ("call_initiated", "call_ringing", "call_answered")]
    assert all(held)
    page.goto(f"{SETTINGS}/deliveries")
    banner = page.locator("#auto-disabled")
    expect(banner).to_contain_text("Hookline disabled this integration")
    expect(banner).to_contain_text("3 events held since")
    page.screenshot(path="/tmp/hookline-held-banner.png")
    banner.get_by_role("button", name="Re-enable and send them").click()
    expect(page.locator(".alert-success")).to_contain_text("3 held events will be sent now")
    expect(page.locator("#auto-disabled")).to_have_count(0)
    wait_until(lambda: len(receiver.requests) == 4, timeout=20)
    assert [r.headers["webhook-id"] for r in receiver.requests[1:]] == held
    assert [d.status for d in deliveries(app)] == ["failed", "delivered", "delivered", "delivered"]
    assert len(smtp.inbox.messages) == 1  # one alert, not one per round
