"""POST /api/v1/events: the engine's HTTP way in, and the token commands."""

import json

import pytest
from sqlalchemy import func, select

from events import example_envelope
from models import db
from models.events import Delivery, Event
from models.users import ApiToken


@pytest.fixture
def token(app):
    result = app.test_cli_runner().invoke(args=["tokens", "create", "engine"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["token"]


def post(client, token, body, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if isinstance(body, (dict, list)):
        return client.post("/api/v1/events", json=body, headers=headers, **kwargs)
    return client.post("/api/v1/events", data=body, headers=headers, content_type="application/json", **kwargs)


def counts(app):
    with app.app_context():
        return (db.session.scalar(select(func.count()).select_from(Event)),
                db.session.scalar(select(func.count()).select_from(Delivery)))


def test_token_is_printed_once_and_stored_hashed(app, token):
    assert token.startswith("hkl_")
    with app.app_context():
        row = db.session.scalar(select(ApiToken))
        assert row.name == "engine" and token not in row.token_hash and len(row.token_hash) == 64


def test_publish_over_http(app, client, token, integration):
    payload = example_envelope("call_initiated")["payload"]
    response = post(client, token, {"event_type": "call_initiated", "payload": payload, "timestamp_utc": 1760084505})
    assert response.status_code == 202
    event_id = response.json["id"]
    assert event_id.startswith("msg_")
    with app.app_context():
        event = db.session.scalar(select(Event))
        assert event.id == event_id
        assert json.loads(event.body) == {"event_type": "call_initiated", "timestamp_utc": 1760084505,
                                          "payload": payload, "is_test": False}
        assert db.session.scalar(select(ApiToken)).last_used_at is not None


def test_unwanted_event_says_so(client, token, app):
    response = post(client, token, {"event_type": "call_initiated", "payload": example_envelope("call_initiated")["payload"]})
    assert response.status_code == 200
    assert response.json["id"] is None and "disabled" in response.json["reason"]
    assert counts(app) == (0, 0)
    with app.app_context():
        assert db.session.scalar(select(ApiToken)).last_used_at is not None  # the token was still used


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "Bearer "])
def test_missing_or_bad_token_is_401(client, token, header, app, integration):
    headers = {"Authorization": header} if header else {}
    response = client.post("/api/v1/events", json={"event_type": "error", "payload": {}}, headers=headers)
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers
    assert counts(app) == (0, 0)


def test_revoked_token_is_refused(app, client, token, integration):
    result = app.test_cli_runner().invoke(args=["tokens", "revoke", "engine"])
    assert json.loads(result.output) == {"revoked": "engine"}
    assert post(client, token, {"event_type": "error", "payload": {}}).status_code == 401


@pytest.mark.parametrize(
    "body, field",
    [
        (b"not json", "body"),
        (b"[1, 2]", "[0]"),
        (b"42", "body"),
        (b"\xff\xfe{}", "body"),
        ({"payload": {}}, "event_type"),
        ({"event_type": "call_initiated"}, "payload"),
        ({"event_type": "call_exploded", "payload": {}}, "event_type"),
        ({"event_type": "call_initiated", "payload": []}, "payload"),
        ({"event_type": "call_initiated", "payload": {"call_id": 1}}, "payload.from"),
        ({"event_type": "call_initiated", "payload": dict(example_envelope("call_initiated")["payload"], direction="sideways")}, "payload.direction"),
        ({"event_type": "call_initiated", "payload": dict(example_envelope("call_initiated")["payload"], call_id=[1])}, "payload.call_id"),
        ({"event_type": "call_initiated", "payload": example_envelope("call_initiated")["payload"], "timestamp_utc": "yesterday"}, "timestamp_utc"),
        ({"event_type": "call_initiated", "payload": example_envelope("call_initiated")["payload"], "extra": 1}, "extra"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_writes_nothing(app, client, token, integration, body, field):
    response = post(client, token, body)
    assert response.status_code == 400
    assert response.json["field"] == field
    assert response.json["error"]
    assert counts(app) == (0, 0)


def test_body_over_256_kib_is_413(app, client, token, integration):
    payload = dict(example_envelope("error")["payload"], error_message="x" * (300 * 1024))
    response = post(client, token, {"event_type": "error", "payload": payload})
    assert response.status_code == 413
    assert counts(app) == (0, 0)


def test_events_publish_command(app, integration):
    payload = json.dumps(example_envelope("call_answered")["payload"])
    result = app.test_cli_runner().invoke(args=["events", "publish", "call_answered", "--payload", payload])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["id"].startswith("msg_")
    bad = app.test_cli_runner().invoke(args=["events", "publish", "call_answered", "--payload", '{"call_id": 1}'])
    assert bad.exit_code == 2 and "payload.from" in bad.output


def test_simulate_call_publishes_a_consistent_lifecycle(app, integration):
    result = app.test_cli_runner().invoke(args=["simulate-call", "--transcripts", "3", "--direction", "inbound", "--call-id", "77"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [l["event_type"] for l in lines] == ["call_initiated", "call_ringing", "call_answered",
                                                "transcript", "transcript", "transcript", "call_ended"]
    with app.app_context():
        bodies = [json.loads(e.body) for e in db.session.scalars(select(Event).order_by(Event.seq))]
    assert {b["payload"].get("call_id", b["payload"].get("call", {}).get("id")) for b in bodies} == {77}
    assert [b["payload"]["type"] for b in bodies[3:6]] == ["customer", "ai", "customer"]
    ended = bodies[-1]["payload"]
    assert ended["direction"] == "inbound" and len(ended["transcript"]) == 4  # greeting + 3 turns
    assert ended["from"] == bodies[0]["payload"]["from"] and ended["source"] == bodies[0]["payload"]["source"]


@pytest.mark.parametrize(
    "body, field, words",
    [
        (b'{"event_type": "error", "payload": {', "body", "not valid JSON"),
        (b'{"event_type": "error", "payload": {"x": "\xc3\x28"}}', "body", "not valid UTF-8"),
        (b'{"event_type": "error", "payload": ' + b'{"a":' * 40 + b"1" + b"}" * 41, "payload", "nested more than 32"),
        (b"[" * 100000 + b"]" * 100000, "body", "nested"),
    ],
)
def test_malformed_bodies_get_a_clear_400(app, client, token, integration, body, field, words):
    response = post(client, token, body)
    assert response.status_code == 400
    assert response.json["field"] == field
    assert words in response.json["error"]
    assert counts(app) == (0, 0)
