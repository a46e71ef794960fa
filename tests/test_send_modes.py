"""How a drain sends a batch, and how publishes wake it, seen from outside.

A drain sends a batch side by side, up to HOOKLINE_SEND_CONCURRENCY
requests in flight, so a receiver that makes it wait costs one wait per
window, not one per request. Publishes close together share one wake-up;
a short-lived publishing process wakes a worker before it exits. A drain
asks another worker for help only when it is behind, and a busy drain
keeps saying it listens. In a live stream a drain lets each batch gather
for a moment; a lone event or a backlog goes on at once.
"""

import json
import subprocess
import sys
import threading
import time

from datetime import timedelta

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer
from sqlalchemy import update

from events import example_envelope
from models import db, utcnow
from models.events import PENDING, Delivery
from tasks import publish_event
from tasks import pacing
from tasks.drain import Claimed, drain
from tasks.pacing import is_streaming
from tasks.queue import BELL, DRAIN_FLAG, DRAIN_FLAG_TTL, flush_rings
from tests.conftest import worker_env
from tests.support import publish_calls
from tests.support.receiver import Reply


#: Three events a call: a helper's batches move one of each call's at a time.
THREE_EVENTS = ("call_initiated", "call_ringing", "call_answered")


def test_a_batch_goes_out_side_by_side_up_to_the_send_concurrency(app, integration, receiver):
    # Each answer takes long enough that the whole window is in flight at once, even on a busy box.
    receiver.default = Reply(delay=0.3)
    window = app.config["HOOKLINE_SEND_CONCURRENCY"]
    publish_calls(app, window + 4)
    with app.app_context():
        drain()
    assert len(receiver.wait_for(window + 4)) == window + 4
    assert receiver.max_in_flight == window


def test_publishes_close_together_share_one_wake_up(app, integration):
    r = redis.Redis.from_url(app.config["REDIS_URL"])
    r.config_resetstat()
    publish_calls(app, 100)
    rings = int(r.info("commandstats").get("cmdstat_lpush", {}).get("calls", 0))
    assert 1 <= rings < 100
    assert r.llen(BELL) == 1
    assert Queue("hookline", connection=r).count == 1  # one drain job for the whole burst


def test_a_publishing_process_wakes_a_worker_before_it_exits(app, integration):
    payload = example_envelope("call_ended")["payload"]
    result = subprocess.run(
        [sys.executable, "-m", "flask", "events", "publish", "call_ended", "--payload",
         json.dumps(payload)],
        env=worker_env(app), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    r = redis.Redis.from_url(app.config["REDIS_URL"])
    assert Queue("hookline", connection=r).count == 1


def _helpers_queued(app):
    queue = Queue("hookline", connection=redis.Redis.from_url(app.config["REDIS_URL"]),
                  serializer=JSONSerializer)
    return sum(1 for job in queue.jobs if job.kwargs.get("helper"))


def _due_since(app, seconds):
    with app.app_context():
        db.session.execute(update(Delivery).values(due_at=utcnow() - timedelta(seconds=seconds)))
        db.session.commit()


@pytest.mark.parametrize("waited, helpers", [(10.0, 1), (0.0, 0)], ids=["behind", "keeping-up"])
def test_a_full_batch_asks_for_a_helper_only_when_it_waited(app, integration, receiver, monkeypatch,
                                                            waited, helpers):
    # Due for longer than BEHIND_SECONDS, the drain is behind; a drain keeping
    # up with a stream asks for no helper, which would only split its batches.
    # The threshold is widened from 0.1 s so that a busy box's slow publish
    # and claim do not make a fresh batch look old.
    monkeypatch.setattr(pacing, "BEHIND_SECONDS", 5.0)
    calls = app.config["HOOKLINE_BATCH_SIZE"] + 8
    publish_calls(app, calls)
    _due_since(app, waited)
    with app.app_context():
        drain(linger=0)
    assert len(receiver.wait_for(calls)) == calls
    assert _helpers_queued(app) == helpers


def test_a_batch_from_a_live_stream_lets_the_next_claim_gather(app, integration, receiver, monkeypatch):
    # Three calls, two events each, just published: the first batch (three
    # heads, not full, all fresh) is a stream, so the drain lets it last
    # GATHER_SECONDS before claiming the second events. Widened here so the
    # test does not depend on the box's speed.
    monkeypatch.setattr(pacing, "GATHER_SECONDS", 1.0)
    publish_calls(app, 3, ("call_initiated", "call_ringing"))
    started = time.time()
    with app.app_context():
        drain(linger=0)
    requests = receiver.wait_for(6)
    second = sorted(r.at for r in requests[3:])
    assert [json.loads(r.body)["event_type"] for r in requests] == ["call_initiated"] * 3 + ["call_ringing"] * 3
    # The gathering counts from the first batch's start, which the first
    # batch's own send (and a test process's first drain setting up its
    # sender) eats into: so the second events arrive a whole GATHER_SECONDS
    # after the drain started, not after the first events arrived. Without
    # the gathering they arrive moments after the first.
    assert second[0] - started >= 1.0


def test_a_lone_event_or_a_backlog_is_never_held_back(app):
    def batch(ages):
        now = utcnow()
        return [Claimed(i, "call_initiated", False, 0, None, due_at=now - timedelta(seconds=age))
                for i, age in enumerate(ages)]

    size = app.config["HOOKLINE_BATCH_SIZE"]
    assert is_streaming(batch([0, 0, 0]), size)
    assert not is_streaming(batch([0]), size)  # low load: latency first
    assert not is_streaming(batch([0] * size), size)  # full: more is waiting already
    assert not is_streaming(batch([0, 0, 1.0]), size)  # a queued or retried event: a backlog


def test_a_hanging_receiver_gets_the_whole_batch_at_once(app, integration, receiver):
    receiver.default = Reply(delay=1.05)
    publish_calls(app, 4)
    with app.app_context():
        drain()
    requests = receiver.wait_for(4)
    assert len(requests) == 4 and all(r.ok for r in requests)
    assert receiver.max_in_flight == 4  # not one after another: four deadlines' worth


def test_a_helper_stops_at_its_first_small_batch(app, integration, receiver):
    # Five calls with three events each, published a second ago: old enough,
    # but five heads are less than a quarter of a batch, so there is no
    # backlog worth a second drain. The helper sends its batch and the one
    # it claimed ahead, then stops.
    publish_calls(app, 5, THREE_EVENTS)
    _due_since(app, 1.0)
    with app.app_context():
        assert drain(helper=True) == 10
    assert len(receiver.wait_for(10)) == 10
    with app.app_context():
        assert db.session.query(Delivery).filter(Delivery.status == PENDING).count() == 5


def test_a_helper_goes_on_while_its_share_of_the_backlog_is_a_quarter_batch_or_more(app, integration, receiver):
    # The listening drain holds the heads of most calls, so a helper's batches
    # are rarely full: old heads over a quarter of a batch keep it going
    # until the backlog is gone.
    calls = app.config["HOOKLINE_BATCH_SIZE"] // 4 + 4
    publish_calls(app, calls, THREE_EVENTS)
    _due_since(app, 1.0)
    with app.app_context():
        assert drain(helper=True) == 3 * calls
    assert len(receiver.wait_for(3 * calls)) == 3 * calls


def test_a_busy_drain_keeps_saying_it_listens(app, integration, receiver):
    # Busy for longer than the flag's TTL, never idle: had the flag expired,
    # the next publish would queue a second listening drain, and the two
    # would split the stream.
    receiver.default = Reply(delay=0.25)
    with app.app_context():
        for _ in range(int(DRAIN_FLAG_TTL / 0.25) + 4):  # one call: one request at a time
            publish_event("transcript", dict(example_envelope("transcript")["payload"], call_id=7))
        flush_rings()
    flags = []

    def drain_in_thread():
        with app.app_context():
            drain(linger=0)

    draining = threading.Thread(target=drain_in_thread)
    draining.start()
    r = redis.Redis.from_url(app.config["REDIS_URL"])
    for _ in range(int(DRAIN_FLAG_TTL) + 1):
        time.sleep(1)
        flags.append(bool(r.exists(DRAIN_FLAG)))
    draining.join()
    assert flags == [True] * len(flags)


def _batch_sizes(app):
    """The size of each batch the drain claimed, in claim order: deliveries keep their last claim's token."""
    with app.app_context():
        rows = db.session.query(Delivery.id, Delivery.claimed_by).order_by(Delivery.id).all()
    sizes = {}
    for _, token in rows:
        sizes[token] = sizes.get(token, 0) + 1
    return list(sizes.values())


def test_a_drain_behind_a_backlog_claims_larger_batches_while_answers_are_quick(app, integration, receiver,
                                                                                monkeypatch):
    # Every batch pays one claim and one commit: behind, with quick answers,
    # each full batch doubles the next claim, up to GROW_FACTOR batches' worth.
    monkeypatch.setattr(pacing, "GROW_FACTOR", 4)
    app.config["HOOKLINE_BATCH_SIZE"] = 4
    publish_calls(app, 4 + 8 + 16 + 16 + 3)
    _due_since(app, 10.0)
    with app.app_context():
        drain(linger=0)
    assert len(receiver.wait_for(47)) == 47
    assert _batch_sizes(app) == [4, 8, 16, 16, 3]


def test_a_slow_answer_keeps_the_claims_at_the_batch_size(app, integration, receiver, monkeypatch):
    # A batch is what a slow receiver holds up: one slow answer and the next claim is a plain batch again.
    monkeypatch.setattr(pacing, "ANSWERED_WITHIN_MS", 50.0)
    receiver.default = Reply(delay=0.1)
    app.config["HOOKLINE_BATCH_SIZE"] = 4
    publish_calls(app, 12)
    _due_since(app, 10.0)
    with app.app_context():
        drain(linger=0)
    assert len(receiver.wait_for(12)) == 12
    assert _batch_sizes(app) == [4, 4, 4]
