"""JSON text written once: the encoder every envelope and logged header set goes through.

``json.dumps`` builds a new encoder on every call; :func:`json_encoder`
builds its C encoder once. :class:`WithJSON` lets a dict carry the text
already written for it, so a database write stores that text instead of
encoding the dict again (tasks.driver's bind processors, tasks.attempts).
"""

import json
from json.encoder import c_make_encoder, encode_basestring, encode_basestring_ascii


def json_encoder(*, separators=(", ", ": "), ensure_ascii=True, allow_nan=True):
    """``json.JSONEncoder(...).encode`` with these options, its C encoder built once rather than on every call.

    The same text for every value that encoder writes; a value holding itself
    raises RecursionError instead of ValueError (no circular check: a
    shared check would keep stale marks after an error).
    """
    if c_make_encoder is None:  # a Python without the C accelerator
        return json.JSONEncoder(separators=separators, ensure_ascii=ensure_ascii, allow_nan=allow_nan).encode
    item_separator, key_separator = separators
    encode = c_make_encoder(None, json.JSONEncoder().default,
                            encode_basestring_ascii if ensure_ascii else encode_basestring, None,
                            key_separator, item_separator, False, False, allow_nan)
    return lambda value: "".join(encode(value, 0))


#: ``json.dumps`` with its defaults.
dumps = json_encoder()


class WithJSON(dict):
    """A dict of text that carries its ``json.dumps`` text, which the database writes (tasks.driver) store instead of encoding it again.

    Whoever builds one sets ``json`` to exactly what :data:`dumps` writes for
    it and does not change the dict afterwards. Anything else (the ORM,
    ``json.dumps``) sees a plain dict of the same items.
    """

    __slots__ = ("json",)


def json_text(value) -> str:
    """:data:`dumps`, or the text a :class:`WithJSON` carries."""
    return value.json if type(value) is WithJSON else dumps(value)
