"""The fault suite: PostgreSQL restarted in the middle of a burst, on a private cluster.

The test initdb's a cluster of its own in a temporary directory, on a free
port (binaries from ``pg_config --bindir``), so it never touches a shared
server. initdb and postgres refuse to run as root: as root, they run as the
``postgres`` OS user (``runuser``), in a directory chowned to it.

An event is acknowledged when ``publish_event`` returned its id; a publish
that raised while the server was down is not acknowledged (the engine
retries it). Every acknowledged event must reach the receiver.
"""

import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
from sqlalchemy.exc import OperationalError

from events import example_envelope
from models import db
from tasks import publish_event
from tests.conftest import free_port
from tests.faults.conftest import assert_all_arrived
from tests.support import wait_until


def _bindir() -> str | None:
    """The PostgreSQL server binaries' directory, or None."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            return subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                  check=True, timeout=10).stdout.strip()
        except (subprocess.SubprocessError, OSError):
            return None
    return None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1:``port``, restartable."""

    def __init__(self, bindir: str):
        self.bindir = bindir
        self.port = free_port()
        # Not pytest's tmp_path: its parents are root-only, and postgres must reach it.
        self.root = tempfile.mkdtemp(prefix="hookline-pg-", dir="/tmp")
        self.data = os.path.join(self.root, "data")
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        command = [os.path.join(self.bindir, program), *args]
        if self.user is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode:
            raise RuntimeError(f"{program} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=50")
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.root, "log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: what a service restart does; ``immediate``: the server process crashes."""
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def close(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass  # already down
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def private_postgres():
    bindir = _bindir()
    missing = [p for p in ("initdb", "pg_ctl", "postgres")
               if not bindir or not os.access(os.path.join(bindir, p), os.X_OK)]
    if missing:
        pytest.skip(f"PostgreSQL server binaries not found ({', '.join(missing)}; pg_config --bindir: {bindir})")
    if os.geteuid() == 0 and (not shutil.which("runuser") or not _has_user("postgres")):
        pytest.skip("running as root needs runuser and a 'postgres' OS user (initdb refuses root)")
    cluster = PrivatePostgres(bindir)
    yield cluster
    cluster.close()


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture
def app_config(app_config, private_postgres):
    app_config["SQLALCHEMY_DATABASE_URI"] = private_postgres.url
    return app_config


def publish_through_a_restart(app, cluster, count, restart_at, mode):
    """Publish ``count`` events; at ``restart_at`` the server goes down for a second and comes back.

    Returns (acknowledged ids, publishes refused while down, publishes refused after it was back).
    """
    base = example_envelope("transcript")["payload"]
    back_up = threading.Event()

    def restart():
        cluster.stop(mode)
        time.sleep(1.0)
        cluster.start()  # pg_ctl -w: returns once it accepts connections
        back_up.set()

    acknowledged, refused_down, refused_after = [], 0, 0
    restarter = None
    with app.app_context():
        i = 0
        while i < count:
            if i == restart_at and restarter is None:
                restarter = threading.Thread(target=restart)
                restarter.start()
            payload = {**base, "call": {**base["call"], "id": i % 25}, "transcript": f"turn {i}"}
            up_before = back_up.is_set()
            try:
                event_id = publish_event("transcript", payload)
            except OperationalError:
                # Not acknowledged: the engine gets an error and publishes it again.
                db.session.rollback()
                if up_before:
                    refused_after += 1
                else:
                    refused_down += 1
                time.sleep(0.05)
                continue
            finally:
                db.session.remove()
            acknowledged.append(event_id)
            i += 1
            time.sleep(0.004)  # a burst of ~200 events/s, so the restart falls in its middle
    restarter.join()
    return acknowledged, refused_down, refused_after


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restarted_mid_burst(app, app_config, integration, receiver, start_worker, private_postgres, mode):
    if mode == "immediate":
        # A crash of the server may lose the last commits not yet flushed
        # unless publishes wait for the flush (README: HOOKLINE_PUBLISH_SYNC_COMMIT).
        app.config["HOOKLINE_PUBLISH_SYNC_COMMIT"] = True
    start_worker(), start_worker()
    ids, refused_down, refused_after = publish_through_a_restart(app, private_postgres, 400, 150, mode)
    # Every acknowledged id, not just as many requests: a batch whose record
    # the restart refused goes out again when its lease ends (same webhook-ids),
    # and those duplicates alone can make up the count.
    wait_until(lambda: set(ids) <= {r.headers["webhook-id"] for r in list(receiver.requests)},
               timeout=120, what="every acknowledged event at the receiver")
    figures = assert_all_arrived(receiver, ids)
    # Stale pooled connections are replaced (pool_pre_ping): no publish fails once the server is back.
    assert refused_after == 0
    figures.update(refused_while_down=refused_down, refused_after_restart=refused_after)
    report = f"\nFAULT postgres {mode} restart: {figures}"
    print(report)
