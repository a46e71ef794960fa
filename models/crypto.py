"""Secrets at rest: column types that encrypt with Fernet (the `cryptography` package).

The key comes from ``HOOKLINE_ENCRYPTION_KEY`` — a comma-separated list whose
first entry encrypts and all of which decrypt, so keys can be rotated — or,
when that is unset, from ``SECRET_KEY``. Any string works as key material: it
is stretched with SHA-256 into a Fernet key.
"""

import base64
import hashlib
import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app
from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator


def _fernet_key(material: str) -> bytes:
    digest = hashlib.sha256(b"hookline-at-rest:" + material.encode()).digest()
    return base64.urlsafe_b64encode(digest)


def init_app(app) -> None:
    """Build the app's MultiFernet from its configuration (HOOKLINE_ENCRYPTION_KEY or SECRET_KEY)."""
    materials = [m.strip() for m in (app.config.get("HOOKLINE_ENCRYPTION_KEY") or "").split(",") if m.strip()]
    if not materials:
        materials = [app.config["SECRET_KEY"]]
    app.extensions["hookline_fernet"] = MultiFernet([Fernet(_fernet_key(m)) for m in materials])


def _fernet() -> MultiFernet:
    return current_app.extensions["hookline_fernet"]


class EncryptedText(TypeDecorator):
    """A text column stored encrypted; Python sees the plain string."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return _fernet().encrypt(self.serialize(value).encode()).decode()

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        try:
            plain = _fernet().decrypt(value.encode()).decode()
        except InvalidToken:
            raise RuntimeError(
                "Cannot decrypt the stored webhook secrets: HOOKLINE_ENCRYPTION_KEY (or SECRET_KEY) "
                "changed. Put the old key after the new one in HOOKLINE_ENCRYPTION_KEY."
            ) from None
        return self.deserialize(plain)

    def serialize(self, value) -> str:
        return value

    def deserialize(self, text: str):
        return text


class EncryptedJSON(EncryptedText):
    """A JSON value (e.g. the custom headers list) stored encrypted."""

    def serialize(self, value) -> str:
        return json.dumps(value, separators=(",", ":"))

    def deserialize(self, text: str):
        return json.loads(text)
