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
import functools
from datetime import datetime, timezone
from secrets import token_bytes

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def generate_secret():
    """Return a new signing secret: ``"whsec_"`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(32)).decode("ascii")


@functools.lru_cache(maxsize=1024)
def _webhook(secret):
    # Webhook() strips "whsec_" and base64-decodes the rest on every
    # construction; every delivery signs, so decode each secret only once.
    return Webhook(secret)


def _body_text(body):
    # Webhook.sign() takes str and encodes the signed string as UTF-8, so
    # decoding UTF-8 here gives an HMAC over exactly the bytes on the wire.
    # A body that is not UTF-8 could not be signed faithfully: fail loudly.
    if isinstance(body, str):
        return body
    return bytes(body).decode("utf-8")


def sign(secrets, msg_id, timestamp, body):
    """Return the ``webhook-signature`` header value for one delivery.

    ``secrets`` is a list of ``whsec_`` secrets (two during a rotation);
    each gives one ``v1,<base64>`` entry, joined by single spaces.
    ``timestamp`` is whole Unix seconds and ``body`` the exact bytes sent.
    """
    if not secrets:
        raise ValueError("at least one signing secret is required")
    when = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    text = _body_text(body)
    return " ".join(_webhook(secret).sign(msg_id, when, text) for secret in secrets)


def signature_headers(secrets, msg_id, timestamp, body):
    """Return the three Standard Webhooks headers for one delivery."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": sign(secrets, msg_id, int(timestamp), body),
    }
