"""The delivery log in headless Chromium: a failure, a redelivery, the live feed."""

import os
import random
import time
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from events import example_envelope
from models import db, utcnow
from models.events import Delivery
from tasks import publish_event
from tests.browser.conftest import SCREENSHOTS
from tests.support.receiver import Reply
from tests.test_stats import add_delivery

LOG = "/settings/integrations/webhook/deliveries"


@pytest.fixture
def app_config(app_config):
    app_config["WTF_CSRF_ENABLED"] = True  # as in production
    app_config["HOOKLINE_RETRY_SCHEDULE"] = ()  # the first failure is final: fail fast
    return app_config


def status_of(app, delivery_id):
    with app.app_context():
        return db.session.get(Delivery, delivery_id).status


def wait_for_status(app, delivery_id, status, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if status_of(app, delivery_id) == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"delivery {delivery_id} is {status_of(app, delivery_id)}, not {status}")


def test_failed_delivery_redelivered_and_the_log_updates_itself(page, app, integration, receiver, start_worker):
    receiver.default = Reply(500, body=b"receiver down")
    start_worker()
    with app.app_context():
        event_id = publish_event("call_ended", example_envelope("call_ended")["payload"])
        delivery_id = db.session.scalar(select(Delivery.id))
    wait_for_status(app, delivery_id, "failed")

    page.goto(LOG)
    row = page.locator(f'tr[data-delivery-id="{delivery_id}"]')
    expect(row).to_have_attribute("data-status", "failed")
    expect(row.get_by_text("failed", exact=True)).to_be_visible()
    expect(row.get_by_text("500")).to_be_visible()

    # The receiver recovers; it takes 2 s to answer so the page sees the delivery in flight.
    receiver.default = Reply(200, delay=2)
    row.get_by_role("button", name=f"Redeliver delivery {delivery_id}").click()
    expect(page.get_by_text(f"Delivery #{delivery_id} was queued to be sent again")).to_be_visible()
    expect(row).to_have_attribute("data-status", "pending")

    # From here on, no navigation: the live feed must bring the new state.
    page.evaluate("window.__stillTheSamePage = true")
    expect(row).to_have_attribute("data-status", "delivered", timeout=15_000)
    expect(row.get_by_text("delivered", exact=True)).to_be_visible()
    expect(row.locator("td").nth(5)).to_have_text("2")  # attempts: the failure and the redelivery
    assert page.evaluate("window.__stillTheSamePage") is True
    # The stats block refreshes too: the latest hit is now a 200.
    expect(page.locator('[data-stat="last-hit"]')).to_contain_text("200", timeout=15_000)  # its figures are shared for 5 s (tasks.stats.current)

    # The detail page lists both attempts, newest first, with the same webhook-id.
    row.get_by_role("link", name=f"Delivery {delivery_id} details").click()
    expect(page.locator("#webhook-id")).to_have_text(event_id)
    expect(page.locator("details.attempt summary").first).to_contain_text("Attempt 2")
    expect(page.locator("details.attempt summary").nth(1)).to_contain_text("Attempt 1")
    assert [r.headers["webhook-id"] for r in receiver.requests] == [event_id, event_id]


def test_screenshot_of_a_busy_day(page, app):
    """Several hours of mixed outcomes, for docs/delivery-log.png."""
    rng = random.Random(4)
    now = utcnow()
    types = ["call_initiated", "call_ringing", "call_answered", "transcript", "call_ended"]
    with app.app_context():
        for minutes in sorted(rng.sample(range(5, 24 * 60), 140), reverse=True):
            created = now - timedelta(minutes=minutes)
            hour = minutes // 60
            # An outage between 9 and 6 hours ago, retries still going on in the last hour.
            if 6 <= hour < 9:
                status = rng.choice(["failed", "failed", "delivered"])
            elif hour == 0:
                status = rng.choice(["delivered", "delivered", "retrying", "pending"])
            else:
                status = rng.choice(["delivered"] * 12 + ["failed", "cancelled"])
            code = 200 if status == "delivered" else rng.choice([500, 502, 503])
            attempts = [] if status == "pending" else [(created, rng.uniform(40, 400), code)]
            due = now + timedelta(seconds=rng.randint(20, 400)) if status == "retrying" else None
            add_delivery(created, status, event_type=rng.choice(types), call_id=f"call-{minutes // 7}",
                         is_test=rng.random() < 0.05, attempts=attempts, due_at=due)
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(LOG)
    chart = page.get_by_role("img", name="Delivery attempts per hour by outcome, last 24 hours (UTC)")
    expect(chart).to_be_visible()
    expect(page.locator("#deliveries-table tbody tr")).to_have_count(50)

    # The chart's data table stays open while the stats block refreshes itself.
    page.get_by_text("Chart data as a table").click()
    page.evaluate("document.getElementById('delivery-stats').dataset.before = 'refresh'")
    expect(page.locator("#delivery-stats[data-before]")).to_have_count(0, timeout=12_000)  # a poll replaced it
    expect(page.locator("#outcome-chart-data")).to_have_attribute("open", "")

    # The 7 d toggle swaps the chart in place.
    page.get_by_role("link", name="7 d", exact=True).click()
    expect(page.get_by_role("img", name="Delivery attempts per 6 hours by outcome, last 7 days (UTC)")).to_be_visible()
    page.get_by_role("link", name="24 h", exact=True).click()
    expect(chart).to_be_visible()

    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.get_by_text("Chart data as a table").click()  # closed again for the picture
    page.screenshot(path=os.path.join(SCREENSHOTS, "delivery-log.png"), full_page=True)
    assert errors == []  # no Content-Security-Policy violation, no script error
