"""The production retry schedule and call hold, run by moving the clock instead of waiting.

No HOOKLINE_RETRY_SCHEDULE or HOOKLINE_RETRY_SCALE here: the panel's default
window (30 s, 2 min, 8 min, 32 min, each ±10%) and the 32 minutes a retrying
head holds its call, as a customer's receiver would see them, with a real
worker, a real receiver and the test's database. The test moves the outbox's
clock (tests/support/clock.py) past each wait; the worker's periodic tick
finds what has come due.
"""

import pytest

from models import utcnow
from tasks.retry import HOLD_SECONDS
from tests.support import wait_until
from tests.support.clock import clock  # noqa: F401 (the fixture)
from tests.test_delivery import deliveries
from tests.test_retry_window import _sent, publish_call


#: Each step waits this long at most: less than any wait it moves the clock past,
#: so only the moved clock can make the step happen.
WAIT = 15


@pytest.fixture
def real_schedule(app_config):
    """The panel's choice in force, unscaled."""
    app_config.update(HOOKLINE_RETRY_SCHEDULE=None, HOOKLINE_RETRY_SCALE=1.0)
    return app_config


def attempts_of(app, index: int) -> int:
    return deliveries(app)[index].attempt_count


def test_the_default_schedule_retries_at_30s_2min_8min_and_the_call_goes_on_after_32min(
        real_schedule, clock, app, integration, receiver, start_worker):
    head, later = publish_call(app, "call_initiated", "call_ringing")
    receiver.respond_to(head, 503, 503, 503)
    start_worker()
    wait_until(lambda: attempts_of(app, 0) == 1, what="the first attempt")
    [head_row, later_row] = deliveries(app)
    assert head_row.status == "retrying" and later_row.status == "pending"
    # The next try is 30 s ±10% away; 25 s on nothing is due.
    first_wait = (head_row.due_at - utcnow()).total_seconds()
    assert 27 - 1 <= first_wait <= 33
    clock.advance(35)  # past the 30 s (±10%) wait
    wait_until(lambda: attempts_of(app, 0) == 2, what="the retry after 30 s", timeout=WAIT)
    assert _sent(receiver, later) == []  # held back behind its call's head

    # Past the 2 min retry and the 32 min hold (counted from the first failure):
    # the head tries a 3rd time and the call's next event goes ahead of it.
    clock.advance(HOLD_SECONDS)
    wait_until(lambda: [d.status for d in deliveries(app)] == ["retrying", "delivered"] and attempts_of(app, 0) == 3,
               what="the call going on after 32 minutes", timeout=WAIT)
    head_row = deliveries(app)[0]
    assert 480 * 0.9 - 5 <= (head_row.due_at - utcnow()).total_seconds() <= 480 * 1.1

    clock.advance(480 * 1.1 + 1)
    wait_until(lambda: deliveries(app)[0].status == "delivered", what="the 4th attempt after 8 min", timeout=WAIT)
    assert [r.status for r in _sent(receiver, head)] == [503, 503, 503, 200]
    assert len(_sent(receiver, later)) == 1


def test_production_refuses_a_moved_clock(tmp_path, monkeypatch):
    from config import check_production_safety, load_config

    monkeypatch.setenv("HOOKLINE_CLOCK_FILE", str(tmp_path / "clock"))
    config = load_config(str(tmp_path), {"HOOKLINE_ENV": "production", "SECRET_KEY": "s" * 32})
    with pytest.raises(RuntimeError, match="HOOKLINE_CLOCK_FILE is for tests"):
        check_production_safety(config)
    monkeypatch.delenv("HOOKLINE_CLOCK_FILE")
    check_production_safety(config)  # starts without it
