"""Property: one generator of engine input, valid and hostile, through the API, the Python call
and the RQ job. Every input is accepted by all three and delivered byte-identical (signed), or
refused by all three with the same error naming a field; never a 500, never a half-written row.

The default run tries a small profile; ``pytest -m deep_properties -s`` the deep one (2,000
examples per path per database; .ci/run runs it once on SQLite and once on PostgreSQL).
"""

import contextlib
import json
import os
import sys

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from standardwebhooks import Webhook

from events import EVENT_TYPES, example_envelope
from models import db
from models.events import Delivery, Event
from tests.engine_input import api_body, via_api, via_python, via_rq
from tests.test_deliveries import run_drain

SMALL, DEEP = 25, 2000

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(st.characters(exclude_characters="\x00"), max_size=20)  # any Unicode but NUL
# Strings with what the database or JSON cannot hold: NUL, lone surrogates.
HOSTILE_TEXT = st.builds(lambda a, bad, b: a + bad + b, st.text(max_size=5),
                         st.sampled_from(["\x00", "\ud800", "\udfff", "\udc80"]), st.text(max_size=5))
HUGE_INT = st.integers(4290, 4400).map(lambda n: 10**n) | st.just(-(10**4300) + 1)
VALID_LEAF = st.one_of(st.none(), st.booleans(), INT64, st.integers(min_value=-(2**70), max_value=2**70),
                       st.floats(allow_nan=False, allow_infinity=False), TEXT)
HOSTILE_LEAF = st.one_of(st.sampled_from([float("nan"), float("inf"), float("-inf")]), HOSTILE_TEXT, HUGE_INT)


def json_values(leaf):
    return st.recursive(leaf, lambda children: st.lists(children, max_size=3)
                        | st.dictionaries(TEXT | HOSTILE_TEXT, children, max_size=3), max_leaves=8)


VALID = {
    "value": json_values(VALID_LEAF),
    "key": TEXT,
    "call_id": st.one_of(INT64, st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=100),
                         st.sampled_from([1, "1", "call-7"])),  # shared ids: a call's events queue in order
    "timestamp": st.one_of(st.none(), st.integers(min_value=0, max_value=2**63 - 1), st.just(1760084505000)),
}
HOSTILE = {
    "value": json_values(VALID_LEAF | HOSTILE_LEAF),
    "key": HOSTILE_TEXT,
    "call_id": st.one_of(st.integers(min_value=2**63, max_value=2**66), st.integers(max_value=-(2**63) - 1),
                         st.text(min_size=95, max_size=110), HOSTILE_TEXT, st.just(""), st.floats()),
    "timestamp": st.one_of(st.integers(min_value=2**63, max_value=2**64), st.integers(max_value=-1),
                           st.floats(), st.text(max_size=5), st.booleans()),
}


def pick(draw, what):
    """A valid value for ``what`` nine times in ten, else a hostile one: about half the inputs are valid."""
    return draw((HOSTILE if draw(st.integers(0, 9)) == 0 else VALID)[what])


@st.composite
def engine_input(draw):
    """(event_type, payload, timestamp_utc): an example event with its ids and one field changed."""
    event_type = draw(st.sampled_from(EVENT_TYPES))
    payload = example_envelope(event_type, is_test=False)["payload"]
    if "call" in payload:
        payload["call"]["id"] = pick(draw, "call_id")
    else:
        payload["call_id"] = pick(draw, "call_id")
    change = draw(st.sampled_from(["none", "replace", "add", "add"]))
    if change == "replace":  # mostly refused by the schema: a required field of the wrong shape
        payload[draw(st.sampled_from(sorted(payload)))] = pick(draw, "value")
    elif change == "add":
        payload[pick(draw, "key")] = pick(draw, "value")
    return event_type, payload, pick(draw, "timestamp")


@contextlib.contextmanager
def any_int_digits():
    """Integers of any length convert to and from text (Python's default stops at 4,300 digits)."""
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(before)


def rows(app):
    with app.app_context():
        return (db.session.scalar(select(func.count()).select_from(Event)),
                db.session.scalar(select(func.count()).select_from(Delivery)))


def expected_body(event_type, payload, timestamp) -> bytes:
    """The envelope as the receiver must get it, written here independently of publish."""
    envelope = {"event_type": event_type, "timestamp_utc": timestamp, "payload": payload, "is_test": False}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


def run_property(app, client, token, secret, receiver, examples):
    """Drive ``examples`` inputs through the three ways in; then deliver and compare every body."""
    app.config["HOOKLINE_DRAIN_LINGER"] = 0
    tally = {"examples": 0, "accepted": 0, "refused": 0}
    expected = {}  # event id -> (event_type, payload, timestamp_utc or None)

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(engine_input())
    # Found once: a key named like the exception once made the RQ answer's field unreadable.
    @example(("call_initiated", {**example_envelope("call_initiated", is_test=False)["payload"],
                                 "InvalidEvent": {"\x00": None}}, None))
    def one(case):
        event_type, payload, timestamp = case
        kwargs = {} if timestamp is None else {"timestamp_utc": timestamp}
        before = rows(app)
        answers = [via_api(client, token, api_body(event_type, payload, timestamp)),
                   via_python(app, event_type, payload, **kwargs),
                   via_rq(app, event_type, payload, **kwargs)]
        kinds = {a[0] for a in answers}
        assert len(kinds) == 1, answers
        tally["examples"] += 1
        after = rows(app)
        if kinds == {"refused"}:
            tally["refused"] += 1
            # The same field and message (the RQ job's only as its message: see via_rq).
            assert answers[0][1:] == answers[1][1:] and answers[2][2] == answers[0][2], answers
            field = answers[0][1]
            assert field in ("event_type", "timestamp_utc", "payload") or field.startswith("payload."), field
            assert after == before, "a refused event wrote rows"
        else:
            tally["accepted"] += 1
            assert after == (before[0] + len(answers), before[1] + len(answers)), "half-written"
            for answer in answers:
                expected[answer[1]] = (event_type, payload, timestamp)

    # Integers of any length can be written and read in this test, as by an
    # engine in another language; Hookline must refuse them by itself.
    with any_int_digits():
        one()
    # Deliver everything accepted, as a worker would, and compare what arrived.
    while len(receiver.requests) < len(expected):
        if not run_drain(app):
            break
    got = {r.headers["webhook-id"]: r for r in receiver.requests}
    assert set(got) == set(expected)
    for event_id, (event_type, payload, timestamp) in expected.items():
        request = got[event_id]
        if timestamp is None:
            timestamp = json.loads(request.body)["timestamp_utc"]
        assert request.body == expected_body(event_type, payload, timestamp)
        Webhook(secret).verify(request.body, request.headers)
    tally["delivered"] = len(got)
    return tally


@pytest.fixture
def token(app):
    return json.loads(app.test_cli_runner().invoke(args=["tokens", "create", "engine"]).output)["token"]


def report(app, tally):
    database = app.config["SQLALCHEMY_DATABASE_URI"].split(":")[0]
    print(f"\nengine input property on {database}: {tally['examples']} examples per path (API, Python, RQ), "
          f"{tally['accepted']} accepted and {tally['delivered']} delivered byte-identical, "
          f"{tally['refused']} refused naming a field, 0 server errors, 0 half-written rows")


def test_engine_input_is_delivered_byte_identical_or_refused_naming_a_field(app, client, token, integration,
                                                                            receiver):
    report(app, run_property(app, client, token, integration, receiver, SMALL))


@pytest.mark.deep_properties
@pytest.mark.slow
def test_engine_input_property_deep(app, client, token, integration, receiver, request):
    # Selected by marker, or by HOOKLINE_DEEP_PROPERTIES=1 inside a whole-suite
    # run (CI), where it runs beside the other tests on a worker of its own.
    if ("deep_properties" not in (request.config.option.markexpr or "")
            and os.environ.get("HOOKLINE_DEEP_PROPERTIES") != "1"):
        pytest.skip("the deep profile runs with -m deep_properties or HOOKLINE_DEEP_PROPERTIES=1")
    tally = run_property(app, client, token, integration, receiver, DEEP)
    report(app, tally)
    assert tally["examples"] >= DEEP
