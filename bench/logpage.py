"""Line 7: the delivery log and the settings page with a million deliveries, through gunicorn.

Two shapes of the same million deliveries (each with its attempt):
``spread``, one every 2 s ending now (~23 days, the line's old shape: 4% of
them in the stats' 24 h), and ``day``, all within the last 24 h (a busy
integration at ~12 events/s, every one in the stats' window). Each shape
gets a fresh database; its roll-ups are built the way the migration builds
them for an existing log (tasks.rollups.rebuild), then a real gunicorn (2
workers, as deployed) serves the pages to a signed-in requests.Session.

The rows are mostly delivered, with the rarer kinds the log's filters look
for: 1% failed, 0.1% cancelled, 0.1% of the rare ``error`` type, one in
10,000 a Test-button delivery, and no open one (a filter that finds
nothing is the one that would read the whole table without its index).

Per page: the very first request to the fresh server; ``cold``, requests
with the stats cache forgotten before each (every one computes the stats,
as the first tab to poll after an interval does); and ``warm``, requests
as they come (the stats computed at most once per interval). Then each of
the log's filters (FILTERS), warm, and one query string deep in the log
(``before=``). No VACUUM or ANALYZE beyond what the database does by
itself: no worker runs here.
"""

import os
import subprocess
import sys
import time

import requests
from sqlalchemy import DateTime, String, case, cast, func, insert, literal, select

from bench.harness import summary_ms
from bench.scenarios import FAKE_SIGNATURE, ceiling_body
from bench.services import ROOT, Database, free_port, stop, wait_until

PAGES = {"log": "/settings/integrations/webhook/deliveries", "settings": "/settings/integrations/webhook"}
#: Seconds between two deliveries, by shape (``day`` is computed from the row count).
SPREAD_SECONDS = 2.0
#: The log's filters as the page builds them (views.log_queries.LogFilter),
#: common and rare values, alone and combined. ``{call}``, ``{msg}`` and
#: ``{middle}`` are filled in from the rows.
FILTERS = (
    "status=delivered", "status=failed", "status=cancelled", "status=pending", "status=retrying",
    "status=held", "event_type=transcript", "event_type=call_ended", "event_type=error",
    "kind=real", "kind=test", "call_id={call}", "call_id={msg}", "status=failed&kind=real",
    "event_type=error&status=failed", "event_type=error&kind=test", "status=failed&before={middle}",
    "event_type=error&before={middle}",
)


def bulk_insert(app, rows: int, spacing: float) -> float:
    """Insert ``rows`` Events, their Deliveries and one Attempt each, ``spacing`` s apart ending now.

    Three INSERT ... SELECTs over a recursive CTE (SQLite and PostgreSQL both
    have it), so a million rows cost three statements. 1% failed after 5
    attempts (one Attempt row stands for them); durations spread from 1 to
    200 ms. Rows already in the database are left alone (the scaling line
    seeds the bench's own database). Returns the seconds it took.
    """
    from models import db
    from models.events import CANCELLED, DELIVERED, FAILED, Attempt, Delivery, Event

    started = time.time()
    base = started - rows * spacing
    with app.app_context():
        e, d, a = Event.__table__.c, Delivery.__table__.c, Attempt.__table__.c
        # Only the rows inserted here get deliveries and attempts.
        last_seq = db.session.scalar(select(func.max(e.seq))) or 0
        last_delivery = db.session.scalar(select(func.max(d.id))) or 0
        n = select(literal(1).label("x")).cte("n", recursive=True)
        n = n.union_all(select(n.c.x + 1).where(n.c.x < rows))
        x = n.c.x
        moment = base + x * spacing
        if db.engine.dialect.name == "sqlite":
            created = func.strftime("%Y-%m-%d %H:%M:%f", moment, "unixepoch")
        else:
            created = cast(func.to_timestamp(moment), DateTime)
        event_type = case((x % 1000 == 500, "error"), (x % 40 == 1, "call_initiated"), (x % 40 == 2, "call_ringing"),
                          (x % 40 == 3, "call_answered"), (x % 40 == 0, "call_ended"),
                          else_="transcript")
        db.session.execute(insert(Event).from_select(
            ["id", "event_type", "call_id", "timestamp_utc", "is_test", "body", "created_at"],
            select(literal("msg_bulk_") + cast(x, String), event_type,
                   cast(x / 40 + 1_000_000, String), cast(moment, db.Integer), x % 10_000 == 4321,
                   literal(ceiling_body().decode()), created).select_from(n)))
        failed = e.seq % 100 == 0
        status = case((failed, FAILED), (e.seq % 1000 == 250, CANCELLED), else_=DELIVERED)
        db.session.execute(insert(Delivery).from_select(
            ["event_seq", "event_type", "call_id", "is_test", "status", "due_at",
             "attempt_count", "last_status_code", "last_duration_ms", "last_attempt_at",
             "delivered_at", "created_at"],
            select(e.seq, e.event_type, e.call_id, e.is_test, status,
                   literal(None), case((failed, 5), else_=1), case((failed, 500), else_=200),
                   1 + (e.seq * 7 % 500) * 0.4, e.created_at, case((status == DELIVERED, e.created_at), else_=None),
                   e.created_at).where(e.seq > last_seq)))
        headers = {"webhook-id": "msg_bulk", "webhook-timestamp": "1700000000",
                   "webhook-signature": FAKE_SIGNATURE, "X-Api-Key": "••••6789"}
        db.session.execute(insert(Attempt).from_select(
            ["delivery_id", "number", "started_at", "duration_ms", "status_code", "ok",
             "request_headers", "response_headers", "response_body"],
            select(d.id, d.attempt_count, d.last_attempt_at, d.last_duration_ms, d.last_status_code,
                   d.status == DELIVERED, literal(headers, a.request_headers.type),
                   literal({"Content-Type": "text/plain"}, a.response_headers.type), literal("ok")).where(d.id > last_delivery)))
        db.session.commit()
    return time.time() - started


def prepare(db: Database, redis_url: str, rows: int, spacing: float) -> tuple[dict, dict]:
    """Schema, settings, an admin, the rows and their roll-ups; returns (figures, the server's env)."""
    from app import create_app
    from events import EVENT_TYPES
    from models import db as sqla
    from models.settings import get_settings
    from models.users import User
    from tasks.rollups import rebuild

    env = {**os.environ, "HOOKLINE_ENV": "testing", "DATABASE_URL": db.url, "REDIS_URL": redis_url,
           "SECRET_KEY": "bench-secret-key"}
    app = create_app({"SQLALCHEMY_DATABASE_URI": db.url, "REDIS_URL": redis_url, "SECRET_KEY": env["SECRET_KEY"]})
    with app.app_context():
        sqla.create_all()
        settings = get_settings()
        settings.enabled, settings.events = True, list(EVENT_TYPES)
        settings.url = "https://hooks.example.com/bench"
        user = User(email="bench@example.com")
        user.set_password("bench password")
        sqla.session.add_all([settings, user])
        sqla.session.commit()
    insert_s = bulk_insert(app, rows, spacing)
    started = time.time()
    with app.app_context():
        with sqla.engine.begin() as connection:
            minutes = rebuild(connection)
        total = sqla.session.scalar(select(func.count()).select_from(sqla.metadata.tables["deliveries"]))
        sqla.engine.dispose()
    return {"deliveries": total, "insert_seconds": insert_s, "rollup_seconds": time.time() - started,
            "rollup_minutes": minutes, "app": app}, env


def timed_get(session: requests.Session, url: str) -> float:
    started = time.perf_counter()
    response = session.get(url, timeout=60)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    assert 'id="delivery-stats"' in response.text, url  # the page with its stats, not a login form
    return elapsed


def measure(app, env: dict, logdir, samples: int) -> tuple[dict, dict]:
    """Start gunicorn on the prepared database; time each page first, cold and warm, then the filters."""
    from tasks import stats

    port = free_port()
    logdir.mkdir(exist_ok=True)
    out = open(logdir / f"gunicorn-{port}.log", "ab")
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
                               "wsgi:app"], cwd=ROOT, env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        def up():
            try:
                return requests.get(base + "/login", timeout=5).status_code == 200
            except requests.RequestException:  # not listening yet, or still booting
                return False

        wait_until(up, 30, "gunicorn to answer")
        session = requests.Session()
        login = session.post(base + "/login", data={"email": "bench@example.com", "password": "bench password"},
                             allow_redirects=False, timeout=30)
        assert login.status_code == 302, login.status_code
        result = {name: {"first_ms": timed_get(session, base + path) * 1000} for name, path in PAGES.items()}
        for name, path in PAGES.items():
            cold = []
            for _ in range(samples):
                with app.app_context():
                    stats.forget()
                cold.append(timed_get(session, base + path))
            warm = [timed_get(session, base + path) for _ in range(samples)]
            result[name].update(cold=summary_ms(cold), warm=summary_ms(warm))
        return result, time_filters(app, session, base + PAGES["log"], samples)
    finally:
        stop([server])
        out.close()


def filter_values(app) -> dict:
    """A call, a webhook-id and an id half-way down the log, for FILTERS' placeholders."""
    from models import db
    from models.events import Delivery, Event

    with app.app_context():
        middle = (db.session.scalar(select(func.max(Delivery.id))) or 0) // 2
        call, msg = db.session.execute(select(Delivery.call_id, Event.id).join(Event)
                                       .where(Delivery.id >= middle).order_by(Delivery.id).limit(1)).one()
        db.session.rollback()
    return {"call": call, "msg": msg, "middle": middle}


def time_filters(app, session: requests.Session, url: str, samples: int) -> dict:
    """Each of FILTERS on the log page, warm (the stats cached): {query string: summary}."""

    values = filter_values(app)
    result = {}
    for pattern in FILTERS:
        query = pattern.format(**values)
        timed_get(session, f"{url}?{query}")  # its plan prepared, its pages read once
        result[pattern] = summary_ms([timed_get(session, f"{url}?{query}") for _ in range(samples)])
    return result


def run(workdir, server_url: str | None, redis_url: str, rows: int, samples: int, say) -> dict:
    """Both shapes on one kind of database (SQLite, or PostgreSQL on ``server_url``)."""
    shapes = {"spread": SPREAD_SECONDS, "day": 86_000 / rows}
    results = {}
    for shape, spacing in shapes.items():
        db = Database(workdir, server_url, name=f"logpage-{shape}")
        try:
            say(f"[{db.kind}] log page, {rows:,} deliveries {spacing:g} s apart: bulk insert and roll-ups")
            figures, env = prepare(db, redis_url, rows, spacing)
            app = figures.pop("app")
            say(f"[{db.kind}] log page, {shape}: {figures['insert_seconds']:.0f} s insert, "
                f"{figures['rollup_seconds']:.0f} s roll-ups; timing through gunicorn")
            figures["spacing_seconds"] = spacing
            figures["pages"], figures["filters"] = measure(app, env, workdir / "logs", samples)
            results[shape] = figures
            with app.app_context():
                from models import db as sqla
                sqla.engine.dispose()
        finally:
            db.close()
            if db.kind == "sqlite":
                for suffix in ("", "-wal", "-shm"):
                    try:
                        os.remove(db.url.removeprefix("sqlite:///") + suffix)
                    except FileNotFoundError:
                        pass
    return results
