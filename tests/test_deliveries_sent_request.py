"""The delivery detail shows the request as sent: the URL and every header on the wire,
and saved headers that break the rules as "not sent" (issue 18)."""

import html as htmlmod
import re

from models import db
from models.events import Attempt
from models.settings import get_settings
from tests.test_deliveries import LOG, publish, run_drain


def request_rows(page: str, number: int = 1) -> list[tuple[str, str, bool]]:
    """(name, shown value, marked not sent) for each row of an attempt's request table."""
    section = page[page.index(f'id="attempt-{number}"'):]
    table = re.search(r'<table class="[^"]*request-headers">(.*?)</table>', section, re.S).group(1)
    rows = []
    for row in re.findall(r"<tr(.*?)</tr>", table, re.S):
        name = re.sub(r"<[^>]+>", "", re.search(r"<th[^>]*>(.*?)</th>", row, re.S).group(1)).strip()
        value = re.sub(r"<[^>]+>", "", re.search(r"<td[^>]*>(.*?)</td>", row, re.S).group(1))
        rows.append((htmlmod.unescape(name), " ".join(htmlmod.unescape(value).split()), 'class="not-sent"' in row))
    return rows


def test_detail_shows_every_header_on_the_wire_and_what_was_not_sent(auth_client, app, integration, receiver):
    with app.app_context():
        settings = get_settings()
        # Saved by an earlier version: the sender has always dropped these two.
        settings.headers = [["X-Api-Key", "sk_test_0123456789"], ["TE", "trailers"],
                            ["X-Token", "Bearer tökén€ 1234"]]
        db.session.commit()
    event_id, delivery_id = publish(app, "call_answered")
    run_drain(app)
    got = receiver.requests[0].headers
    assert "te" not in got and "x-token" not in got and got["x-api-key"] == "sk_test_0123456789"

    page = auth_client.get(f"{LOG}/{delivery_id}").text
    url = re.search(r'<p class="small mb-2 request-url">.*?<code[^>]*>(.*?)</code>', page, re.S).group(1)
    assert htmlmod.unescape(url) == receiver.url
    rows = request_rows(page)
    sent = [(name, value) for name, value, not_sent in rows if not not_sent]
    signature = got["webhook-signature"]
    assert sent == [
        ("Content-Type", "application/json"),
        ("User-Agent", got["user-agent"]),
        ("webhook-id", event_id),
        ("webhook-timestamp", got["webhook-timestamp"]),
        ("webhook-signature", signature[:13] + "…"),
        ("X-Api-Key", "••••6789"),
    ]
    assert signature not in page and "sk_test_0123456789" not in page
    not_sent = {name: value for name, value, flagged in rows if flagged}
    assert not_sent == {
        "TE": "not sent TE is set by Hookline and cannot be replaced.",
        "X-Token": "not sent The value may only hold visible ASCII characters, spaces and tabs: use ASCII; "
                   "encode other text, e.g. base64.",
    }


def test_an_attempt_recorded_without_its_url_shows_the_saved_one(auth_client, app, integration, receiver):
    _, delivery_id = publish(app, "call_answered")
    run_drain(app)
    with app.app_context():
        attempt = db.session.query(Attempt).one()
        if hasattr(attempt, "url"):
            attempt.url = None  # as on rows written before the URL was recorded
            db.session.commit()
    page = auth_client.get(f"{LOG}/{delivery_id}").text
    assert "the URL saved now: this attempt did not record its own" in page
    assert receiver.url in page
