"""What any JSON value the engine sends must satisfy, whatever its schema.

The schemas say which fields an event has; these bounds say what a value may
be at all, so that everything accepted can be stored on SQLite and PostgreSQL
and sent as valid JSON: no NaN or Infinity, no lone surrogates or NUL in
strings (or keys), integers that ``json`` can write (at most 4,300 digits),
at most 32 levels of nesting, nothing but JSON types. The API's parser, the
Python call and the RQ job all end in :func:`check_json_value`, so they refuse
the same input with the same message.
"""

import json
import math
import re

#: Real call payloads are 3-4 levels deep; anything far deeper is an attack or a bug.
MAX_DEPTH = 32
#: Python's limit for int <-> str conversion (sys.get_int_max_str_digits()).
MAX_INT_DIGITS = 4300
_INT_LIMIT = 10**MAX_INT_DIGITS
TOO_LONG = f"is an integer of more than {MAX_INT_DIGITS:,} digits (write it as a string)"
# NUL cannot be stored in PostgreSQL text; a lone surrogate cannot be encoded as UTF-8.
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")


class IntegerTooLong(str):
    """An integer literal of more than 4,300 digits, kept as text by :func:`loads`.

    ``json.loads`` would raise a ValueError that says nothing of where the
    number was; keeping it lets :func:`check_json_value` name its field.
    """


def _parse_int(literal: str):
    if len(literal) - literal.startswith("-") > MAX_INT_DIGITS:
        return IntegerTooLong(literal)
    return int(literal)


def loads(text: str):
    """``json.loads`` that keeps over-long integers (:class:`IntegerTooLong`) for the checks.

    NaN, Infinity and numbers too large for a float parse as float NaN or
    infinity, which :func:`check_json_value` refuses naming the field.
    """
    return json.loads(text, parse_int=_parse_int)


def problem(value) -> str | None:
    """What is wrong with one scalar JSON value, or None (containers are walked, not judged)."""
    if isinstance(value, IntegerTooLong):
        return TOO_LONG
    if isinstance(value, str):
        if bad := _BAD_CHAR.search(value):
            char = bad.group()
            what = "a NUL character" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X})"
            return f"contains {what} at position {bad.start()}; strings must be valid Unicode text without NUL"
        return None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        if value >= _INT_LIMIT or value <= -_INT_LIMIT:
            return TOO_LONG
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a JSON number (NaN and Infinity are refused)"
    if isinstance(value, (dict, list)):
        return None
    return f"a {type(value).__name__} is not a JSON value"


def check_json_value(value, path: str) -> tuple[str, str] | None:
    """The first (field path, message) that breaks the bounds in ``value``, or None.

    Paths are dotted like the schema errors' (``payload.transcript.3.message``);
    a bad key is reported on its object.
    """
    # Every published event passes through here: a walk that builds no paths
    # clears the usual payload, and only one it cannot clear is walked again
    # below, which finds and names the problem (the same one as ever).
    strings = []
    if _fine((value,), 1, strings) and _fine_text("".join(strings)):
        return None
    return _first_problem(value, path)


def _fine_text(text: str) -> bool:
    if text.isascii():
        return "\x00" not in text
    return _BAD_CHAR.search(text) is None


#: The key types _fine clears: exactly str (a subclass, an IntegerTooLong, is left to _first_problem).
_STR = frozenset((str,))


def _fine(children, depth: int, strings: list) -> bool:
    """True when each of ``children`` (nested ``depth`` deep) is within the bounds, its strings aside; False: look closer.

    Exact JSON types only, dispatched on ``type()``: anything else (a
    subclass, an IntegerTooLong) is left to :func:`_first_problem`. Every
    string met, keys too, is put in ``strings``, for the caller to check
    them all at once (a NUL or a lone surrogate is in their concatenation
    exactly when it is in one of them): one test of one text instead of a
    call per string.
    """
    for child in children:
        kind = type(child)
        if kind is str:
            strings.append(child)
        elif kind is dict:
            if depth > MAX_DEPTH or not _STR.issuperset(map(type, child)):
                return False
            strings += child
            if not _fine(child.values(), depth + 1, strings):
                return False
        elif kind is list:
            if depth > MAX_DEPTH or not _fine(child, depth + 1, strings):
                return False
        elif kind is int:
            if not -_INT_LIMIT < child < _INT_LIMIT:
                return False
        elif kind is float:
            if not math.isfinite(child):
                return False
        elif child is not None and kind is not bool:
            return False
    return True


def _first_problem(value, path: str) -> tuple[str, str] | None:
    """check_json_value's answer, walking ``value`` depth first and naming every child's path."""
    stack = [(value, path, 1)]
    while stack:
        item, where, depth = stack.pop()
        if message := problem(item):
            return where, message
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                return path, f"is nested more than {MAX_DEPTH} levels deep"
            for key, child in item.items():
                if not isinstance(key, str) or isinstance(key, IntegerTooLong):
                    return where, f"has a key of type {type(key).__name__}; keys must be strings"
                if message := problem(key):
                    return where, f"has a key that {message}"
                stack.append((child, f"{where}.{key}", depth + 1))
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                return path, f"is nested more than {MAX_DEPTH} levels deep"
            stack.extend((child, f"{where}.{i}", depth + 1) for i, child in enumerate(item))
    return None
