"""The stats block stops polling in a hidden tab and refreshes the moment the tab is shown."""

from datetime import timedelta

from playwright.sync_api import expect

from models import utcnow
from tasks import stats
from tests.test_stats import add_delivery

#: Pretend the tab is hidden or shown (Chromium's own visibility cannot be
#: switched from a test) and note every poll the stats block makes: what
#: triggered it, whether the tab was hidden, whether it was called off.
WATCH = """() => {
  window.__hidden = false;
  Object.defineProperty(document, "hidden", {configurable: true, get: () => window.__hidden});
  window.__polls = [];
  document.addEventListener("htmx:beforeRequest", (event) => {
    if (event.detail.elt.id !== "delivery-stats") return;
    const trigger = event.detail.requestConfig.triggeringEvent;  // none for the 5 s timer
    window.__polls.push({trigger: trigger ? trigger.type : "every", hidden: document.hidden,
                         sent: !event.defaultPrevented});
  });
}"""


def test_a_hidden_tab_does_not_poll_and_refreshes_when_shown(page, app):
    # The login lands on the settings page, whose stats block polls every 5 s.
    expect(page.locator('[data-stat="hits"]')).to_have_text("0")
    page.evaluate(WATCH)
    page.evaluate("() => { window.__hidden = true; document.dispatchEvent(new Event('visibilitychange'));"
                  " document.dispatchEvent(new Event('hl:visible')); }")  # a poll while hidden
    with app.app_context():
        add_delivery(utcnow() - timedelta(minutes=1), "delivered",
                     attempts=[(utcnow() - timedelta(minutes=1), 25.0, 200)])
        stats.forget()
    assert page.evaluate("window.__polls") == [{"trigger": "hl:visible", "hidden": True, "sent": False}]
    expect(page.locator('[data-stat="hits"]')).to_have_text("0")

    with page.expect_request(lambda request: "/deliveries/stats" in request.url, timeout=2_000):
        page.evaluate("() => { window.__hidden = false; document.dispatchEvent(new Event('visibilitychange')); }")
    expect(page.locator('[data-stat="hits"]')).to_have_text("1", timeout=2_000)
    polls = page.evaluate("window.__polls")
    assert {"trigger": "hl:visible", "hidden": False, "sent": True} in polls, polls  # not the timer
    assert all(poll["sent"] != poll["hidden"] for poll in polls), polls  # every poll while hidden called off
