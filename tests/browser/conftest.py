"""Browser fixtures: the app served on 127.0.0.1 and Debian's Chromium via Playwright."""

import os
import tempfile
import shutil
import threading

import pytest
from werkzeug.serving import make_server

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

CHROMIUM = os.environ.get("HOOKLINE_CHROMIUM", "/usr/bin/chromium")
# The walks save screenshots; into docs/ only when asked (make screenshots),
# so that running the tests leaves the work tree as it was.
SCREENSHOTS = os.environ.get("HOOKLINE_SCREENSHOTS") or tempfile.mkdtemp(prefix="hookline-screens-")


def pytest_collection_modifyitems(items):
    for item in items:
        if "/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium; skipped (or failed in CI) when it is not installed."""
    if not shutil.which(CHROMIUM):
        if os.environ.get("HOOKLINE_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} not found: apt-get install chromium")
        pytest.skip(f"{CHROMIUM} not found: apt-get install chromium to run browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync"],
        )
        yield browser
        browser.close()


@pytest.fixture
def live_server(app):
    """Serve the test app on a free port in a thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture
def page(browser, live_server, admin):
    """A page signed in as the admin."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto("/login")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/settings/integrations/webhook")
    yield page
    context.close()
