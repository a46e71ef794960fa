"""What a new user tripped on in the panel (issue 21), checked through the HTTP pages."""

import html
import json
import os
import re
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select

from models import db, utcnow
from models.events import Delivery, Event
from tests.test_stats import add_delivery

SETTINGS = "/settings/integrations/webhook"
LOG = SETTINGS + "/deliveries"
HTMX = {"HX-Request": "true"}


def text_of(page: str) -> str:
    """The page's visible words, tags and repeated spaces removed."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def row(page: str, delivery_id: int) -> str:
    return re.search(rf'<tr data-delivery-id="{delivery_id}".*?</tr>', page, re.S).group(0)


# --- forms: no stray attribute values ------------------------------------------


def test_login_form_has_no_none_placeholder_or_empty_description(client):
    page = client.get("/login").text
    assert 'placeholder="None"' not in page
    assert 'aria-describedby=""' not in page and 'aria-describedby="None"' not in page
    assert 'autocomplete="username"' in page and 'autocomplete="current-password"' in page


def test_settings_inputs_have_no_none_attribute(auth_client):
    page = auth_client.get(SETTINGS).text
    assert '="None"' not in page and 'aria-describedby=""' not in page


def test_every_page_starts_with_a_skip_link_to_main(app, auth_client):
    for path in ["/login", SETTINGS, LOG, SETTINGS + "/events"]:
        page = (app.test_client() if path == "/login" else auth_client).get(path).text
        body = page[page.index("<body"):]
        first_link = re.search(r"<a [^>]*>[^<]*</a>", body).group(0)
        assert 'href="#main"' in first_link and "Skip to main content" in first_link, path
        assert 'id="main"' in page


# --- the settings page after a refused Save ------------------------------------


def test_a_refused_save_keeps_the_nav_the_blank_row_and_says_the_test_uses_saved_settings(auth_client):
    response = auth_client.post(SETTINGS, data={"enabled": "y", "url": "ftp://files.example.com/drop",
                                                "events": ["call_ended"], "save": "Save"})
    assert response.status_code == 400
    page = response.text
    nav = re.search(r'<a class="nav-link ([^"]*)" href="/settings/integrations/webhook">', page)
    assert "active" in nav.group(1)  # still highlighted at settings.save
    assert 'id="headers-0-name"' in page  # a blank header row to type in, as on GET
    hint = re.search(r'<div class="([^"]*)" id="test-unsaved"', page).group(1)
    assert "d-none" not in hint  # the form differs from what is saved: say so at once


def test_a_plain_page_view_hides_the_unsaved_hint(auth_client):
    hint = re.search(r'<div class="([^"]*)" id="test-unsaved"', auth_client.get(SETTINGS).text).group(1)
    assert "d-none" in hint


def test_the_forms_first_submit_button_is_save(auth_client):
    """Enter submits the first submit button in tree order: it must be Save, not Add header."""
    page = auth_client.get(SETTINGS).text
    form = page[page.index('id="webhook-form"'):]
    first = re.search(r'<(?:button|input)[^>]*type="submit"[^>]*>', form).group(0)
    assert 'name="save"' in first and 'value="Save"' in first


# --- the Test button -------------------------------------------------------------


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "no-js"])
def test_test_without_a_saved_url_says_it_once(auth_client, htmx):
    if htmx:
        fragment = auth_client.post(SETTINGS + "/test", data={"event_type": "call_initiated"}, headers=HTMX).text
        page = auth_client.get(SETTINGS).text.replace(
            re.search(r'<div id="test-result".*?</div></div>', auth_client.get(SETTINGS).text, re.S).group(0),
            f'<div id="test-result">{fragment}</div>')
    else:
        page = auth_client.post(SETTINGS + "/test", data={"event_type": "call_initiated"},
                                follow_redirects=True).text
    words = text_of(page).lower()
    assert words.count("url first") == 1, words  # one message, not three
    assert "Test not sent: Save a webhook URL first" in text_of(page)
    # Reloading the page shows the standing note again, and only it.
    again = text_of(auth_client.get(SETTINGS).text).lower()
    assert again.count("url first") == 1 and "test not sent" not in again


def test_the_test_button_looks_like_a_button(auth_client):
    button = re.search(r'<button[^>]*id="test-webhook"[^>]*>', auth_client.get(SETTINGS).text).group(0)
    assert "btn-outline-primary" in button and "secondary" not in button


def test_a_recorded_test_refreshes_the_stats_at_once(auth_client, integration, receiver):
    response = auth_client.post(SETTINGS + "/test", data={"event_type": "call_initiated"}, headers=HTMX)
    assert response.headers["HX-Trigger"] == "hookline:delivery-recorded"
    stats = re.search(r'<section id="delivery-stats"[^>]*>', auth_client.get(SETTINGS).text).group(0)
    assert 'hookline:delivery-recorded from:body' in stats
    # The refreshed block counts the test.
    assert 'data-stat="hits">1<' in auth_client.get(LOG + "/stats?compact=1").text


# --- the delivery log -------------------------------------------------------------


@pytest.fixture
def log_rows(app):
    now = utcnow()
    with app.app_context():
        ids = {
            "cancelled": add_delivery(now - timedelta(minutes=5), "cancelled", call_id="c-1"),
            "failed": add_delivery(now - timedelta(minutes=4), "failed", call_id="c-2",
                                   attempts=[(now - timedelta(minutes=1), 3.0, None)]),
            "retrying": add_delivery(now - timedelta(minutes=3), "retrying", call_id="c-3",
                                     attempts=[(now - timedelta(minutes=3), 8.0, 500)],
                                     due_at=now + timedelta(minutes=2)),
        }
        failed = db.session.get(Delivery, ids["failed"])
        failed.attempts[0].error_kind = "refused"
        failed.attempts[0].error_message = "Connection refused by 127.0.0.1:9"
        db.session.commit()
        ids["webhook_id"] = db.session.get(Delivery, ids["retrying"]).event.id
    return ids


def test_cancelled_and_failed_rows_offer_redeliver(auth_client, log_rows):
    page = auth_client.get(LOG).text
    for key in ("cancelled", "failed"):
        assert f'id="redeliver-{log_rows[key]}"' in row(page, log_rows[key]), key
    assert "redeliver-" not in row(page, log_rows["retrying"])


def test_the_log_searches_by_webhook_id(auth_client, log_rows):
    page = auth_client.get(LOG, query_string={"call_id": log_rows["webhook_id"]}).text
    assert re.findall(r'<tr data-delivery-id="(\d+)"', page) == [str(log_rows["retrying"])]
    nothing = auth_client.get(LOG, query_string={"call_id": "msg_nosuchevent"}).text
    assert "No deliveries match these filters." in nothing
    assert "Call ID or webhook-id" in page


def test_retry_now_on_the_detail_page_comes_back_to_it(auth_client, app, integration, log_rows):
    detail = f"{LOG}/{log_rows['retrying']}"
    page = auth_client.get(detail).text
    form = re.search(r'<form method="post" action="[^"]*/redeliver".*?</form>', page, re.S).group(0)
    assert ">Retry now<" in form
    back = html.unescape(re.search(r'name="next" value="([^"]*)"', form).group(1))
    response = auth_client.post(f"{detail}/redeliver", data={"next": back})
    assert response.status_code == 302
    assert response.headers["Location"].split("?")[0] == detail


def test_error_words_are_plain(auth_client, log_rows):
    last_hit = re.search(r'data-stat="last-hit">.*?</dd>', auth_client.get(LOG).text, re.S).group(0)
    assert "connection refused" in last_hit  # not the sender's code word "refused"
    detail = text_of(auth_client.get(f"{LOG}/{log_rows['failed']}").text)
    assert "Error: Connection refused by 127.0.0.1:9" in detail and "refused:" not in detail


def test_one_latest_delivery_is_singular(auth_client, app):
    with app.app_context():
        add_delivery(utcnow(), "delivered", attempts=[(utcnow(), 5.0, 200)])
    page = text_of(auth_client.get(SETTINGS).text)
    assert "The latest delivery" in page and "The 1 latest" not in page


def test_the_catalog_describes_each_event_once(auth_client):
    from events import CATALOG

    page = text_of(auth_client.get(SETTINGS + "/events").text)
    for event in CATALOG.values():
        assert event.when in page
        assert event.description not in page  # the near-duplicate sentence is gone


def test_a_private_address_is_refused_in_one_sentence(auth_client, app):
    app.config["HOOKLINE_ALLOWED_NETWORKS"] = ""
    response = auth_client.post(SETTINGS, data={"enabled": "y", "url": "http://10.1.2.3/hook",
                                                "events": ["call_ended"], "save": "Save"})
    message = text_of(re.search(r'id="url-error">(.*?)</div>', response.text, re.S).group(1)).strip()
    assert message == "Address not allowed: 10.1.2.3 is a private address"
    assert message.lower().count("not allowed") == 1


# --- the CLI ------------------------------------------------------------------


def test_simulate_call_says_published_not_delivered(app, integration, receiver):
    result = app.test_cli_runner().invoke(args=["simulate-call", "--transcripts", "1"], catch_exceptions=False)
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["event_type"] for line in lines] == [
        "call_initiated", "call_ringing", "call_answered", "transcript", "call_ended"]
    assert all(line["published"] is True and "delivered" not in line for line in lines)
    assert receiver.requests == []  # published only: no worker has sent anything
    with app.app_context():
        assert len(db.session.scalars(select(Event)).all()) == 5


def test_listen_says_what_it_changed_and_how_to_undo_it(app, integration, receiver):
    from events import EVENT_TYPES
    from models.settings import get_settings
    from tests.conftest import free_port, worker_env

    port = free_port()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "webhook", "listen",
                             "--port", str(port), "--configure"],
                            cwd=root, env=worker_env(app), stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Listening on"):
                break
    finally:
        # SIGTERM, not Ctrl-C's SIGINT: a suite started in the background
        # hands its children SIGINT ignored, and the listener would never stop.
        proc.terminate()
        proc.wait(10)
    url = f"http://127.0.0.1:{port}/webhook"
    assert lines[0] == (f"Changed the Custom Webhook settings: URL {url}, enabled, all 6 events "
                        f"(it was {receiver.url} (enabled, 6 of 6 events)).")
    assert lines[1] == (f"To point it back: flask webhook set --url '{receiver.url}' --enable "
                        f"--events {','.join(EVENT_TYPES)}")
    assert lines[2] == "(--no-configure leaves the settings alone.)"
    with app.app_context():
        db.session.expire_all()
        assert get_settings().url == url
