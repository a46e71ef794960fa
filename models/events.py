"""The outbox: Event (what happened), Delivery (its way to the URL), Attempt (each try).

The database is the source of truth for delivery: Redis only wakes workers.
"""

import binascii
import os
import time
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, literal_column, or_
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models import db, utcnow

# Delivery states. pending and retrying are "due work"; the others are final.
PENDING = "pending"
RETRYING = "retrying"
DELIVERED = "delivered"
FAILED = "failed"
CANCELLED = "cancelled"
#: Stored while Hookline has switched the integration off by itself: not
#: sent, kept for the retention period until the admin re-enables and sends
#: them (pending again) or discards them (cancelled).
HELD = "held"
OPEN_STATES = (PENDING, RETRYING)
STATES = (PENDING, RETRYING, DELIVERED, FAILED, CANCELLED, HELD)
#: "status IN ('pending', 'retrying')" with the states written out, not bound:
#: SQLite uses a partial index only when the query repeats its WHERE literally.
OPEN_SQL = "status IN ('pending', 'retrying')"
#: Open rows with a hold deadline: the partial index the claim finds let-go heads in.
LET_GO_SQL = f"{OPEN_SQL} AND holds_call_until IS NOT NULL"
#: Open rows flagged as heads, and open rows whose flag is not known yet
#: (fresh from publish, or opened again): the claim's two partial indexes
#: (see tasks.heads).
HEAD_SQL = f"{OPEN_SQL} AND head"
UNKNOWN_SQL = f"{OPEN_SQL} AND head IS NULL"
#: Every state but delivered (the common one): the log's status filter and
#: the failed-since counts read these through a partial index. Written as
#: ORed equalities: SQLite uses the index for ``status = 'failed'`` only when
#: the query's term equals one of the index's terms.
UNDELIVERED_STATES = tuple(state for state in STATES if state != DELIVERED)
UNDELIVERED_SQL = " OR ".join(f"status = '{state}'" for state in UNDELIVERED_STATES)
#: Event types the log's type filter would otherwise look for through much of the table.
RARE_TYPES = ("error",)
RARE_TYPE_SQL = " OR ".join(f"event_type = '{name}'" for name in RARE_TYPES)
#: The Test button's deliveries (a handful among the real ones). SQLite has
#: no boolean type: SQLAlchemy writes the test there as ``is_test = 1``.
TEST_SQL = {"sqlite": "is_test = 1", "postgresql": "is_test"}


def is_open(column):
    """``column IN ('pending', 'retrying')`` as literals, so partial indexes on open rows apply."""
    return column.in_([literal_column(f"'{state}'") for state in OPEN_STATES])


def has_status(column, *states):
    """``column = 'failed'`` (several ORed) with the states as literals, so the partial status index applies.

    Literals, not bound parameters, for both databases: SQLite matches a
    partial index's terms against the query's text, and a PostgreSQL plan
    prepared for any value (psycopg prepares a statement run 5 times) can
    use no partial index. ``states`` are our constants, never user input.
    """
    terms = [column == literal_column(f"'{state}'") for state in states]
    return or_(*terms) if len(terms) > 1 else terms[0]


#: base64's digits (A-Z a-z 0-9 + /) mapped to the url-safe digits (- _ for
#: + /) in byte order, so that a number written with them sorts as text
#: (SQLite compares the index's keys byte by byte).
_SORTED = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                          b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")


def new_event_id() -> str:
    """A Standard Webhooks message id: ``msg_`` + 22 url-safe characters, the first 8 the time.

    The first 8 characters are the milliseconds since 1970 (6 bytes), written
    so that later ids sort after earlier ones; the other 14 are random (84
    bits, for ids made in the same millisecond). Random ids put each
    publish's entry in the events.id index on a random page: on a large log
    that is a page read and one more distinct page for every checkpoint to
    copy, per publish. Ids in time order go on the index's last page, as the
    table's rows do.
    """
    raw = (time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(12)
    return "msg_" + binascii.b2a_base64(raw, newline=False).translate(_SORTED)[:22].decode()


class Event(db.Model):
    """One call event as published by the engine, frozen as the exact bytes to send."""

    __tablename__ = "events"

    # Integer key = publish order, which claims follow.
    seq: Mapped[int] = mapped_column(primary_key=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=new_event_id)
    event_type: Mapped[str] = mapped_column(String(40))
    call_id: Mapped[str | None] = mapped_column(String(100))
    # Signed 64 bits (milliseconds fit): BIGINT on PostgreSQL; SQLite's INTEGER already is.
    timestamp_utc: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    is_test: Mapped[bool] = mapped_column(default=False)
    # The compact JSON envelope, signed and sent byte for byte on every attempt.
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    delivery: Mapped["Delivery"] = relationship(back_populates="event", uselist=False)


class Delivery(db.Model):
    """The delivery of one event to the configured URL, retried until final."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # Open rows by call: the claim's one seek per candidate (is an older
        # row of its call still open?) and the next head when one closes. A
        # partial index keeps that small however many delivered rows the log holds.
        Index("ix_deliveries_open_call", "call_id", "id",
              sqlite_where=literal_column(OPEN_SQL), postgresql_where=literal_column(OPEN_SQL)),
        # Per-call ordering and the log's call filter.
        Index("ix_deliveries_call", "call_id", "id"),
        # The log's filters that pick few rows, newest first (keyset on id);
        # the common values (delivered, real, the usual types) walk the
        # primary key newest first instead, dense. Partial so that a publish
        # writes only the status one (pending) and a delivery only takes
        # that entry out; created_at in it so that the "failed since" counts
        # read the index only.
        Index("ix_deliveries_status", "status", "id", "created_at",
              sqlite_where=literal_column(UNDELIVERED_SQL), postgresql_where=literal_column(UNDELIVERED_SQL)),
        Index("ix_deliveries_type", "event_type", "id",
              sqlite_where=literal_column(RARE_TYPE_SQL), postgresql_where=literal_column(RARE_TYPE_SQL)),
        Index("ix_deliveries_test", "id",
              sqlite_where=literal_column(TEST_SQL["sqlite"]),
              postgresql_where=literal_column(TEST_SQL["postgresql"])),
        # Retrying heads that stopped holding their call (tasks.heads):
        # each is claimed on its own schedule while the rest of its call goes on.
        Index("ix_deliveries_let_go", "holds_call_until",
              sqlite_where=literal_column(LET_GO_SQL), postgresql_where=literal_column(LET_GO_SQL)),
        # The claim reads the first due heads here, earliest due first
        # (tasks.heads): one entry per call with open deliveries.
        Index("ix_deliveries_heads", "due_at", "id",
              sqlite_where=literal_column(HEAD_SQL), postgresql_where=literal_column(HEAD_SQL)),
        # Open rows whose head flag is not known yet: a handful between claims.
        Index("ix_deliveries_unknown", "id",
              sqlite_where=literal_column(UNKNOWN_SQL), postgresql_where=literal_column(UNKNOWN_SQL)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_seq: Mapped[int] = mapped_column(ForeignKey("events.seq", ondelete="CASCADE"), unique=True)
    # Copied from the event so the claim and the log filter need no join.
    event_type: Mapped[str] = mapped_column(String(40))
    call_id: Mapped[str | None] = mapped_column(String(100))
    is_test: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    due_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    # A drain owns the delivery until lease_until (renewed while it works on
    # it); a dead drain's claim expires. claimed_by is the claim's token: every
    # write for a claimed row names it (tasks.outbox.write).
    lease_until: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(40))
    attempt_count: Mapped[int] = mapped_column(default=0)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_duration_ms: Mapped[float | None]
    last_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set at a head's first failed attempt: until then its call's later events
    # wait behind it; from then on they go on (the log marks them "sent ahead
    # of #N") while it keeps its own schedule. A 4xx other than 408/429 sets
    # it to that attempt's time. Kept once closed, for the log.
    holds_call_until: Mapped[datetime | None]
    # Is this open delivery its call's head (tasks.heads)? NULL: not known
    # yet (publish inserts it so, and redeliver and re-enable set it so);
    # FALSE: an older open delivery of its call holds it; TRUE: claimable as
    # head once due. Meaningless once closed.
    head: Mapped[bool | None]

    event: Mapped[Event] = relationship(back_populates="delivery", lazy="joined")
    attempts: Mapped[list["Attempt"]] = relationship(
        back_populates="delivery", order_by="Attempt.id", cascade="all, delete-orphan"
    )


class Attempt(db.Model):
    """One HTTP exchange (or failure to have one) for a delivery."""

    __tablename__ = "attempts"
    __table_args__ = (
        # Stats: the last 24 h of attempts and the latest one; ok and
        # duration_ms included so the counts and percentiles read the index only.
        Index("ix_attempts_window", "started_at", "ok", "duration_ms"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    duration_ms: Mapped[float]
    status_code: Mapped[int | None]
    ok: Mapped[bool] = mapped_column(default=False)
    # Where it was sent (the saved URL at that moment); None on rows from before it was kept.
    url: Mapped[str | None] = mapped_column(Text)
    # Every header sent, in order, the admin's custom values masked.
    request_headers: Mapped[dict] = mapped_column(db.JSON, default=dict)
    response_headers: Mapped[dict] = mapped_column(db.JSON, default=dict)
    # The first 4 KiB of the response body.
    response_body: Mapped[str | None] = mapped_column(Text)
    error_kind: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)

    delivery: Mapped[Delivery] = relationship(back_populates="attempts")
