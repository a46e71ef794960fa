"""Engine input is bounded where it is validated: what passes is stored and sent, the rest is a 400
naming the field — the same refusal from the API, ``publish_event`` and the RQ job, never a 500,
never a half-written row (issue 18, item 2 and 3)."""

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from events import bounds, example_envelope
from models import db
from models.events import Delivery, Event
from tests.engine_input import api_body, via_api, via_python, via_rq


@pytest.fixture
def token(app):
    return json.loads(app.test_cli_runner().invoke(args=["tokens", "create", "engine"]).output)["token"]


def counts(app):
    with app.app_context():
        return (db.session.scalar(select(func.count()).select_from(Event)),
                db.session.scalar(select(func.count()).select_from(Delivery)))


def payload(**changes):
    return {**example_envelope("call_initiated")["payload"], **changes}


def test_millisecond_timestamps_are_stored_and_sent(app, client, token, integration):
    """1760084505000 overflowed PostgreSQL's INTEGER column (a 500); it is BIGINT now."""
    answer = via_api(client, token, api_body("call_initiated", payload(), 1760084505000))
    assert answer[0] == "accepted"
    assert via_python(app, "call_initiated", payload(), timestamp_utc=2**63 - 1)[0] == "accepted"
    with app.app_context():
        rows = db.session.scalars(select(Event).order_by(Event.seq)).all()
        assert [e.timestamp_utc for e in rows] == [1760084505000, 2**63 - 1]
        assert json.loads(rows[0].body)["timestamp_utc"] == 1760084505000


# Each case was a 500 (DataError, OverflowError, UnicodeEncodeError, ValueError) or
# a 202 with something unstorable or invalid JSON; now a 400 naming the field.
HOSTILE = [
    ("timestamp 2^63", payload(), 2**63, "timestamp_utc", "out of range"),
    ("call_id 101 chars", payload(call_id="c" * 101), None, "payload.call_id", "longer than 100"),
    ("integer call_id 2^63", payload(call_id=2**63), None, "payload.call_id", "signed 64-bit"),
    ("NUL in call_id", payload(call_id="call\x00"), None, "payload.call_id", "NUL"),
    ("NUL in a value", payload(source="a\x00b"), None, "payload.source", "NUL"),
    ("lone surrogate", payload(**{"from": "+90\ud800"}), None, "payload.from", "lone surrogate"),
    ("lone surrogate in a key", payload(extra={"k\udfff": 1}), None, "payload.extra", "lone surrogate"),
    ("NaN", payload(extra=float("nan")), None, "payload.extra", "not a JSON number"),
    ("Infinity", payload(extra=[1, float("inf")]), None, "payload.extra.1", "not a JSON number"),
    ("-Infinity", payload(extra={"x": float("-inf")}), None, "payload.extra.x", "not a JSON number"),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_input_gets_the_same_refusal_from_all_three_ways_in(app, client, token, integration, case):
    _, body, timestamp, field, words = case
    kwargs = {} if timestamp is None else {"timestamp_utc": timestamp}
    answers = [
        via_api(client, token, api_body("call_initiated", body, timestamp)),
        via_python(app, "call_initiated", body, **kwargs),
        via_rq(app, "call_initiated", body, **kwargs),
    ]
    assert answers[0][:2] == ("refused", field), answers[0]
    assert words in answers[0][2]
    assert answers[1] == answers[0] and answers[2] == answers[0]
    assert counts(app) == (0, 0)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_nan_and_infinity_literals_are_refused_not_sent_as_invalid_json(app, client, token, integration, literal):
    body = api_body("call_initiated", payload())[:-2] + b', "x": ' + literal + b"}}"
    answer = via_api(client, token, body)
    assert answer[:2] == ("refused", "payload.x") and "not a JSON number" in answer[2]
    assert counts(app) == (0, 0)


def test_an_integer_literal_over_4300_digits_is_refused_naming_the_field(app, client, token, integration):
    body = api_body("call_initiated", payload())[:-2] + b', "big": -' + b"9" * 4301 + b"}}"
    assert via_api(client, token, body) == (
        "refused", "payload.big", "payload.big: is an integer of more than 4,300 digits (write it as a string)")
    # 4,300 digits is still a number json can write.
    assert via_api(client, token, body.replace(b"9" * 4301, b"9" * 4300))[0] == "accepted"
    # The in-process call refuses the same number.
    assert via_python(app, "call_initiated", payload(big=-(10**4301)))[:2] == ("refused", "payload.big")
    assert counts(app) == (1, 1)


def test_a_chunked_body_over_256_kib_gets_413_not_a_cut_body(app, client, token, integration):
    """Without Content-Length Werkzeug's stream stopped at the limit: the cut body was parsed (400)."""
    def chunked(body):
        return client.post("/api/v1/events", headers={"Authorization": f"Bearer {token}",
                                                      "Content-Type": "application/json",
                                                      "Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True, "wsgi.input": io.BytesIO(body)})

    big = api_body("transcript", {"pad": "x" * (256 * 1024)})
    response = chunked(big)
    assert response.status_code == 413 and "256 KiB" in response.json["error"]
    # Exactly 256 KiB is not over the limit: it is read whole (and refused for its content).
    at_limit = api_body("call_initiated", payload())[:-2] + b', "pad": "'
    at_limit += b"x" * (256 * 1024 - len(at_limit) - 3) + b'"}}'
    assert len(at_limit) == 256 * 1024
    assert chunked(at_limit).status_code == 202
    assert counts(app) == (1, 1)


# Values of every kind the bounds judge: the bad ones (NaN, NUL, lone
# surrogates, over-long integers, non-JSON types and keys, deep nesting) among
# good ones, so a refusal's field path and message can be compared.
_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
            | st.sampled_from(["\x00", "a\ud800", "é\x00", bounds.IntegerTooLong("1" * 4301),
                               b"bytes", (1, 2), {1, 2}, float("inf")])
            # 10**4300 itself: hypothesis cannot repr it inside sampled_from.
            | st.sampled_from([1, -1]).map(lambda sign: sign * 10**4300))
_keys = st.text(max_size=4) | st.sampled_from([1, None, "k\x00", "\udfff", bounds.IntegerTooLong("9" * 4301)])
_values = st.recursive(_scalars, lambda children: st.lists(children, max_size=3)
                       | st.dictionaries(_keys, children, max_size=3), max_leaves=12)


def _nested(depth, leaf):
    for i in range(depth):
        leaf = [leaf] if i % 2 else {"k": leaf}
    return leaf


@settings(max_examples=400, deadline=None)
@given(st.one_of(_values, st.tuples(st.integers(30, 34), _values).map(lambda t: _nested(*t))))
def test_bounds_name_the_same_field_and_message_as_a_walk_of_every_value(value):
    """check_json_value clears good payloads without building paths; its answer must not change."""
    assert bounds.check_json_value(value, "payload") == bounds._first_problem(value, "payload")
