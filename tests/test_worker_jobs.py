"""The worker runs only Hookline's own JSON jobs: nobody with write access to Redis runs code in it.

A real worker (the one `flask worker` runs, in burst mode, in this process)
takes jobs written to the real queue the way an intruder would write them.
"""

import os
import pickle
import subprocess
import sys
import time
import zlib

import pytest
import redis
from rq import Callback, Queue
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.webhook import Webhook

from events import example_envelope
from tasks.jobs import HooklineJob
from tests.conftest import worker_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Mkdir:
    """A pickle that makes a directory when it is unpickled: code run by merely reading a job."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def queue(app, serializer=None) -> Queue:
    connection = redis.Redis.from_url(app.config["REDIS_URL"])
    return Queue(app.config["HOOKLINE_QUEUE"], connection=connection, serializer=serializer)


def status(app, job_id) -> str:
    return Job.fetch(job_id, connection=queue(app).connection, serializer=JSONSerializer).get_status()


@pytest.fixture
def worker_log(app, tmp_path):
    """Run a real `flask worker` until ``done()`` holds; return what it logged."""
    procs = []

    def run(done, timeout=30.0):
        log_path = tmp_path / f"worker-{len(procs)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker"],
                                    cwd=ROOT, env=worker_env(app), stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.terminate()  # a warm shutdown: whatever the current job does is done when it exits
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        assert done(), log_path.read_text()
        return log_path.read_text()

    yield run
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_a_pickled_job_and_a_json_job_naming_os_getpid_do_not_run(app, tmp_path, worker_log):
    pickled = queue(app).enqueue("os.getpid")
    as_json = queue(app, JSONSerializer).enqueue("os.getpid")
    # Two more whose running would leave a trace: a JSON job naming os.mkdir,
    # and a pickle that runs os.mkdir as soon as it is read.
    json_mkdir = queue(app, JSONSerializer).enqueue("os.mkdir", str(tmp_path / "by-json"))
    evil = queue(app).enqueue("tasks.drain.drain")
    evil.connection.hset(evil.key, "data", zlib.compress(pickle.dumps(Mkdir(str(tmp_path / "by-pickle")))))
    jobs = (pickled, as_json, json_mkdir, evil)

    log = worker_log(lambda: all(status(app, job.id) in ("finished", "failed") for job in jobs))

    assert [status(app, job.id) for job in jobs] == ["failed"] * 4
    assert not (tmp_path / "by-json").exists()
    assert not (tmp_path / "by-pickle").exists()
    refusals = [line for line in log.splitlines() if "refused a job on queue hookline" in line]
    assert len(refusals) == 4, log
    assert f"job {pickled.id} is not JSON (pickled?)" in refusals[0]
    assert f"job {as_json.id} names 'os.getpid', which is not one of Hookline's jobs" in refusals[1]
    assert f"job {json_mkdir.id} names 'os.mkdir'" in refusals[2]
    assert f"job {evil.id} is not JSON (pickled?)" in refusals[3]


@pytest.mark.slow
def test_an_allowed_job_runs_but_not_the_callbacks_or_webhooks_it_carries(app, integration, receiver, worker_log):
    """An intruder's publish_event job with a success callback and an RQ job webhook attached."""
    payload = example_envelope("call_ended")["payload"]
    job = queue(app, JSONSerializer).enqueue(
        "tasks.publish_event", "call_ended", payload,
        on_success=Callback("builtins.print"),
        webhooks=[Webhook(receiver.url + "/rq-job-webhook", "finished")])
    # The callback is stored on the job; RQ's own Job would import and call it.
    assert Job.fetch(job.id, connection=job.connection, serializer=JSONSerializer).success_callback is print
    assert HooklineJob.fetch(job.id, connection=job.connection, serializer=JSONSerializer).success_callback is None

    worker_log(lambda: status(app, job.id) == "finished" and len(receiver.requests) >= 1)
    # The event was published and delivered (the drain job ran too), and RQ posted no job webhook.
    assert [r.path for r in receiver.requests] == ["/hooks/calls"]


def test_hookline_queues_json_jobs(app):
    """The drain jobs Hookline queues itself are JSON, the only jobs its worker reads."""
    from tasks.queue import wake

    with app.app_context():
        assert wake()
    hookline = queue(app)
    [job_id] = hookline.job_ids
    data = zlib.decompress(hookline.connection.hget(f"rq:job:{job_id}", "data"))
    assert data.startswith(b'["tasks.drain.drain", null, [], {"helper": false}]')


@pytest.fixture(scope="module")
def password_redis(tmp_path_factory):
    """A private redis-server that wants a password, as production's should."""
    from tests.conftest import free_port, start_redis_server

    port = free_port()
    proc = start_redis_server(port, tmp_path_factory.mktemp("redis-pw"), password="s3cr3t-pw")
    yield port
    proc.terminate()
    proc.wait(10)


def test_events_are_delivered_through_a_redis_that_wants_a_password(
        app_config, password_redis, receiver, start_worker, request):
    app_config["REDIS_URL"] = f"redis://:s3cr3t-pw@127.0.0.1:{password_redis}/0"
    app = request.getfixturevalue("app")
    request.getfixturevalue("integration")
    # Without the password Redis refuses: the URL's password is what lets us in.
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=password_redis).set("x", 1)
    start_worker()
    from tasks import publish_event
    from tasks.queue import flush_rings

    with app.app_context():
        publish_event("call_ended", example_envelope("call_ended")["payload"])
        assert flush_rings()
    assert receiver.wait_for(1)[0].headers["webhook-id"]
    with app.app_context():
        health = app.test_client().get("/healthz")
    assert health.status_code == 200, health.text
