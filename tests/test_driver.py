"""tasks.driver: the drain's batch statements store what SQLAlchemy would, and count what they changed."""

import itertools
import json
import random
import re
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import JSON, Boolean, DateTime, null, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from models import db, utcnow
from models.events import Attempt, Delivery
from tasks import driver, jsontext, outbox
from tasks.publish import envelope_body
from tests.support import publish_calls


def test_sqlite_datetimes_are_written_as_sqlalchemy_writes_them():
    dialect = sqlite.dialect()
    ours = driver.bind_processor(DateTime(), dialect)
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    values = [None, datetime(2026, 12, 6, 10), datetime(999, 1, 2, 3, 4, 5, 6), datetime.min, datetime.max,
              date(2026, 1, 1), datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=3)))]
    rng = random.Random(23)
    values += [datetime(1970, 1, 1) + timedelta(microseconds=rng.randrange(2 ** 55)) for _ in range(10_000)]
    assert [ours(v) for v in values] == [theirs(v) for v in values]


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.psycopg.dialect()], ids=["sqlite", "postgresql"])
def test_booleans_are_written_as_sqlalchemy_writes_them_and_refused_as_it_refuses_them(dialect):
    ours = driver.bind_processor(Boolean(), dialect)
    theirs = Boolean().dialect_impl(dialect).bind_processor(dialect)
    values = [True, False, None, 1, 0, 1.0]
    assert [(ours(v), type(ours(v))) for v in values] == [(theirs(v), type(theirs(v))) for v in values]
    for bad in (2, "yes"):
        with pytest.raises((TypeError, ValueError)) as refused:
            ours(bad)
        with pytest.raises(type(refused.value), match=re.escape(str(refused.value))):
            theirs(bad)


def test_the_envelope_encoder_writes_what_json_writes_with_its_options():
    values = [{"event_type": "transcript", "timestamp_utc": 2**63 - 1, "is_test": False,
               "payload": {"ü ✓": ["\"q\" \\ \n\t", 1.5, -0.0, 1e300, None, True, {"": []}], "k": 10**4299}}]
    options = dict(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    encode = jsontext.json_encoder(**options)
    assert [encode(v) for v in values] == [json.JSONEncoder(**options).encode(v) for v in values]
    with pytest.raises(ValueError):
        encode({"payload": float("nan")})
    assert encode({"after": "an error"}) == '{"after":"an error"}'


def _claimed(app, count: int, token: str) -> list[int]:
    publish_calls(app, count)
    with app.app_context():
        db.session.execute(update(Delivery).values(claimed_by=token))
        db.session.commit()
        return db.session.scalars(select(Delivery.id).order_by(Delivery.id)).all()


@pytest.mark.parametrize("per_statement", [500, 2], ids=["one statement", "in chunks"])
def test_a_batch_write_changes_and_counts_only_the_rows_still_held(app, integration, monkeypatch, per_statement):
    # On PostgreSQL the rows go as one statement (or several of at most
    # _ROWS_PER_STATEMENT rows): the count is still that of the rows changed,
    # the fence of tasks.outbox.write.
    monkeypatch.setattr(driver, "_ROWS_PER_STATEMENT", per_statement)
    ids = _claimed(app, 5, "ours")
    now = utcnow().replace(microsecond=123456)
    with app.app_context():
        db.session.execute(update(Delivery).where(Delivery.id == ids[0]).values(claimed_by="theirs"))
        changes = [dict(delivery_id=i, held_by="ours", status="retrying", attempt_count=1, last_attempt_at=now,
                        last_status_code=None if i % 2 else 503, last_duration_ms=1.5, lease_until=None,
                        delivered_at=None, last_error="it's \"down\" ✓", holds_call_until=now, due_at=now)
                   for i in ids]
        assert driver.executemany(db.session, outbox._UPDATE_HELD, changes) == 4
        attempts = [dict(delivery_id=i, number=1, started_at=now, duration_ms=1.5, status_code=503, ok=False,
                         url="http://x/", request_headers={"a": "b ✓"}, response_headers={},
                         response_body=None, error_kind="status", error_message="503") for i in ids[1:]]
        assert driver.executemany(db.session, outbox._INSERT_ATTEMPTS, attempts) == 4
        db.session.commit()
        rows = db.session.execute(select(Delivery.status, Delivery.last_status_code, Delivery.last_error,
                                         Delivery.due_at).order_by(Delivery.id)).all()
        assert rows[0].status == "pending"
        assert [tuple(r) for r in rows[1:]] == [("retrying", None if i % 2 else 503, "it's \"down\" ✓", now)
                                               for i in ids[1:]]
        stored = db.session.execute(select(Attempt.delivery_id, Attempt.request_headers, Attempt.response_headers,
                                           Attempt.started_at).order_by(Attempt.id)).all()
        assert [tuple(r) for r in stored] == [(i, {"a": "b ✓"}, {}, now) for i in ids[1:]]


def test_a_value_too_long_for_its_column_is_refused_not_cut(app, integration):
    ids = _claimed(app, 2, "ours")
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite does not enforce a VARCHAR's length")
        changes = [dict(delivery_id=i, held_by="ours", status="x" * 40) for i in ids]
        with pytest.raises(DBAPIError):
            driver.executemany(db.session, outbox._UPDATE_HELD, changes)
        db.session.rollback()


def test_json_is_written_as_json_dumps_writes_it():
    values = [{}, {"Content-Type": "application/json", "webhook-id": "msg_1", "X-Ünï": "✓ \"q\" \\ \n\x00"},
              [1, 2.5, float("nan"), float("inf"), None, True, False, "s"], "just a string", 3, None,
              {"nested": {"list": [{"a": 1e300}, -0.0]}, 1: "int key", None: "none key", 2.5: "float key"}]
    assert [driver.dumps(v) for v in values] == [__import__("json").dumps(v) for v in values]
    with pytest.raises(TypeError):
        driver.dumps({"a": object()})
    assert driver.dumps({"after": "an error"}) == '{"after": "an error"}'
    dialect = sqlite.dialect()
    ours = driver.bind_processor(JSON(), dialect)
    theirs = JSON().dialect_impl(dialect).bind_processor(dialect)
    assert [ours(v) for v in values] == [theirs(v) for v in values]
    assert ours(JSON.NULL) == theirs(JSON.NULL) and ours(null()) == theirs(null()) is None


def test_postgresql_json_goes_in_as_the_same_text_sqlalchemy_stores(app, integration):
    # The multi-row statement binds JSON as json.dumps' text, not psycopg's
    # Json: the column (``json``, kept as written) must read back the same.
    ids = _claimed(app, 1, "ours")
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("PostgreSQL's multi-row form")
        values = [{}, {"Content-Type": "application/json", "webhook-id": "msg_1", "X-Ünï": "✓ \"q\" \\ \n"},
                  [1, 2.5, None, True, False, "s"], "just a string", 3, None,
                  {"nested": {"list": [{"a": 1e300}, -0.0]}, 1: "int key", None: "none key"}]
        now = utcnow()
        rows = [dict(delivery_id=ids[0], number=1, started_at=now, duration_ms=1.5, status_code=200, ok=True,
                     url="http://x/", request_headers=value, response_headers={"v": value},
                     response_body=None, error_kind=None, error_message=None) for value in values]
        assert driver.executemany(db.session, outbox._INSERT_ATTEMPTS, rows) == len(rows)
        db.session.execute(outbox._INSERT_ATTEMPTS, rows)  # SQLAlchemy's own: psycopg's Json
        db.session.commit()
        stored = db.session.execute(select(Attempt.request_headers.cast(db.Text),
                                           Attempt.response_headers.cast(db.Text)).order_by(Attempt.id)).all()
        assert [tuple(r) for r in stored[:len(rows)]] == [tuple(r) for r in stored[len(rows):]]
        assert stored[1][0] == __import__("json").dumps(values[1])


def test_a_logged_request_carries_the_text_json_dumps_writes_for_it():
    # HeaderLog puts the signature's items between JSON kept for the framing and custom headers.
    from tasks.attempts import HeaderLog

    signatures = [{"webhook-id": "msg_1", "webhook-timestamp": "17", "webhook-signature": "v1,a= v1,\"b\\ ✓\n"},
                  {}, {"webhook-id": 5},  # a value that is not text
                  {"webhook-id": "msg_2", "Content-Type": "text/plain", "X-Api-Key": "again"}]  # names that repeat
    for custom in ([["X-Api-Key", "sk_bench_0123456789"]], [], [["A", "b\"c\\d"], ["X-Long", "✓" * 40]]):
        log = HeaderLog("Hookline/1.0 (+https://example.com/ü)", custom)
        for signed in signatures:
            logged = log(signed)
            assert dict(logged) == {**log.framing, **signed, **log.custom}
            assert logged.json == json.dumps(logged) == driver.dumps(dict(logged))


def test_a_dict_with_its_json_is_stored_as_that_text(app, integration):
    ids = _claimed(app, 1, "ours")
    with app.app_context():
        value = jsontext.WithJSON({"webhook-id": "msg_1", "X-Ünï": "✓"})
        value.json = json.dumps(value, separators=(",", ":"))  # not dumps' text: to tell which was stored
        rows = [dict(delivery_id=ids[0], number=1, started_at=utcnow(), duration_ms=1.5, status_code=200, ok=True,
                     url="http://x/", request_headers=headers, response_headers={}, response_body=None,
                     error_kind=None, error_message=None) for headers in (value, dict(value))]
        assert driver.executemany(db.session, outbox._INSERT_ATTEMPTS, rows) == 2
        db.session.commit()
        stored = db.session.execute(select(Attempt.request_headers.cast(db.Text)).order_by(Attempt.id)).scalars().all()
        assert stored[-2:] == [value.json, json.dumps(value)]


def test_an_envelope_is_what_json_writes_for_it_whatever_its_members():
    """envelope_body writes a publish's usual members itself: the same text as the encoder for every kind of each."""
    options = dict(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    payload = {"ü ✓": ["\"q\" \\ \n\t\x7f\u2028", 1.5, -0.0, None, True, {"": []}], "k": 10**4299}
    types = ["transcript", "", "a\"b\\c\u00e9\U0001F600\x01"]
    stamps = [0, 1_700_000_000, 2**63 - 1, 10**4299, True, 1.5, "1700000000", None]
    for event_type, stamp, is_test in itertools.product(types + [None, 3], stamps, [True, False, 1, 0, None]):
        envelope = {"event_type": event_type, "timestamp_utc": stamp, "payload": payload, "is_test": is_test}
        assert envelope_body(event_type, stamp, payload, is_test) == json.JSONEncoder(**options).encode(envelope)
