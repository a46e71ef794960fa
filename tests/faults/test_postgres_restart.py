"""The fault suite: PostgreSQL restarted in the middle of a burst, on a private cluster.

The test initdb's a cluster of its own (tests/support/postgres.py), so it
never touches a shared server.

An event is acknowledged when ``publish_event`` returned its id; a publish
that raised while the server was down is not acknowledged (the engine
retries it). Every acknowledged event must reach the receiver.
"""

import threading
import time

import pytest
from sqlalchemy.exc import OperationalError

from events import example_envelope
from models import db
from tasks import publish_event
from tests.faults.conftest import assert_all_arrived
from tests.support import wait_until
from tests.support.postgres import private_postgres  # noqa: F401 (a fixture)


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
