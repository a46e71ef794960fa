"""Panel users (tenant admins) and the engine's API tokens."""

import hashlib
import logging
import secrets
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import String, select
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from models import db, utcnow

log = logging.getLogger(__name__)


def new_session_token() -> str:
    """A fresh random value for ``User.session_token``."""
    return secrets.token_urlsafe(32)


class User(UserMixin, db.Model):
    """A tenant admin who signs in to the panel with email and password."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: What the session and the remember-me cookie carry instead of the id:
    #: a new value at sign-out makes every cookie issued before it worthless.
    session_token: Mapped[str] = mapped_column(String(64), unique=True, index=True,
                                               default=new_session_token)

    def get_id(self) -> str:
        """Flask-Login's key for this user in cookies: the current session token."""
        return self.session_token

    def end_all_sessions(self) -> None:
        """Rotate the session token: every session and remember cookie so far stops working."""
        self.session_token = new_session_token()

    @staticmethod
    def by_session_token(token: str) -> "User | None":
        """The user whose current session token is ``token``, if any."""
        return db.session.scalar(select(User).where(User.session_token == token))
    # True: no e-mail alerts for this admin (their own choice in the panel).
    alerts_opt_out: Mapped[bool] = mapped_column(default=False, server_default=sa_false())

    def set_password(self, password: str) -> None:
        """Store a salted hash of ``password`` (werkzeug's scrypt)."""
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        """True when ``password`` matches the stored hash (logged at DEBUG: each check costs a hash)."""
        log.debug("password checked for user %s", self.id)
        return check_password_hash(self.password_hash, password)

    def end_other_sessions(self) -> None:
        """Sign out this admin everywhere (after a password change): the caller signs the current session in again."""
        self.end_all_sessions()

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
