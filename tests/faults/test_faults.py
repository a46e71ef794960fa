"""The fault suite (`pytest -m faults`): real processes on 127.0.0.1, things break, nothing is lost.

Each test publishes events, breaks something real (Redis, a worker, the
receiver, the database) and asserts that every published event id reached
the receiver at least once, duplicates carrying the same webhook-id.
"""

import os
import signal
import socket
import sqlite3
import threading
import time

import pytest
from sqlalchemy import text

from events import example_envelope
from models import db
from models.events import Delivery
from tasks import publish_event
from tests.faults.conftest import assert_all_arrived
from tests.support.receiver import Reply


def publish_many(app, count, calls=25, pause=0.0, during=None):
    """Publish ``count`` transcript events across ``calls`` calls; run ``during(i)`` as it goes."""
    ids = []
    base = example_envelope("transcript")["payload"]
    with app.app_context():
        for i in range(count):
            if during:
                during(i)
            payload = {**base, "call": {**base["call"], "id": i % calls}, "transcript": f"turn {i}"}
            ids.append(publish_event("transcript", payload))
            db.session.remove()
            if pause:
                time.sleep(pause)
    return ids


def report(name, figures):
    print(f"\nFAULT {name}: {figures}")


def test_redis_restarted_without_persistence_mid_burst(app, integration, receiver, start_worker, own_redis):
    start_worker(), start_worker()

    def restart_midway(i):
        if i == 250:
            own_redis.restart(down_for=1.0)

    ids = publish_many(app, 500, during=restart_midway)
    receiver.wait_for(len(ids), timeout=90)
    report("redis restart", assert_all_arrived(receiver, ids))


@pytest.fixture
def app_config(app_config):
    # A short lease so a killed worker's claim is taken over quickly.
    app_config.update(HOOKLINE_DELIVERY_TIMEOUT=3.0, HOOKLINE_LEASE_SECONDS=1.0, HOOKLINE_BATCH_SIZE=1,
                      HOOKLINE_RETRY_SCHEDULE=(1, 1, 1, 1, 1, 1))
    return app_config


def test_worker_killed_mid_delivery(app, integration, receiver, start_worker):
    receiver.respond(Reply(200, delay=2.5))  # the first request hangs while we kill
    victim = start_worker()
    ids = publish_many(app, 1)
    receiver.wait_for(1, timeout=20)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(5)
    ids += publish_many(app, 20)
    start_worker()
    receiver.wait_for(22, timeout=60)  # 21 events, the first one twice
    figures = assert_all_arrived(receiver, ids)
    assert figures["duplicates"] >= 1  # the killed send went out again, same webhook-id
    report("worker SIGKILL", figures)


def test_receiver_failing_for_a_while_then_recovering(app, integration, receiver, start_worker):
    receiver.default = Reply(500, body=b"down for maintenance")
    start_worker(), start_worker()
    ids = publish_many(app, 60)
    receiver.wait_for(40, timeout=30)  # a good part of the burst has failed at least once
    time.sleep(1.0)
    receiver.default = Reply(200)
    # Only 200 answers count as arrived: wait until the log says all were delivered.
    with app.app_context():
        deadline = time.time() + 60
        while time.time() < deadline:
            rows = db.session.scalars(db.select(Delivery)).all()
            if all(d.status == "delivered" for d in rows):
                break
            time.sleep(0.5)
            db.session.expire_all()
        assert {d.event.id for d in rows if d.status == "delivered"} == set(ids)
    figures = assert_all_arrived(receiver, ids)
    figures["attempts"] = len(receiver.requests)
    report("receiver 500 then 200", figures)


def _drip_server():
    """A raw socket server that sends one header byte per second, for ever."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return

            def drip(c=conn):
                try:
                    c.recv(65536)
                    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
                        c.sendall(bytes([byte]))
                        time.sleep(1)
                except OSError:
                    pass
            threading.Thread(target=drip, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server


def _rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def _first_attempt(app, event_id, timeout=30):
    """The first recorded attempt of ``event_id``'s delivery, waiting for it."""
    from models.events import Attempt, Event

    with app.app_context():
        deadline = time.time() + timeout
        while time.time() < deadline:
            attempt = db.session.scalars(db.select(Attempt).join(Delivery).join(Event)
                                         .where(Event.id == event_id)).first()
            if attempt is not None:
                return attempt
            time.sleep(0.2)
            db.session.rollback()
    raise AssertionError(f"no attempt recorded for {event_id}")


@pytest.mark.parametrize("kind", ["slow-drip", "50MB-body"])
def test_slow_and_huge_receivers_cannot_hold_a_worker(app, integration, receiver, start_worker, kind):
    from models.settings import get_settings

    app.config["HOOKLINE_DELIVERY_TIMEOUT"] = 10.0
    if kind == "slow-drip":
        server = _drip_server()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/drip"
    else:
        # A small reply first: the worker's memory is measured once it has
        # delivered (imports, connections, caches all warm), not while it starts.
        receiver.respond(Reply(200), Reply(200, body=b"x" * (50 * 1024 * 1024)))
        url = receiver.url
    with app.app_context():
        settings = get_settings()
        settings.url = url
        db.session.commit()
    worker = start_worker()
    warm_up = []
    if kind == "50MB-body":
        warm_up = publish_many(app, 1)
        _first_attempt(app, warm_up[0])
    rss_before = _rss_kb(worker.pid)
    ids = publish_many(app, 1)
    attempt = _first_attempt(app, ids[0])
    rss_after = _rss_kb(worker.pid)
    if kind == "slow-drip":
        assert attempt.error_kind == "timeout"
        assert attempt.duration_ms <= 11_000
        report(kind, {"published": 1, "held_worker_ms": round(attempt.duration_ms)})
    else:
        assert attempt.ok and attempt.status_code == 200
        assert len(attempt.response_body) <= 4096
        assert rss_after - rss_before < 20_000, (rss_before, rss_after)
        figures = assert_all_arrived(receiver, warm_up + ids)
        figures["worker_rss_growth_kb"] = rss_after - rss_before
        report(kind, figures)


def test_database_locked_by_another_writer(app, integration, receiver, start_worker):
    start_worker()
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    released = threading.Event()

    def hold_lock():
        if url.startswith("sqlite"):
            conn = sqlite3.connect(url.split("sqlite:///", 1)[1], timeout=10)
            conn.execute("BEGIN EXCLUSIVE")
            time.sleep(3)
            conn.rollback()
            conn.close()
        else:
            with app.app_context():
                with db.engine.connect() as conn:
                    conn.execute(text("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE"))
                    time.sleep(3)
                    conn.rollback()
        released.set()

    first = publish_many(app, 10)
    locker = threading.Thread(target=hold_lock)
    locker.start()
    time.sleep(0.2)
    second = publish_many(app, 10)  # each waits for the lock (busy_timeout), then commits
    locker.join()
    ids = first + second
    receiver.wait_for(len(ids), timeout=60)
    report("database locked 3 s", assert_all_arrived(receiver, ids))
