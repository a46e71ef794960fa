"""Standard Webhooks signatures for outgoing deliveries.

Receivers verify a delivery with any Standard Webhooks library: the HMAC
covers ``"<webhook-id>.<webhook-timestamp>.<body>"`` and the result travels
in the ``webhook-signature`` header as ``v1,<base64>``.  During a secret
rotation both the old and the new secret sign, separated by a space, so a
receiver that knows either one keeps accepting deliveries.

The module is pure (no Flask, no app code) so the delivery worker and the
"send test event" web view share it.
"""

import base64
import binascii
import functools
import hmac
from secrets import token_bytes

SECRET_PREFIX = "whsec_"


def generate_secret():
    """Return a new signing secret: ``"whsec_"`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(32)).decode("ascii")


@functools.lru_cache(maxsize=1024)
def _keyed(secret):
    # The spec's key: the base64 after "whsec_" (padding added, as the
    # standardwebhooks library does), decoded once per secret, as an HMAC
    # that has taken the key already: each signature copies it, where a
    # one-shot hmac.digest looked SHA-256 up and hashed the key every time.
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX) + "==")
    if not key:
        raise ValueError("a signing secret may not be empty")
    mac = hmac.new(key, digestmod="sha256")
    # OpenSSL's HMAC object itself when hmac.HMAC wraps one: its copy, update
    # and digest are C calls, where the wrapper's are a Python frame each.
    return getattr(mac, "_hmac", None) or mac


def _digest(secret, message):
    mac = _keyed(secret).copy()
    mac.update(message)
    return mac.digest()


def _body_bytes(body):
    # The HMAC covers exactly the bytes on the wire. A body that is not
    # UTF-8 is refused: receivers' libraries verify the text they decode.
    if isinstance(body, str):
        return body.encode("utf-8")
    body = bytes(body)
    body.decode("utf-8")
    return body


def sign(secrets, msg_id, timestamp, body):
    """Return the ``webhook-signature`` header value for one delivery.

    ``secrets`` is a list of ``whsec_`` secrets (two during a rotation);
    each gives one ``v1,<base64>`` entry, joined by single spaces.
    ``timestamp`` is whole Unix seconds and ``body`` the exact bytes sent.
    """
    if not secrets:
        raise ValueError("at least one signing secret is required")
    # HMAC-SHA256 over "<id>.<timestamp>.<body>", as the spec says.
    message = f"{msg_id}.{int(timestamp)}.".encode() + _body_bytes(body)
    # b2a_base64's newline cut off by slicing: its newline=False keyword costs more to parse.
    if len(secrets) == 1:  # no rotation under way: no list to build and join
        return "v1," + binascii.b2a_base64(_digest(secrets[0], message))[:-1].decode("ascii")
    return " ".join(["v1," + binascii.b2a_base64(_digest(secret, message))[:-1].decode("ascii")
                     for secret in secrets])


def signature_headers(secrets, msg_id, timestamp, body):
    """Return the three Standard Webhooks headers for one delivery."""
    timestamp = int(timestamp)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets, msg_id, timestamp, body),
    }
