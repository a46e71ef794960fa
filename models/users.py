"""Panel users (tenant admins) and the engine's API tokens."""

import hashlib
import secrets
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import String, select
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from models import db, utcnow


class User(UserMixin, db.Model):
    """A tenant admin who signs in to the panel with email and password."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # True: no e-mail alerts for this admin (their own choice in the panel).
    alerts_opt_out: Mapped[bool] = mapped_column(default=False, server_default=sa_false())

    def set_password(self, password: str) -> None:
        """Store a salted hash of ``password`` (werkzeug's scrypt)."""
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        """True when ``password`` matches the stored hash."""
        return check_password_hash(self.password_hash, password)

    def end_other_sessions(self) -> bool:
        """Sign out this admin's other sessions (after a password change); True when it could.

        Sessions are ended by rotating the per-user session token that
        get_id() returns (issue 19's ``session_token``); the caller then signs
        the current session in again. Until that column exists this does
        nothing and returns False.
        """
        rotate = getattr(self, "rotate_session_token", None)
        if rotate is None:
            return False
        rotate()
        return True

    @staticmethod
    def by_email(email: str) -> "User | None":
        """Find a user by email, ignoring case and surrounding spaces."""
        return db.session.scalar(select(User).where(User.email == email.strip().lower()))


def hash_token(token: str) -> str:
    """Tokens are random and long, so a plain SHA-256 is enough to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


class ApiToken(db.Model):
    """A bearer token the telephony engine uses for POST /api/v1/events."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]

    @staticmethod
    def issue(name: str) -> tuple["ApiToken", str]:
        """Create a token row; return it with the plain token (shown only once)."""
        plain = "hkl_" + secrets.token_urlsafe(32)
        return ApiToken(name=name, token_hash=hash_token(plain)), plain

    @staticmethod
    def find(plain: str) -> "ApiToken | None":
        """The token row matching a presented bearer token, if any."""
        return db.session.scalar(
            select(ApiToken).where(ApiToken.token_hash == hash_token(plain))
        )
