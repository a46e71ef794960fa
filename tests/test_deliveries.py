"""The delivery log: filters, keyset pages, the detail page, redeliver, live fragments.

Rows come either from the real pipeline (publish to a real receiver, then
the drain job run in-process) or are inserted directly with known times.
"""

import json
import re
from urllib.parse import parse_qs, urlsplit
from datetime import datetime, timedelta

import pytest
import redis
from rq import Queue
from sqlalchemy import event, select

from events import example_envelope
from models import db, utcnow
from models.events import Delivery
from models.settings import get_settings
from tasks import publish_event
from tasks.drain import drain
from tasks.queue import flush_rings
from tests.support.receiver import Reply
from tests.test_stats import add_delivery

LOG = "/settings/integrations/webhook/deliveries"


def ids_on(html: str) -> list[int]:
    """The delivery ids of a log page, top to bottom."""
    return [int(i) for i in re.findall(r'data-delivery-id="(\d+)"', html)]


def link(html: str, rel: str) -> str | None:
    """The href of the "Newer" (prev) or "Older" (next) link."""
    found = re.search(rf'rel="{rel}" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def load(app, delivery_id) -> Delivery:
    with app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        delivery.attempts  # load before the session closes
        db.session.expunge_all()
        return delivery


def publish(app, event_type="call_answered", **payload_changes):
    with app.app_context():
        payload = dict(example_envelope(event_type)["payload"], **payload_changes)
        event_id = publish_event(event_type, payload)
        return event_id, db.session.scalar(select(Delivery.id).order_by(Delivery.id.desc()).limit(1))


def run_drain(app):
    """The drain job, in this process, as a worker would run it."""
    with app.app_context():
        flush_rings()  # the publishes' wake-ups have gone out, as in a real run
        return drain()


def queued_jobs(app) -> int:
    return Queue("hookline", connection=redis.Redis.from_url(app.config["REDIS_URL"])).count


# --- the log page --------------------------------------------------------------


@pytest.fixture
def mixed(app):
    """Eight deliveries of different statuses, types, calls and test flags; ids 1..8."""
    now = utcnow()
    rows = [
        ("delivered", "call_initiated", "c-1", False),
        ("failed", "call_ringing", "c-1", False),
        ("retrying", "call_answered", "c-2", False),
        ("pending", "transcript", "c-2", False),
        ("cancelled", "call_ended", "c-3", False),
        ("delivered", "error", "c-3", True),
        ("failed", "call_initiated", "c-4", True),
        ("delivered", "call_initiated", "c-4", False),
    ]
    with app.app_context():
        for i, (status, event_type, call_id, is_test) in enumerate(rows):
            created = now - timedelta(minutes=10 - i)
            attempts = [] if status == "pending" else [(created, 12.5 + i, 200 if status == "delivered" else 500)]
            due = now + timedelta(seconds=40) if status == "retrying" else None
            add_delivery(created, status, event_type=event_type, call_id=call_id, is_test=is_test,
                         attempts=attempts, due_at=due)
    return app


def test_log_lists_newest_first_with_every_column(auth_client, mixed):
    page = auth_client.get(LOG)
    assert page.status_code == 200
    html = page.text
    assert ids_on(html) == [8, 7, 6, 5, 4, 3, 2, 1]
    for header in ["Created (UTC)", "Event type", "Call ID", "Status", "Attempts", "Last HTTP status",
                   "Duration", "Next retry (UTC)"]:
        assert f">{header}</th>" in html
    row = re.search(r'<tr data-delivery-id="3".*?</tr>', html, re.S).group(0)
    assert "text-bg-warning" in row and ">retrying<" in row
    # Next retry 40 s after the fixture ran: the countdown, seconds later on a busy box.
    assert re.search(r"\(in (3\d|40) s\)", row), row
    failed = re.search(r'<tr data-delivery-id="7".*?</tr>', html, re.S).group(0)
    assert "text-bg-danger" in failed and ">test<" in failed and "Redeliver" in failed
    assert ">500<" in failed and "18 ms" in failed
    assert "text-bg-success" in re.search(r'<tr data-delivery-id="8".*?</tr>', html, re.S).group(0)
    assert "text-bg-secondary" in re.search(r'<tr data-delivery-id="5".*?</tr>', html, re.S).group(0)
    assert "Deliveries are kept for 30 days" in html
    # Every filter has a label.
    for control in ["filter-status", "filter-event-type", "filter-call-id", "filter-kind"]:
        assert f'for="{control}"' in html


@pytest.mark.parametrize("query, expected", [
    ("status=failed", [7, 2]),
    ("status=delivered", [8, 6, 1]),
    ("event_type=call_initiated", [8, 7, 1]),
    ("call_id=c-2", [4, 3]),
    ("kind=test", [7, 6]),
    ("kind=real", [8, 5, 4, 3, 2, 1]),
    ("status=failed&kind=real", [2]),
    ("status=delivered&event_type=call_initiated&call_id=c-4", [8]),
    ("status=nonsense", [8, 7, 6, 5, 4, 3, 2, 1]),  # unknown values are ignored
])
def test_each_filter(auth_client, mixed, query, expected):
    assert ids_on(auth_client.get(f"{LOG}?{query}").text) == expected


def test_no_match_says_so(auth_client, mixed):
    assert "No deliveries match these filters." in auth_client.get(f"{LOG}?call_id=nope").text


def walk(client, url):
    """Follow "Older" links from ``url``; return the pages' ids."""
    pages = []
    while url:
        html = client.get(url).text
        pages.append(ids_on(html))
        url = link(html, "next")
    return pages


def test_keyset_pages_have_no_duplicates_or_gaps(auth_client, app):
    start = utcnow() - timedelta(hours=2)
    with app.app_context():
        for i in range(120):
            add_delivery(start + timedelta(seconds=i), "failed" if i % 2 else "delivered")
    pages = walk(auth_client, LOG)
    assert [len(p) for p in pages] == [50, 50, 20]
    assert sum(pages, []) == list(range(120, 0, -1))

    # Back up with "Newer": page 3 → page 2 → the first page (live again).
    third = auth_client.get(f"{LOG}?before=21").text
    assert ids_on(third) == list(range(20, 0, -1)) and link(third, "next") is None
    second = auth_client.get(link(third, "prev")).text
    assert ids_on(second) == list(range(70, 20, -1))
    first = auth_client.get(link(second, "prev")).text
    assert ids_on(first) == list(range(120, 70, -1))
    assert link(first, "prev") is None
    assert 'hx-trigger="every 3s"' in first  # the first page refreshes itself...
    assert 'hx-trigger="every 3s"' not in second  # ...older pages stay put

    # With a filter: the 60 failed ones (even ids), the filter kept in the links.
    pages = walk(auth_client, f"{LOG}?status=failed")
    assert [len(p) for p in pages] == [50, 10]
    assert sum(pages, []) == list(range(120, 0, -2))
    assert "status=failed" in link(auth_client.get(f"{LOG}?status=failed").text, "next")


def test_each_filter_reads_an_index(app, mixed):
    """SQLite's plan for each filter's page query needs no sort: a rare value reads one of our
    (partial) indexes, a common one walks the primary key newest first."""
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("PostgreSQL plans depend on table statistics; checked by hand on 1M rows")
    from views.log_queries import LogFilter, log_page

    rare = [{"status": "failed"}, {"status": "pending"}, {"status": "retrying"}, {"status": "cancelled"},
            {"status": "held"}, {"event_type": "error"}, {"call_id": "c-1"}, {"kind": "test"},
            {"status": "failed", "event_type": "error"}, {"kind": "real", "call_id": "c-1"},
            {"status": "delivered", "kind": "test"}]
    common = [{"status": "delivered"}, {"event_type": "transcript"}, {"kind": "real"}]
    with app.app_context():
        for args in rare + common:
            statements = []

            def capture(conn, cursor, statement, parameters, context, executemany):
                statements.append((statement, parameters))

            event.listen(db.engine, "before_cursor_execute", capture)
            try:
                log_page(LogFilter.from_args(args).conditions(), before=100)
            finally:
                event.remove(db.engine, "before_cursor_execute", capture)
            statement, parameters = statements[-1]
            plan = " ".join(row[-1] for row in db.session.connection().exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, parameters))
            if args in rare:
                assert "USING INDEX ix_deliveries_" in plan, (args, plan)
            else:
                assert plan.startswith(("SCAN deliveries", "SEARCH deliveries USING INTEGER PRIMARY KEY")), (args, plan)
            assert "TEMP B-TREE" not in plan, (args, plan)


def test_chart_and_stats_on_the_log_page(auth_client, mixed):
    html = auth_client.get(LOG).text
    svg = re.search(r"<svg viewBox=.*?</svg>", html, re.S).group(0)
    assert 'role="img"' in svg and "<title id=" in svg and "<desc id=" in svg
    assert "Delivery attempts per hour by outcome, last 24 hours (UTC)" in svg
    assert svg.count("data-bucket=") == 24
    # Seven attempts by the state each led to (the pending delivery has none yet), one cancellation.
    assert "8 outcomes in the last 24 hours: 3 delivered, 2 failed, 2 will retry, 1 cancelled." in svg
    assert 'data-outcome="failed"' in svg and 'fill="#dc3545"' in svg
    for legend in ["Delivered", "Failed", "Will retry", "Cancelled"]:
        assert legend in html
    assert 'data-stat="hits">7<' in html  # seven calls: the pending delivery has had none
    weekly = auth_client.get(f"{LOG}?range=7d").text
    assert re.search(r"<svg viewBox=.*?</svg>", weekly, re.S).group(0).count("data-bucket=") == 28
    assert "Delivery attempts per 6 hours by outcome, last 7 days (UTC)" in weekly


# --- waiting for an earlier event of the same call -------------------------------


def row_html(html: str, delivery_id: int) -> str:
    return re.search(rf'<tr data-delivery-id="{delivery_id}".*?</tr>', html, re.S).group(0)


def waiting_rows(html: str) -> dict[int, int]:
    """{row id: the delivery it waits for} for the rows that say "waiting for earlier event"."""
    found = {}
    for delivery_id in ids_on(html):
        row = row_html(html, delivery_id)
        if "waiting for earlier event" in row:
            found[delivery_id] = int(re.search(r'data-waiting-for="(\d+)"', row).group(1))
    return found


@pytest.fixture
def held_back(app):
    """A call whose head is retrying, with later events the drain holds back; ids 1..7.

    1 c-8 failed · 2 c-7 delivered · 3 c-7 retrying (the call's head) ·
    4 c-8 pending (its call's earlier delivery is final: not held) ·
    5 c-7 pending (held) · 6 pending without a call id (never held) · 7 c-7 pending (held)
    """
    now = utcnow()
    rows = [
        ("failed", "c-8"), ("delivered", "c-7"), ("retrying", "c-7"), ("pending", "c-8"),
        ("pending", "c-7"), ("pending", None), ("pending", "c-7"),
    ]
    codes = {"failed": 500, "delivered": 200, "retrying": 500}
    # 45 s: the pages read "in 4x s" for the first five seconds, however slow the box.
    due = {"retrying": now + timedelta(seconds=45), "pending": now}
    with app.app_context():
        for i, (status, call_id) in enumerate(rows):
            created = now - timedelta(minutes=10 - i)
            attempts = [(created, 10.0, codes[status])] if status in codes else []
            add_delivery(created, status, event_type="transcript", call_id=call_id, attempts=attempts,
                         due_at=due.get(status))
    return app


def test_log_marks_deliveries_held_behind_an_earlier_open_one(auth_client, held_back):
    html = auth_client.get(LOG).text
    assert ids_on(html) == [7, 6, 5, 4, 3, 2, 1]
    # Only the later open deliveries of c-7, both behind its head #3 (not #5
    # behind #3 and #7 behind #5: the head is the one being worked on).
    assert waiting_rows(html) == {5: 3, 7: 3}
    held = row_html(html, 5)
    assert ">pending<" in held  # the status stays what it is; the note is beside it
    assert f'href="{LOG}/3?back=' in held and ">#3</a>" in held  # "after #3" links the head
    head = row_html(html, 3)
    assert "(in 4" in head  # the head shows its own next retry, as before
    assert ">queued<" in row_html(html, 4) and ">queued<" in row_html(html, 6)
    # The live fragment carries the same notes.
    assert waiting_rows(auth_client.get(f"{LOG}?partial=table").text) == {5: 3, 7: 3}
    # Filtered to the call, or to pending only (the head is not on the page),
    # the rows still know what they wait for.
    assert waiting_rows(auth_client.get(f"{LOG}?call_id=c-7").text) == {5: 3, 7: 3}
    assert waiting_rows(auth_client.get(f"{LOG}?status=pending").text) == {5: 3, 7: 3}

    # Once the head is delivered, #5 becomes the head and #7 waits for it.
    with held_back.app_context():
        db.session.get(Delivery, 3).status = "delivered"
        db.session.commit()
    assert waiting_rows(auth_client.get(LOG).text) == {7: 5}


def test_detail_says_what_a_held_delivery_waits_for(auth_client, held_back):
    html = auth_client.get(f"{LOG}/7").text
    note = re.search(r'<p[^>]*id="waiting-note".*?</p>', html, re.S).group(0)
    assert "Waiting for earlier event:" in note
    assert f'href="{LOG}/3?back=' in note and "delivery #3</a>" in note
    assert "still retrying, next retry in 4" in note
    assert 'data-waiting-for="3"' in html  # the badge beside the status too
    # The polled fragment keeps the note while the delivery is open.
    assert 'id="waiting-note"' in auth_client.get(f"{LOG}/7?partial=1").text
    for not_held in (1, 2, 3, 4, 6):
        page = auth_client.get(f"{LOG}/{not_held}").text
        assert 'id="waiting-note"' not in page and "waiting for earlier event" not in page, not_held


def test_waiting_notes_cost_one_query_per_page(auth_client, held_back):
    """However many held rows a page shows, finding them is one statement (none without open rows)."""
    def statements_for(path):
        seen = []

        def capture(conn, cursor, statement, parameters, context, executemany):
            seen.append(statement)

        with held_back.app_context():
            event.listen(db.engine, "before_cursor_execute", capture)
        try:
            assert auth_client.get(path).status_code == 200
        finally:
            with held_back.app_context():
                event.remove(db.engine, "before_cursor_execute", capture)
        return seen

    before = statements_for(f"{LOG}?partial=table")
    with held_back.app_context():
        for _ in range(30):
            add_delivery(utcnow(), "pending", event_type="transcript", call_id="c-7", due_at=utcnow())
    after = statements_for(f"{LOG}?partial=table")
    assert len(waiting_rows(auth_client.get(f"{LOG}?partial=table").text)) == 32
    assert len(after) == len(before)
    assert sum("min(deliveries.id)" in s for s in after) == 1
    # A page of finished deliveries asks nothing extra.
    finished = statements_for(f"{LOG}?partial=table&status=delivered")
    assert not any("min(deliveries.id)" in s for s in finished)


def test_waiting_query_reads_the_call_index(app, held_back):
    """The page's one extra statement is an index search by call, never a scan of the log."""
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("PostgreSQL plans depend on table statistics; checked by hand on 1M rows")
    from views.log_queries import log_page, waiting_for

    with app.app_context():
        statements = []

        def capture(conn, cursor, statement, parameters, context, executemany):
            statements.append((statement, parameters))

        page = log_page([])
        event.listen(db.engine, "before_cursor_execute", capture)
        try:
            assert waiting_for(page.rows) == {5: 3, 7: 3}
        finally:
            event.remove(db.engine, "before_cursor_execute", capture)
        [(statement, parameters)] = statements
        plan = " ".join(row[-1] for row in db.session.connection().exec_driver_sql(
            "EXPLAIN QUERY PLAN " + statement, parameters))
        assert "SEARCH deliveries USING INDEX ix_deliveries_" in plan, plan
        assert "(call_id=?" in plan, plan


# --- live fragments ------------------------------------------------------------


def test_table_fragment_for_the_live_feed(auth_client, mixed):
    response = auth_client.get(f"{LOG}?partial=table&status=failed")
    assert response.status_code == 200
    assert "<html" not in response.text and "<nav class=\"navbar" not in response.text
    assert 'id="deliveries-table"' in response.text
    assert ids_on(response.text) == [7, 2]
    # The page polls that fragment with its own filters.
    page = auth_client.get(f"{LOG}?status=failed").text
    assert 'hx-get="/settings/integrations/webhook/deliveries?partial=table&amp;status=failed"' in page


def test_stats_fragment_and_the_settings_page_panel(auth_client, mixed):
    fragment = auth_client.get(f"{LOG}/stats?range=7d&compact=1").text
    assert fragment.lstrip().startswith("<section id=\"delivery-stats\"")
    assert 'hx-trigger="every 5s, hookline:delivery-recorded from:body, hl:visible from:document"' in fragment and fragment.count("data-bucket=") == 28
    assert 'id="recent-deliveries"' in fragment
    settings_page = auth_client.get("/settings/integrations/webhook").text
    panel = settings_page[settings_page.index('id="webhook-deliveries-panel"'):]
    assert 'role="img"' in panel and "View all deliveries" in panel
    assert re.findall(r'id="recent-(\d+)"', panel) == ["8", "7", "6", "5", "4"]  # the five latest


def test_no_inline_script_or_handler_on_the_new_pages(auth_client, mixed):
    for path in [LOG, f"{LOG}/1", f"{LOG}?partial=table", f"{LOG}/stats"]:
        html = auth_client.get(path).text
        assert not re.search(r"<script(?![^>]*\ssrc=)", html), path
        assert not re.search(r"\son[a-z]+\s*=", html), path


# --- detail page ---------------------------------------------------------------


@pytest.fixture
def app_config(app_config):
    # A failed attempt is retried at once, so one in-process drain makes two attempts.
    app_config["HOOKLINE_RETRY_SCHEDULE"] = (0,)
    return app_config


def test_detail_shows_envelope_headers_and_every_attempt(auth_client, app, integration, receiver):
    receiver.respond(Reply(500, headers={"X-Trace": "t-1"}, body=b"boom <b>1</b>"))
    event_id, delivery_id = publish(app, "call_answered")
    run_drain(app)
    assert load(app, delivery_id).status == "delivered"

    html = auth_client.get(f"{LOG}/{delivery_id}").text
    envelope = json.loads(receiver.requests[0].body)
    pretty = json.dumps(envelope, indent=2).replace('"', "&#34;")
    assert pretty in html  # indented, keys in the order sent
    assert f'<code id="webhook-id">{event_id}</code>' in html
    assert "••••6789" in html and "sk_test_0123456789" not in html  # custom header masked
    assert "webhook-signature" in html and "v1," in html
    assert html.index('id="attempt-2"') < html.index('id="attempt-1"')  # newest first
    assert "Attempts <span class=\"text-secondary fs-6\">(newest first)</span>" in html
    attempt1 = html[html.index('id="attempt-1"'):]
    assert "boom &lt;b&gt;1&lt;/b&gt;" in attempt1  # the body, escaped
    assert "X-Trace" in attempt1 and "t-1" in attempt1
    assert '<span class="fw-semibold">Error:</span> HTTP 500 from receiver' in attempt1
    assert "http_status" not in attempt1  # the plain words, not the error kind's code
    assert auth_client.get(f"{LOG}/999").status_code == 404


# --- redeliver -----------------------------------------------------------------


def test_redeliver_one_sends_the_same_webhook_id_again(auth_client, app, integration, receiver):
    receiver.default = Reply(503)
    event_id, delivery_id = publish(app)
    run_drain(app)
    failed = load(app, delivery_id)
    assert failed.status == "failed" and failed.attempt_count == 2
    jobs_before = queued_jobs(app)

    receiver.default = Reply(200)
    response = auth_client.post(f"{LOG}/{delivery_id}/redeliver", data={"next": f"{LOG}?status=failed"})
    assert response.status_code == 302 and response.headers["Location"] == f"{LOG}?status=failed"
    queued = load(app, delivery_id)
    assert queued.status == "pending" and queued.due_at is not None and queued.lease_until is None
    assert len(queued.attempts) == 2  # history kept
    assert queued_jobs(app) == jobs_before + 1  # wake() queued a drain
    flashed = auth_client.get(LOG).text
    assert f"Delivery #{delivery_id} was queued to be sent again with the same webhook-id." in flashed
    assert "it gets one attempt" in flashed  # its schedule (0,) was used up

    run_drain(app)
    done = load(app, delivery_id)
    assert done.status == "delivered"
    assert [a.number for a in done.attempts] == [1, 2, 3]
    assert [r.headers["webhook-id"] for r in receiver.requests] == [event_id] * 3


def test_redeliver_refuses_what_cannot_go(auth_client, app, integration):
    with app.app_context():
        pending = add_delivery(utcnow(), "pending", due_at=utcnow())
        leased = add_delivery(utcnow(), "retrying", due_at=utcnow())
        db.session.get(Delivery, leased).lease_until = utcnow() + timedelta(seconds=60)
        db.session.commit()
        failed = add_delivery(utcnow(), "failed")
    for delivery_id in (pending, leased):
        auth_client.post(f"{LOG}/{delivery_id}/redeliver")
        assert "already queued or being sent" in auth_client.get(LOG).text
    assert load(app, leased).lease_until is not None  # an in-flight send is left alone
    assert auth_client.post(f"{LOG}/12345/redeliver").status_code == 404

    with app.app_context():
        get_settings().enabled = False
        db.session.commit()
    auth_client.post(f"{LOG}/{failed}/redeliver")
    assert "turn it on to redeliver" in auth_client.get(LOG).text
    assert load(app, failed).status == "failed"


def test_redeliver_failed_since(auth_client, app, integration):
    now = utcnow().replace(second=0, microsecond=0)
    with app.app_context():
        old = add_delivery(now - timedelta(days=2), "failed")
        recent = [add_delivery(now - timedelta(minutes=m), "failed") for m in (50, 20)]
        cancelled = add_delivery(now - timedelta(minutes=30), "cancelled")
        delivered = add_delivery(now - timedelta(minutes=10), "delivered")
        failed_tests = [add_delivery(now - timedelta(minutes=5), status, is_test=True)
                        for status in ("failed", "cancelled")]
    since = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")

    response = auth_client.post(f"{LOG}/redeliver-failed", data={"since": since})
    assert response.status_code == 302
    assert "Queued 2 failed deliveries created since" in auth_client.get(LOG).text
    assert [load(app, i).status for i in recent] == ["pending", "pending"]
    assert [load(app, i).status for i in failed_tests] == ["failed", "cancelled"]  # tests stay
    assert load(app, old).status == "failed"  # before "since"
    assert load(app, cancelled).status == "cancelled"
    assert load(app, delivered).status == "delivered"

    auth_client.post(f"{LOG}/redeliver-failed", data={"since": since, "include_cancelled": "y"})
    assert "Queued 1 failed or cancelled delivery" in auth_client.get(LOG).text
    assert load(app, cancelled).status == "pending"
    assert [load(app, i).status for i in failed_tests] == ["failed", "cancelled"]

    auth_client.post(f"{LOG}/redeliver-failed", data={"since": since})
    assert "nothing was queued" in auth_client.get(LOG).text
    auth_client.post(f"{LOG}/redeliver-failed", data={"since": "yesterday"})
    assert "Nothing was queued:" in auth_client.get(LOG).text
    assert load(app, old).status == "failed"


def test_redeliver_since_form_defaults_to_24_hours_ago_in_utc(auth_client, app):
    html = auth_client.get(LOG).text
    assert "Failed since (UTC)" in html
    value = re.search(r'<input[^>]*name="since"[^>]*>', html).group(0)
    assert 'type="datetime-local"' in value
    shown = datetime.strptime(re.search(r'value="([^"]+)"', value).group(1), "%Y-%m-%dT%H:%M")
    assert abs(shown - (utcnow() - timedelta(hours=24))) < timedelta(minutes=2)


# --- protection ----------------------------------------------------------------


@pytest.mark.parametrize("method, path", [
    ("GET", LOG), ("GET", f"{LOG}?partial=table"), ("GET", f"{LOG}/stats"), ("GET", f"{LOG}/1"),
    ("POST", f"{LOG}/1/redeliver"), ("POST", f"{LOG}/redeliver-failed"),
])
def test_every_route_needs_login(client, method, path):
    response = client.open(path, method=method)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_poll_after_the_session_ended_sends_the_browser_to_login(client):
    response = client.get(f"{LOG}?partial=table", headers={
        "HX-Request": "true", "HX-Current-URL": f"http://127.0.0.1:5000{LOG}?status=failed"})
    assert response.status_code == 401
    # To the sign-in form, then back to the page (not to the fragment).
    target = urlsplit(response.headers["HX-Redirect"])
    assert target.path == "/login" and parse_qs(target.query)["next"] == [f"{LOG}?status=failed"]


@pytest.fixture
def csrf_client(app, client, admin):
    app.config["WTF_CSRF_ENABLED"] = True
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', client.get("/login").text).group(1)
    from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

    client.post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": token})
    return client


def test_redeliver_posts_need_a_csrf_token(csrf_client, app, integration):
    with app.app_context():
        failed = add_delivery(utcnow(), "failed")
    since = (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert csrf_client.post(f"{LOG}/{failed}/redeliver").status_code == 400
    assert csrf_client.post(f"{LOG}/redeliver-failed", data={"since": since}).status_code == 400
    assert load(app, failed).status == "failed"

    page = csrf_client.get(LOG).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert csrf_client.post(f"{LOG}/{failed}/redeliver", data={"csrf_token": token}).status_code == 302
    assert load(app, failed).status == "pending"
