"""The catalog of webhook event types and payload validation.

Each event type carries what the rest of the app needs to know about it:
a title and one-line description for the settings form, the spec's
sentence on when it is sent, the JSON Schema of its payload, and the
spec's example payload (used by the "Test Webhook Integration" button).
"""

import copy
import reprlib
from dataclasses import dataclass, field

import fastjsonschema

from . import schemas
from .bounds import IntegerTooLong, check_json_value

EVENT_TYPES = (
    "call_initiated",
    "call_ringing",
    "call_answered",
    "transcript",
    "call_ended",
    "error",
)


@dataclass(frozen=True)
class EventType:
    """One kind of webhook event and everything known about it."""

    name: str
    title: str
    description: str
    when: str
    # Dicts are unhashable, so leave them out of the generated __hash__.
    schema: dict = field(hash=False, repr=False)
    example_payload: dict = field(hash=False, repr=False)
    example_timestamp: int


class InvalidEvent(ValueError):
    """An event type, payload or timestamp that does not fit the catalog.

    ``field`` is a dotted path to the bad value (``"payload.call.from"``)
    and ``message`` says what is wrong with it in plain words.
    """

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# The example payloads are copied from the spec verbatim: same keys, same
# key order, same values (including its quirks, like the string
# "timestamp_utc" inside the transcript payload).
_SEED_CALL = {
    "id": 1,
    "from": "+905555555555",
    "to": "+905555555554",
    "source": "salprebox:SALPRE_AABBCCDD",
    "direction": "outbound",
}

CATALOG = {
    event.name: event
    for event in (
        EventType(
            name="call_initiated",
            title="Call initiated",
            description="A new inbound or outbound call has started.",
            when="Sent when a new call (inbound or outbound) is started.",
            schema=schemas.CALL_INITIATED,
            example_payload={
                "call_id": 1,
                "from": "+905555555555",
                "to": "+905555555554",
                "direction": "outbound",
                "source": "salprebox:SALPRE_AABBCCDD",
            },
            example_timestamp=1760084505,
        ),
        EventType(
            name="call_ringing",
            title="Call ringing",
            description="The call is ringing for the agent or connecting to the destination.",
            when=(
                "Sent when an inbound call starts ringing for the agent or an "
                "outbound call is connecting to the destination number."
            ),
            schema=schemas.CALL_RINGING,
            example_payload={
                "from": "+905555555555",
                "to": "+905555555554",
                "source": "salprebox:SALPRE_AABBCCDD",
                "direction": "outbound",
                "call_id": 1,
            },
            example_timestamp=1760084555,
        ),
        EventType(
            name="call_answered",
            title="Call answered",
            description="The call was answered by the receiving party.",
            when="Sent as soon as the call is answered by the receiving party.",
            schema=schemas.CALL_ANSWERED,
            example_payload={
                "from": "+905555555555",
                "to": "+905555555554",
                "source": "salprebox:SALPRE_AABBCCDD",
                "direction": "outbound",
                "call_id": 1,
            },
            example_timestamp=1760084576,
        ),
        EventType(
            name="transcript",
            title="Transcript",
            description="A live, partial transcript line during an active call.",
            when="Sent during an active call as speech is being transcribed.",
            schema=schemas.TRANSCRIPT,
            example_payload={
                "call": dict(_SEED_CALL),
                "type": "customer",
                "transcript": "Hello, how are you?",
                "timestamp_utc": "111111",
            },
            example_timestamp=1760084622,
        ),
        EventType(
            name="call_ended",
            title="Call ended",
            description="The call has ended; includes the complete final transcript.",
            when="Sent after a call is terminated by either party.",
            schema=schemas.CALL_ENDED,
            example_payload={
                "from": "+905555555555",
                "to": "+905555555554",
                "direction": "outbound",
                "source": "salprebox:SALPRE_AABBCCDD",
                "call_id": 1,
                "transcript": [
                    {"type": "ai", "message": "Greeting message"},
                    {
                        "type": "customer",
                        "message": "customer message 1",
                        "utc_timestamp": "111111",
                    },
                    {
                        "type": "ai",
                        "message": "Ai response 1",
                        "utc_timestamp": "111111",
                    },
                ],
            },
            example_timestamp=1760084597,
        ),
        EventType(
            name="error",
            title="Error",
            description="An error occurred during the call, e.g. the connection failed.",
            when=(
                "Sent if an error occurs at any point during the call "
                "(e.g., connection failed, configuration issue)."
            ),
            schema=schemas.ERROR,
            example_payload={
                "call": dict(_SEED_CALL),
                "error_message": "Error message",
            },
            example_timestamp=1760084656,
        ),
    )
}

# Validation runs for every published event, so each schema is compiled
# once, to plain Python (fastjsonschema), at import: a typo in schemas.py
# fails there, not at runtime. Its error names the path, the rule and the
# value, which is all a message naming the field needs (_describe).
_VALIDATORS = {event.name: fastjsonschema.compile(event.schema) for event in CATALOG.values()}

# Error messages echo the bad value; keep a 100 kB transcript out of them.
_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


def _short(value):
    """Return a repr of ``value`` that is safe to put in a message."""
    return _repr.repr(value)


def _get(event_type):
    """Return the EventType named ``event_type`` or raise InvalidEvent."""
    # The isinstance check keeps unhashable junk (lists, dicts) from
    # raising TypeError on the dict lookup.
    if isinstance(event_type, str) and event_type in CATALOG:
        return CATALOG[event_type]
    raise InvalidEvent(
        "event_type",
        f"unknown event type {_short(event_type)}; "
        f"must be one of {', '.join(EVENT_TYPES)}",
    )


def _describe(error):
    """Turn a fastjsonschema error into a (field, message) pair, the field from ``payload``."""
    path = [str(part) for part in error.path[1:]]  # path[0] is fastjsonschema's "data"
    rule, definition = error.rule, error.rule_definition
    if rule == "required":
        # Reported on the parent object: point at the missing property itself.
        path.append(next((name for name in definition if name not in error.value), ""))
        message = "is required"
    elif rule == "enum":
        message = "must be one of " + ", ".join(map(str, definition))
    elif rule == "type":
        types = [definition] if isinstance(definition, str) else definition
        message = f"{_short(error.value)} is not of type " + ", ".join(map(repr, types))
    elif rule == "minLength":
        message = "must not be empty"
    elif rule == "maxLength":
        message = f"is longer than {definition} characters"
    elif rule in ("minimum", "maximum"):
        message = f"is outside the signed 64-bit range ({schemas.INT64_MIN} to {schemas.INT64_MAX})"
    elif rule == "maxItems":
        message = f"has more than {definition} items"
    else:
        message = error.message[len(error.name):].strip()
        if len(message) > 200:
            message = message[:197] + "..."
    return ".".join(["payload", *path]), message


def validate_event(event_type, payload, timestamp_utc=None):
    """Check an event against the catalog; raise InvalidEvent if it fails.

    The payload must hold JSON values only, within events/bounds.py (no NaN,
    NUL, lone surrogates, over-long integers, deep nesting), and fit its
    schema. ``timestamp_utc`` is only checked when given: an integer from 0
    to 2^63 - 1 (``True`` does not count; milliseconds fit too).
    """
    event = _get(event_type)

    if not isinstance(payload, dict):
        raise InvalidEvent(
            "payload", f"must be a JSON object, not {type(payload).__name__}"
        )
    if bad := check_json_value(payload, "payload"):
        raise InvalidEvent(*bad)

    try:
        _VALIDATORS[event.name](payload)
    except fastjsonschema.JsonSchemaValueException as error:
        raise InvalidEvent(*_describe(error)) from None

    if timestamp_utc is None:
        return
    if isinstance(timestamp_utc, IntegerTooLong) or (
        isinstance(timestamp_utc, int) and not isinstance(timestamp_utc, bool)
        and not 0 <= timestamp_utc <= schemas.INT64_MAX
    ):
        raise InvalidEvent(
            "timestamp_utc",
            f"is out of range: Unix time from 0 to {schemas.INT64_MAX} (seconds or milliseconds)",
        )
    if isinstance(timestamp_utc, bool) or not isinstance(timestamp_utc, int):
        raise InvalidEvent(
            "timestamp_utc",
            f"{_short(timestamp_utc)} is not a non-negative integer (Unix seconds)",
        )


def example_envelope(event_type, *, is_test=True):
    """Return the spec's example request body for ``event_type``.

    The payload is a deep copy, so callers may change it freely.
    """
    event = _get(event_type)
    return {
        "event_type": event.name,
        "timestamp_utc": event.example_timestamp,
        "payload": copy.deepcopy(event.example_payload),
        "is_test": is_test,
    }


def call_id_of(event_type, payload):
    """Return the call id of an event's payload as a string, or None.

    Flat events carry ``payload["call_id"]``, transcript and error carry
    ``payload["call"]["id"]``. Both places are tried whatever the event
    type, so an engine that mixes the shapes still gets its calls grouped.
    """
    if not isinstance(payload, dict):
        return None
    call_id = payload.get("call_id")
    if call_id is None and isinstance(payload.get("call"), dict):
        call_id = payload["call"].get("id")
    # bool is an int subclass, but True is never a real call id.
    if isinstance(call_id, bool) or not isinstance(call_id, (int, str)):
        return None
    return str(call_id) if call_id != "" else None
