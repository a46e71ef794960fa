"""Tests for the webhook event catalog (events/).

The six examples below are copied literally from the telephony spec;
the catalog must reproduce them exactly, key order included, because
the "Test Webhook Integration" button sends them as they are.
"""

import copy
import dataclasses
import json

import pytest
from jsonschema import Draft202012Validator

from events import (
    CATALOG,
    EVENT_TYPES,
    EventType,
    InvalidEvent,
    call_id_of,
    example_envelope,
    validate_event,
)

SEED_EXAMPLES = {
    "call_initiated": """
{
"event_type": "call_initiated",
"timestamp_utc": 1760084505,
"payload": {
"call_id": 1,
"from": "+905555555555",
"to": "+905555555554",
"direction": "outbound",
"source": "salprebox:SALPRE_AABBCCDD"
},
"is_test": true
}
""",
    "call_ringing": """
{
"event_type": "call_ringing",
"timestamp_utc": 1760084555,
"payload": {
"from": "+905555555555",
"to": "+905555555554",
"source": "salprebox:SALPRE_AABBCCDD",
"direction": "outbound",
"call_id": 1
},
"is_test": true
}
""",
    "call_answered": """
{
"event_type": "call_answered",
"timestamp_utc": 1760084576,
"payload": {
"from": "+905555555555",
"to": "+905555555554",
"source": "salprebox:SALPRE_AABBCCDD",
"direction": "outbound",
"call_id": 1
},
"is_test": true
}
""",
    "transcript": """
{
"event_type": "transcript",
"timestamp_utc": 1760084622,
"payload": {
"call": {
"id": 1,
"from": "+905555555555",
"to": "+905555555554",
"source": "salprebox:SALPRE_AABBCCDD",
"direction": "outbound"
},
"type": "customer",
"transcript": "Hello, how are you?",
"timestamp_utc": "111111"
},
"is_test": true
}
""",
    "call_ended": """
{
"event_type": "call_ended",
"timestamp_utc": 1760084597,
"payload": {
"from": "+905555555555",
"to": "+905555555554",
"direction": "outbound",
"source": "salprebox:SALPRE_AABBCCDD",
"call_id": 1,
"transcript": [
{
"type": "ai",
"message": "Greeting message"
},
{
"type": "customer",
"message": "customer message 1",
"utc_timestamp": "111111"
},
{
"type": "ai",
"message": "Ai response 1",
"utc_timestamp": "111111"
}
]
},
"is_test": true
}
""",
    "error": """
{
"event_type": "error",
"timestamp_utc": 1760084656,
"payload": {
"call": {
"id": 1,
"from": "+905555555555",
"to": "+905555555554",
"source": "salprebox:SALPRE_AABBCCDD",
"direction": "outbound"
},
"error_message": "Error message"
},
"is_test": true
}
""",
}


def key_orders(value):
    """Return every dict's key list in ``value``, depth first.

    Dict equality ignores order, so order is compared separately.
    """
    if isinstance(value, dict):
        orders = [list(value)]
        for item in value.values():
            orders += key_orders(item)
        return orders
    if isinstance(value, list):
        return [order for item in value for order in key_orders(item)]
    return []


def seed(name):
    return json.loads(SEED_EXAMPLES[name])


def payload(name):
    """A fresh, valid payload for ``name`` that a test may break."""
    return seed(name)["payload"]


def assert_invalid(event_type, data, field, **kwargs):
    with pytest.raises(InvalidEvent) as info:
        validate_event(event_type, data, **kwargs)
    assert info.value.field == field
    return info.value


# -- catalog ---------------------------------------------------------------


def test_event_types_in_lifecycle_order():
    assert EVENT_TYPES == (
        "call_initiated",
        "call_ringing",
        "call_answered",
        "transcript",
        "call_ended",
        "error",
    )
    assert tuple(CATALOG) == EVENT_TYPES


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_event_type_fields(name):
    event = CATALOG[name]
    assert isinstance(event, EventType)
    assert event.name == name
    assert event.title and event.description and event.when
    assert "\n" not in event.description
    assert event.when.startswith("Sent ")
    assert event.schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(event.schema)
    assert event.example_timestamp == seed(name)["timestamp_utc"]


def test_titles():
    assert CATALOG["call_initiated"].title == "Call initiated"
    assert CATALOG["call_initiated"].description == (
        "A new inbound or outbound call has started."
    )


def test_event_type_is_frozen_and_hashable():
    event = CATALOG["error"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.name = "other"
    assert hash(event) == hash(CATALOG["error"])


# -- examples --------------------------------------------------------------


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_example_envelope_matches_seed_exactly(name):
    envelope = example_envelope(name)
    expected = seed(name)
    assert envelope == expected
    assert key_orders(envelope) == key_orders(expected)
    assert list(envelope) == ["event_type", "timestamp_utc", "payload", "is_test"]
    # Compare types too: == treats 1 == 1.0 == True.
    assert json.dumps(envelope) == json.dumps(expected)


def test_seed_quirks_are_kept():
    ringing = example_envelope("call_ringing")["payload"]
    assert list(ringing) == ["from", "to", "source", "direction", "call_id"]
    transcript = example_envelope("transcript")["payload"]
    assert transcript["timestamp_utc"] == "111111"
    ended = example_envelope("call_ended")["payload"]
    assert "utc_timestamp" not in ended["transcript"][0]


def test_example_envelope_is_test_flag():
    assert example_envelope("call_ended")["is_test"] is True
    assert example_envelope("call_ended", is_test=False)["is_test"] is False


def test_example_envelope_is_a_deep_copy():
    envelope = example_envelope("call_ended")
    envelope["payload"]["transcript"][0]["message"] = "changed"
    envelope["payload"]["call_id"] = 99
    assert example_envelope("call_ended") == seed("call_ended")


def test_example_envelope_unknown_type():
    with pytest.raises(InvalidEvent) as info:
        example_envelope("call_parked")
    assert info.value.field == "event_type"


# -- validate_event: accepted ---------------------------------------------


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_seed_examples_validate(name):
    example = seed(name)
    assert validate_event(name, example["payload"], example["timestamp_utc"]) is None


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_catalog_examples_validate(name):
    event = CATALOG[name]
    validate_event(name, copy.deepcopy(event.example_payload), event.example_timestamp)


def test_string_call_ids_are_accepted():
    data = payload("call_initiated")
    data["call_id"] = "c-7f3a"
    validate_event("call_initiated", data)
    data = payload("transcript")
    data["call"]["id"] = "c-7f3a"
    validate_event("transcript", data)


def test_extra_properties_are_accepted():
    data = payload("call_answered")
    data["engine_version"] = "2.1"
    validate_event("call_answered", data)
    data = payload("error")
    data["call"]["trunk"] = "eu-1"
    validate_event("error", data)


def test_source_is_optional():
    for name in ("call_initiated", "call_ringing", "call_answered", "call_ended"):
        data = payload(name)
        del data["source"]
        validate_event(name, data)
    for name in ("transcript", "error"):
        data = payload(name)
        del data["call"]["source"]
        validate_event(name, data)


def test_loose_timestamps_and_speakers():
    data = payload("transcript")
    data["timestamp_utc"] = 1760084622
    data["type"] = "agent"
    validate_event("transcript", data)
    data = payload("call_ended")
    data["transcript"][1]["utc_timestamp"] = 1760084600
    data["transcript"].append({"type": "agent", "message": "Handing over"})
    data["transcript"].append({"type": "customer", "message": ""})
    validate_event("call_ended", data)
    data["transcript"] = []
    validate_event("call_ended", data)


def test_inbound_direction():
    data = payload("call_ringing")
    data["direction"] = "inbound"
    validate_event("call_ringing", data)


# -- validate_event: rejected ---------------------------------------------


def test_unknown_event_type():
    error = assert_invalid("call_parked", {}, "event_type")
    for name in EVENT_TYPES:
        assert name in error.message


@pytest.mark.parametrize("event_type", [None, 3, ["call_ended"], "CALL_ENDED", ""])
def test_event_type_junk(event_type):
    assert_invalid(event_type, payload("call_ended"), "event_type")


@pytest.mark.parametrize("data", [None, [], "payload", 1, True])
def test_payload_not_an_object(data):
    assert_invalid("call_initiated", data, "payload")


@pytest.mark.parametrize("bad", [[], {}, True, "", 1.5, None])
def test_bad_call_id(bad):
    data = payload("call_initiated")
    data["call_id"] = bad
    assert_invalid("call_initiated", data, "payload.call_id")


def test_type_error_message():
    data = payload("call_initiated")
    data["call_id"] = []
    error = assert_invalid("call_initiated", data, "payload.call_id")
    assert error.message == "[] is not of type 'integer', 'string'"
    assert str(error) == "payload.call_id: [] is not of type 'integer', 'string'"
    assert isinstance(error, ValueError)


def test_bad_direction():
    data = payload("call_ringing")
    data["direction"] = "sideways"
    error = assert_invalid("call_ringing", data, "payload.direction")
    assert str(error) == "payload.direction: must be one of inbound, outbound"


def test_bad_nested_field():
    data = payload("error")
    data["call"]["from"] = 123
    error = assert_invalid("error", data, "payload.call.from")
    assert error.message == "123 is not of type 'string'"
    data = payload("transcript")
    data["call"]["direction"] = "sideways"
    assert_invalid("transcript", data, "payload.call.direction")


def test_from_too_long():
    data = payload("call_answered")
    data["from"] = "1" * 65
    error = assert_invalid("call_answered", data, "payload.from")
    assert error.message == "is longer than 64 characters"


def test_long_values_do_not_flood_the_message():
    data = payload("transcript")
    data["transcript"] = "x" * 100_001
    error = assert_invalid("transcript", data, "payload.transcript")
    assert len(str(error)) < 200
    data = payload("transcript")
    data["transcript"] = ["x" * 5000]
    error = assert_invalid("transcript", data, "payload.transcript")
    assert len(str(error)) < 200


@pytest.mark.parametrize(
    "name, remove, field",
    [
        ("call_initiated", "call_id", "payload.call_id"),
        ("call_initiated", "from", "payload.from"),
        ("call_ringing", "to", "payload.to"),
        ("call_answered", "direction", "payload.direction"),
        ("call_ended", "transcript", "payload.transcript"),
        ("transcript", "call", "payload.call"),
        ("transcript", "type", "payload.type"),
        ("transcript", "transcript", "payload.transcript"),
        ("transcript", "timestamp_utc", "payload.timestamp_utc"),
        ("error", "error_message", "payload.error_message"),
    ],
)
def test_missing_required_field(name, remove, field):
    data = payload(name)
    del data[remove]
    error = assert_invalid(name, data, field)
    assert error.message == "is required"
    assert str(error) == f"{field}: is required"


@pytest.mark.parametrize("name", ["transcript", "error"])
@pytest.mark.parametrize("remove", ["id", "from", "to", "direction"])
def test_missing_call_field(name, remove):
    data = payload(name)
    del data["call"][remove]
    assert_invalid(name, data, f"payload.call.{remove}")


def test_missing_transcript_item_message():
    data = payload("call_ended")
    del data["transcript"][0]["message"]
    assert_invalid("call_ended", data, "payload.transcript.0.message")
    data = payload("call_ended")
    data["transcript"][2]["type"] = "robot"
    assert_invalid("call_ended", data, "payload.transcript.2.type")
    data = payload("call_ended")
    data["transcript"][1] = "just text"
    assert_invalid("call_ended", data, "payload.transcript.1")


def test_wrong_container_types():
    data = payload("call_ended")
    data["transcript"] = "Greeting message"
    assert_invalid("call_ended", data, "payload.transcript")
    data = payload("error")
    data["call"] = 1
    assert_invalid("error", data, "payload.call")
    data = payload("error")
    data["error_message"] = {"code": 500}
    assert_invalid("error", data, "payload.error_message")


def test_transcript_too_many_items():
    data = payload("call_ended")
    data["transcript"] = [{"type": "ai", "message": "hi"}] * 10_001
    assert_invalid("call_ended", data, "payload.transcript")


# -- timestamps --------------------------------------------------------------


def test_timestamp_accepted():
    validate_event("call_initiated", payload("call_initiated"), 1760084505)
    validate_event("call_initiated", payload("call_initiated"), 0)
    validate_event("call_initiated", payload("call_initiated"), None)


@pytest.mark.parametrize("bad", [True, False, -1, 1760084505.0, "1760084505"])
def test_timestamp_rejected(bad):
    assert_invalid("call_initiated", payload("call_initiated"), "timestamp_utc", timestamp_utc=bad)


# -- call_id_of --------------------------------------------------------------


def test_call_id_of_flat_and_nested():
    assert call_id_of("call_initiated", payload("call_initiated")) == "1"
    assert call_id_of("call_ended", payload("call_ended")) == "1"
    assert call_id_of("transcript", payload("transcript")) == "1"
    assert call_id_of("error", payload("error")) == "1"
    assert call_id_of("error", {"call": {"id": "c-7f3a"}}) == "c-7f3a"
    assert call_id_of("call_ringing", {"call_id": "c-7f3a"}) == "c-7f3a"


@pytest.mark.parametrize(
    "data",
    [{}, None, [], {"call": None}, {"call": {}}, {"call_id": None}, {"call_id": ""}, {"call_id": True}],
)
def test_call_id_of_absent(data):
    assert call_id_of("call_initiated", data) is None
