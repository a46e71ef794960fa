"""Tests for tasks.signing: Standard Webhooks signatures.

Signatures are checked with the public ``standardwebhooks`` verifier, the
same code a receiver would run, plus one independent HMAC over the raw
bytes to prove the signature covers exactly what goes on the wire.
"""

import base64
import hashlib
import hmac
import re
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tasks.signing import generate_secret, sign, signature_headers

BODY = b'{"event_type":"call_initiated","payload":{"call_id":"c-1"}}'


def test_generate_secret_is_whsec_and_32_random_bytes():
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[len("whsec_") :], validate=True)) == 32
    assert generate_secret() != secret


def test_signature_headers_verify_with_standardwebhooks():
    secret = generate_secret()
    now = int(time.time())
    headers = signature_headers([secret], "msg_1", now, BODY)

    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(now)
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]+=*", headers["webhook-signature"])
    assert Webhook(secret).verify(BODY, headers)["payload"]["call_id"] == "c-1"


def test_one_byte_tamper_is_rejected():
    secret = generate_secret()
    headers = signature_headers([secret], "msg_1", int(time.time()), BODY)
    tampered = BODY.replace(b"c-1", b"c-2")

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, headers)


def test_rotation_signs_with_every_secret():
    old, new, stranger = generate_secret(), generate_secret(), generate_secret()
    headers = signature_headers([old, new], "msg_2", int(time.time()), BODY)

    entries = headers["webhook-signature"].split(" ")
    assert len(entries) == 2 and all(e.startswith("v1,") for e in entries)
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(BODY, headers)


def test_signature_is_hmac_of_the_exact_utf8_bytes():
    secret = generate_secret()
    body = '{"caller":"Zoë ☎"}'.encode("utf-8")
    key = base64.b64decode(secret[len("whsec_") :])
    digest = hmac.new(key, b"msg_3.1760084505." + body, hashlib.sha256).digest()

    expected = "v1," + base64.b64encode(digest).decode()
    assert sign([secret], "msg_3", 1760084505, body) == expected


def test_sign_needs_a_secret():
    with pytest.raises(ValueError):
        sign([], "msg_4", 1760084505, BODY)
