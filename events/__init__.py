"""Webhook event types: catalog, payload schemas, validation, examples."""

from .catalog import (
    CATALOG,
    EVENT_TYPES,
    EventType,
    InvalidEvent,
    call_id_of,
    example_envelope,
    validate_event,
)

__all__ = [
    "CATALOG",
    "EVENT_TYPES",
    "EventType",
    "InvalidEvent",
    "call_id_of",
    "example_envelope",
    "validate_event",
]
