"""JSON Schemas (draft 2020-12) for the payload of each webhook event.

The shapes follow the telephony "Custom Webhook" spec. The schemas are
strict about types and required fields but stay open to extra properties
(``additionalProperties`` defaults to true), because real engines add
fields of their own and we must not reject them for it.

``source`` is optional everywhere, and so is ``utc_timestamp`` on the
items of the final transcript: the spec's own example omits it once.
"""

DRAFT = "https://json-schema.org/draft/2020-12/schema"

#: Integers the database and every receiver's JSON parser can hold: signed 64 bits.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# The spec sends integer ids, but engines that use UUIDs send strings.
# minLength/maxLength only apply when the value is a string, minimum/maximum
# when it is a number. A string id is stored as is (VARCHAR(100)), so the
# schema allows what the column holds.
CALL_ID_MAX_LENGTH = 100
CALL_ID = {"type": ["integer", "string"], "minLength": 1, "maxLength": CALL_ID_MAX_LENGTH,
           "minimum": INT64_MIN, "maximum": INT64_MAX}

# Phone numbers arrive in many formats (E.164, SIP URIs, "anonymous"),
# so only the type and a sane length are checked.
PHONE = {"type": "string", "maxLength": 64}

DIRECTION = {"enum": ["inbound", "outbound"]}

SOURCE = {"type": "string", "maxLength": 255}

SPEAKER = {"enum": ["customer", "ai", "agent"]}

TEXT = {"type": "string", "maxLength": 100_000}

# The spec's example uses the string "111111"; engines also send integers.
LOOSE_TIMESTAMP = {"type": ["string", "integer"], "maxLength": 64, "minimum": INT64_MIN, "maximum": INT64_MAX}

# Flat call fields, as sent by call_initiated/ringing/answered/ended.
_FLAT_CALL_PROPERTIES = {
    "call_id": CALL_ID,
    "from": PHONE,
    "to": PHONE,
    "direction": DIRECTION,
    "source": SOURCE,
}
_FLAT_CALL_REQUIRED = ["call_id", "from", "to", "direction"]

# The nested "call" object sent by transcript and error.
CALL_OBJECT = {
    "type": "object",
    "required": ["id", "from", "to", "direction"],
    "properties": {
        "id": CALL_ID,
        "from": PHONE,
        "to": PHONE,
        "source": SOURCE,
        "direction": DIRECTION,
    },
}


def _call_event(title):
    """Return the schema shared by the three flat call-progress events."""
    return {
        "$schema": DRAFT,
        "title": title,
        "type": "object",
        "required": list(_FLAT_CALL_REQUIRED),
        "properties": dict(_FLAT_CALL_PROPERTIES),
    }


CALL_INITIATED = _call_event("call_initiated payload")
CALL_RINGING = _call_event("call_ringing payload")
CALL_ANSWERED = _call_event("call_answered payload")

TRANSCRIPT = {
    "$schema": DRAFT,
    "title": "transcript payload",
    "type": "object",
    "required": ["call", "type", "transcript", "timestamp_utc"],
    "properties": {
        "call": CALL_OBJECT,
        "type": SPEAKER,
        "transcript": TEXT,
        "timestamp_utc": LOOSE_TIMESTAMP,
    },
}

CALL_ENDED = {
    "$schema": DRAFT,
    "title": "call_ended payload",
    "type": "object",
    "required": _FLAT_CALL_REQUIRED + ["transcript"],
    "properties": {
        **_FLAT_CALL_PROPERTIES,
        "transcript": {
            "type": "array",
            "maxItems": 10_000,
            "items": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {
                    "type": SPEAKER,
                    "message": TEXT,
                    "utc_timestamp": LOOSE_TIMESTAMP,
                },
            },
        },
    },
}

ERROR = {
    "$schema": DRAFT,
    "title": "error payload",
    "type": "object",
    "required": ["call", "error_message"],
    "properties": {
        "call": CALL_OBJECT,
        "error_message": {"type": "string", "maxLength": 10_000},
    },
}
