"""The drain job: claim due deliveries, send each, record every attempt.

One drain job delivers everything that is due, in publish order, then
stops. Claims are leases: a drain that dies mid-batch loses its claim when
the lease runs out, and another drain sends those deliveries again (with the
same webhook-id, so receivers can de-duplicate).

Per-call order: a delivery is claimable only when no earlier delivery of the
same call is still open (pending or retrying), so a call's events go out in
the order they were published whatever the number of workers.
"""

import functools
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import redis
from flask import current_app
from sqlalchemy import Integer, any_, bindparam, func, insert, or_, select, text, update

from models import db, utcnow
from models.events import (
    CANCELLED, DELIVERED, FAILED, OPEN_SQL, RETRYING, Attempt, Delivery, Event, is_open,
)
from models.settings import SETTINGS_ID, WebhookSettings, get_settings, mask_value
from tasks import autodisable
from tasks.queue import (
    ask_for_help, jobs_waiting, listening, started_as_helper, stop_listening, wait_for_bell, wake,
)
from tasks.retry import next_delay
from tasks.sender import Sender
from tasks.signing import signature_headers

log = logging.getLogger(__name__)

_deliveries = Delivery.__table__
_events = Event.__table__


def get_sender() -> Sender:
    """The process's one Sender (its connection pool keeps connections alive)."""
    sender = current_app.extensions.get("hookline_sender")
    if sender is None:
        from tasks.netguard import parse_networks

        sender = Sender(
            allowed_networks=parse_networks(current_app.config["HOOKLINE_ALLOWED_NETWORKS"]),
            deadline=current_app.config["HOOKLINE_DELIVERY_TIMEOUT"],
            user_agent=current_app.config["HOOKLINE_USER_AGENT"],
            ca_bundle=current_app.config.get("HOOKLINE_CA_BUNDLE") or None,
        )
        current_app.extensions["hookline_sender"] = sender
    return sender


def _heads(dialect: str):
    """The ids of every call's first open delivery, and of open deliveries without a call.

    A skip scan over the partial index on open rows: a recursive CTE steps
    from one call id to the next (each step one index seek), then takes each
    call's lowest open id (another seek). The cost follows the number of
    calls with open deliveries, not the backlog: 50 calls cost ~100 seeks
    whether 50 or 20,000 deliveries are open. On PostgreSQL these are plain
    index scans, which mark the entries of dead row versions as they pass
    them, so later claims skip them; a GROUP BY was planned as a bitmap scan
    that visits every dead entry on every claim (6.6 ms for 38,000, against
    0.3 ms once marked).

    Written as SQL so that SQLite can be told to read that index
    (``INDEXED BY``): on a table never ANALYZEd its planner picks the
    status index and reads every open row instead.
    """
    index = " INDEXED BY ix_deliveries_open_call" if dialect == "sqlite" else ""
    return text(
        "WITH RECURSIVE calls(call_id) AS ("
        f" SELECT min(call_id) FROM deliveries{index} WHERE {OPEN_SQL} AND call_id IS NOT NULL"
        " UNION ALL"
        f" SELECT (SELECT min(d.call_id) FROM deliveries AS d{index}"
        f" WHERE {OPEN_SQL} AND d.call_id > calls.call_id)"
        " FROM calls WHERE calls.call_id IS NOT NULL)"
        f" SELECT (SELECT min(d.id) FROM deliveries AS d{index}"
        f" WHERE {OPEN_SQL} AND d.call_id = calls.call_id)"
        " FROM calls WHERE calls.call_id IS NOT NULL"
        f" UNION ALL SELECT id FROM deliveries{index} WHERE {OPEN_SQL} AND call_id IS NULL"
    ).columns(id=Integer)


def _id_among(ids, dialect: str):
    """``deliveries.id`` is one of the ids the SELECT ``ids`` returns, looked up by primary key.

    PostgreSQL gets ``id = ANY(ARRAY(...))``: the ids are computed first and
    each is one primary-key probe. Written as ``IN (...)``, once the table
    had statistics (autovacuum's ANALYZE) the planner chose a hash join over
    a sequential scan of every delivery, or a walk of the whole primary key
    from the oldest delivered row: each claim then cost time in proportion
    to the delivery log (a bench run after an ANALYZE stalled). SQLite
    already probes the rowid for each id of an ``IN``.
    """
    column = _deliveries.c.id
    if dialect == "postgresql":
        return column == any_(func.ARRAY(ids.scalar_subquery()))
    return column.in_(ids)


def _claimable(dialect: str):
    """The ids a drain may lease at ``:now``, oldest first: due, unleased call heads.

    A call's head is its first open delivery; only heads are sent, so a
    call's events go out in publish order whatever the number of workers,
    and a head that is leased or waiting for a retry holds its call back.
    Open deliveries without a call id are not ordered: each is its own head.
    Heads come from the partial index on open rows (one entry per open
    delivery, never the delivered history), so the cost follows the backlog,
    not the size of the log.
    """
    d = _deliveries.c
    now = bindparam("now")
    return (
        select(d.id)
        .where(
            _id_among(_heads(dialect), dialect),
            d.due_at <= now,
            or_(d.lease_until.is_(None), d.lease_until < now),
        )
        .order_by(d.id)
    )


def _of_event(column):
    """A column of the claimed delivery's event, for the claim's RETURNING (no second SELECT)."""
    return select(column).where(_events.c.seq == _deliveries.c.event_seq).scalar_subquery()


def _settings_version():
    """The settings row's updated_at, for the claim's RETURNING: has the row changed since the last batch?"""
    return select(WebhookSettings.updated_at).where(WebhookSettings.id == SETTINGS_ID).scalar_subquery()


@functools.cache
def _claim_statement(dialect: str):
    """The claim's UPDATE ... RETURNING, built once per dialect (bound: now, limit, lease, owner).

    Built once because building and cache-keying this statement cost more
    than running it (measured: ~1.4 ms against ~0.5 ms of SQL per claim).
    """
    d = _deliveries.c
    now = bindparam("now")
    candidates = _claimable(dialect).limit(bindparam("limit")).with_for_update(skip_locked=True)
    return (
        update(_deliveries)
        .where(_id_among(candidates, dialect))
        .where(is_open(d.status))
        .where(or_(d.lease_until.is_(None), d.lease_until < now))
        .values(lease_until=bindparam("lease"), claimed_by=bindparam("owner"))
        .returning(d.id, d.event_type, d.is_test, d.attempt_count, d.delivered_at,
                   _of_event(_events.c.id), _of_event(_events.c.body), d.due_at, _settings_version())
    )


@functools.cache
def _due_statement(dialect: str):
    """Is anything due at ``:now``? (the tick's question), built once per dialect."""
    return _claimable(dialect).limit(1)


@dataclass
class Claimed:
    """A leased delivery: what sending and recording it need, read without the ORM."""

    id: int
    event_type: str
    is_test: bool
    attempt_count: int
    delivered_at: datetime | None
    event_id: str = ""
    body: str = ""
    due_at: datetime | None = None
    #: The settings row's updated_at when this was claimed.
    settings_version: datetime | None = None


def claim(owner: str, limit: int, lease_seconds: float) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries to ``owner``, oldest first.

    One UPDATE ... RETURNING, which also returns each event's id and bytes:
    on PostgreSQL the inner SELECT skips rows another drain has locked; on
    SQLite writes are serialised anyway. The outer WHERE repeats the state
    and lease tests so a row claimed or closed meanwhile is skipped. Core
    rows, not ORM objects: loading and expiring 32 objects cost more than
    the SQL. The lease holds once the caller commits.
    """
    now = utcnow()
    rows = db.session.execute(
        _claim_statement(db.engine.dialect.name),
        dict(now=now, limit=limit, lease=now + timedelta(seconds=lease_seconds), owner=owner),
    ).all()
    return sorted((Claimed(*row) for row in rows), key=lambda delivery: delivery.id)


def has_due_work() -> bool:
    """True when some delivery is due now (the periodic tick asks this)."""
    return db.session.scalar(_due_statement(db.engine.dialect.name), {"now": utcnow()}) is not None


#: One UPDATE by id, run as an executemany: every key of the dicts but
#: ``delivery_id`` becomes a SET column (cancellations, a batch's outcomes).
_UPDATE_BY_ID = update(_deliveries).where(_deliveries.c.id == bindparam("delivery_id"))


def cancel(reasons: dict[int, str]) -> None:
    """Close deliveries the integration no longer wants, saying why in the log; the caller commits."""
    if reasons:
        db.session.execute(_UPDATE_BY_ID, [
            dict(delivery_id=delivery_id, status=CANCELLED, last_error=reason,
                 due_at=None, lease_until=None)
            for delivery_id, reason in reasons.items()
        ])


def _not_wanted_reason(settings, delivery: Claimed) -> str | None:
    """Why the settings read at send time refuse this delivery, if they do."""
    if not settings.enabled:
        return "Cancelled: the integration was disabled before this was sent."
    if not settings.url:
        return "Cancelled: no webhook URL is configured."
    if delivery.event_type not in (settings.events or []) and not delivery.is_test:
        return f"Cancelled: {delivery.event_type} is no longer subscribed."
    return None


@dataclass
class Outgoing:
    """One request ready to send: the delivery, and the exact request for it."""

    delivery: Claimed
    url: str
    body: bytes
    signed: dict
    custom: list


def prepare(delivery: Claimed, settings) -> Outgoing:
    """Sign a delivery's exact bytes with the secrets in force now."""
    body = delivery.body.encode("utf-8")
    signed = signature_headers(settings.signing_secrets(), delivery.event_id, int(time.time()), body)
    custom = [(name, value) for name, value in settings.headers or []]
    return Outgoing(delivery, settings.url, body, signed, custom)


def _naive_utc(timestamp: float) -> datetime:
    """A ``time.time()`` value as the naive UTC datetime the models store (see models.utcnow)."""
    return datetime.fromtimestamp(timestamp, timezone.utc).replace(tzinfo=None)


def record(out: Outgoing, started, result, schedule) -> tuple[dict, dict]:
    """The attempt's row and the delivery's next state, as two dicts for write().

    A 410 Gone disables the integration here (on the session's settings
    row, committed with the batch); nothing else is written yet.
    """
    delivery = out.delivery
    number = delivery.attempt_count + 1
    duration_ms = round(result.duration_ms, 2)
    attempt = dict(
        delivery_id=delivery.id,
        number=number,
        started_at=started,
        duration_ms=duration_ms,
        status_code=result.status_code,
        ok=result.ok,
        # What was sent, with the admin's header values masked for the log.
        request_headers={**out.signed, **{name: mask_value(value) for name, value in out.custom}},
        response_headers=result.response_headers or {},
        response_body=result.response_body,
        error_kind=result.error_kind,
        error_message=result.error_message,
    )
    # Every key every time: write() sends all the batch's changes as one executemany.
    change = dict(
        delivery_id=delivery.id, attempt_count=number, last_attempt_at=started,
        last_status_code=result.status_code, last_duration_ms=duration_ms, lease_until=None,
        delivered_at=delivery.delivered_at, last_error=result.error_message,
    )
    if result.ok:
        return attempt, {**change, "status": DELIVERED, "delivered_at": utcnow(), "due_at": None}
    if result.status_code == 410:
        # The receiver says this endpoint is gone for good: stop, don't retry.
        autodisable.after_gone(get_settings(), out.url)
        return attempt, {**change, "status": FAILED, "due_at": None}
    delay = next_delay(number, schedule, result.retry_after)
    if delay is None:
        return attempt, {**change, "status": FAILED, "due_at": None}
    return attempt, {**change, "status": RETRYING, "due_at": utcnow() + timedelta(seconds=delay)}


_INSERT_ATTEMPTS = insert(Attempt.__table__)


def write(records: list[tuple[dict, dict]]) -> None:
    """Write a batch's attempts and delivery states: two executemany statements; the caller commits.

    Core, not the ORM: the unit of work cost more than the database for a
    batch of 32 (measured: 7.8 ms against ~2 ms per batch on SQLite).
    """
    if not records:
        return
    db.session.execute(_INSERT_ATTEMPTS, [attempt for attempt, _ in records])
    db.session.execute(_UPDATE_BY_ID, [change for _, change in records])
    if any(change["status"] == FAILED for _, change in records):
        autodisable.after_failure(get_settings())


_REDIS_DOWN = object()


def _redis(action, default=None):
    """Run a Redis call for the drain's wake-up protocol; without Redis, return ``default``.

    The drain itself only needs the database: when Redis is away it stops
    listening and the worker's tick delivers from the database instead.
    """
    try:
        return action()
    except redis.exceptions.ConnectionError:
        log.warning("Redis unavailable; delivering without it")
        return default


#: A drain is behind when its batch came back full and the oldest delivery
#: in it has been due for longer than this. Keeping up, a batch's deliveries
#: have waited one batch at most (~20 ms for 32 here); only a drain that is
#: behind asks for a helper, and a helper stops at its first batch that is
#: small or fresh (keeps_a_helper_busy). Helping while one drain keeps up
#: only split the batches: on the 2-core box two drains sharing a stream
#: one could serve cost ~0.35 ms more worker CPU and ~0.15 ms more database
#: CPU per event, and the end-to-end rate fell. Size matters as much as age
#: (a full batch to ask, a quarter of one to go on): a call's later events
#: are due from their publish but claimable only after the event before
#: them, so after any stall their age stays high while the batches are
#: small; a helper that went on while its batches merely looked old kept
#: two drains at ~3 deliveries a batch for as long as the stream lasted
#: (0.6 instead of 0.3 ms of worker CPU per event, and a slower publisher
#: beside them).
BEHIND_SECONDS = 0.1


#: A drain in the middle of a stream (a batch of several deliveries, not
#: full, each published moments ago) lets the batch last at least this long
#: before it claims the next, so that one gathers what arrives meanwhile.
#: Claimed straight away, the next batch held the few events published while
#: this one was sent (~7 at 1,600 ev/s), and every batch pays the same
#: claim and commit whatever its size: on PostgreSQL, with one
#: publishing thread, the box's CPU per event fell 1.05-1.08 -> 0.86-0.91 ms
#: and the end-to-end rate rose 5-10% (interleaved A/B runs). A single event
#: (low load) or a full batch (a backlog) goes on at once, and so does a
#: batch holding an older delivery (a call's queued events, a retry): waiting
#: would only slow a backlog down, since each call moves one event per batch.
GATHER_SECONDS = 0.010


def _waited(batch: list[Claimed]) -> float:
    """Seconds the longest-due delivery of a claimed batch has been due.

    A claimed delivery always has a due time: the claim takes only those due by now.
    """
    return (utcnow() - min(d.due_at for d in batch)).total_seconds()


def is_streaming(batch: list[Claimed], batch_size: int) -> bool:
    """Is ``batch`` part of a live stream: several deliveries, not full, all due for under 2 x GATHER_SECONDS?"""
    return 1 < len(batch) < batch_size and _waited(batch) < 2 * GATHER_SECONDS


def _behind_with(batch: list[Claimed], at_least: int) -> bool:
    """Does ``batch`` hold ``at_least`` deliveries, some due for longer than BEHIND_SECONDS?"""
    return len(batch) >= at_least and _waited(batch) > BEHIND_SECONDS


def is_behind(batch: list[Claimed], batch_size: int) -> bool:
    """Is a claimed ``batch`` full, with some delivery due for longer than BEHIND_SECONDS?"""
    return _behind_with(batch, batch_size)


def keeps_a_helper_busy(batch: list[Claimed], batch_size: int) -> bool:
    """Should a helper go on after ``batch``: a quarter of a full batch or more, due for longer than BEHIND_SECONDS?

    Not "full", as for asking: a helper gets only the calls whose heads the
    listening drain does not hold, so with fewer calls than two batches
    (50 calls, batches of 32) its batches were never full, and every helper
    stopped after one. Line 3 of bench/ with 4 publishing threads then ran
    ~35 helper jobs per 4,000 events; with this rule ~20, and the box's CPU
    per event fell 0.90-0.94 -> 0.85-0.90 ms (PostgreSQL, six interleaved
    pairs). Small batches still end it: after a stall a call's later events
    look old while each moves one per batch, and two drains at ~3 a batch
    cost twice the CPU per event of one.
    """
    return _behind_with(batch, max(2, batch_size // 4))


class Drainer:
    """One drain's state: who it is, its lease, its sender and its retry schedule."""

    def __init__(self, config):
        self.owner = uuid.uuid4().hex
        self.batch_size = config["HOOKLINE_BATCH_SIZE"]
        concurrency = config["HOOKLINE_SEND_CONCURRENCY"]
        # The lease must outlast a whole batch of receivers that each take the full deadline.
        rounds = -(-self.batch_size // concurrency)
        self.lease = max(config["HOOKLINE_LEASE_SECONDS"],
                         rounds * config["HOOKLINE_DELIVERY_TIMEOUT"] + 5)
        self.schedule = config["HOOKLINE_RETRY_SCHEDULE"]
        self.sender = get_sender()
        self.concurrency = concurrency
        # The next batch, claimed in the transaction that recorded the last one.
        self.ahead: list[Claimed] | None = None
        self.helpful = False  # is there still work for a helper (see keeps_a_helper_busy)?
        self.settings: WebhookSettings | None = None  # a copy, kept between batches

    def settings_for(self, batch: list[Claimed]) -> WebhookSettings:
        """The settings to send ``batch`` with, as they were when it was claimed.

        The claim returns the settings row's updated_at (every ORM save
        bumps it; the one Core UPDATE, models.settings.clear_expired_secret,
        only forgets a secret that signing_secrets() already ignores), so
        the row is read again only when it changed. Reading it for
        every batch (a BEGIN, a SELECT and the ORM's refresh, decrypting the
        secrets) cost ~0.45 ms of CPU per batch on PostgreSQL; without it a
        worker's CPU per event in line 3 of bench/ fell 0.27-0.31 -> 0.24-0.25
        ms (six interleaved runs). The copy belongs to no session, so
        commits do not expire it; what disables the integration (a 410,
        a day of failures) changes the session's own row instead.
        """
        if self.settings is None or self.settings.updated_at != batch[0].settings_version:
            row = get_settings()
            self.settings = WebhookSettings(**{column.key: getattr(row, column.key)
                                               for column in WebhookSettings.__table__.columns})
        return self.settings

    def send_all(self, outgoing: list[Outgoing]) -> list:
        """Send a batch; return (start time, SendResult) per request, in order.

        Side by side: up to HOOKLINE_SEND_CONCURRENCY requests in flight at
        once from this thread (Sender.post_many), so the receiver works on
        one while we read another, a slow receiver's waits overlap, and a
        hanging one costs a deadline per HOOKLINE_SEND_CONCURRENCY requests.
        Every request of a batch is the head of a different call, so this
        never reorders a call's events.
        """
        results = self.sender.post_many(
            [(out.url, out.body, out.signed, out.custom) for out in outgoing], window=self.concurrency)
        return [(_naive_utc(result.started_at), result) for result in results]

    def run_batch(self, claim_next: bool = True) -> int | None:
        """Claim, send and record one batch; return how many were claimed (None: nothing due).

        With ``claim_next`` the next batch is claimed in the transaction
        that records this one (see below); the next run_batch() sends it.
        """
        batch, self.ahead = self.ahead, None
        began = time.monotonic()
        if batch is None:
            batch = claim(self.owner, self.batch_size, self.lease)
            db.session.commit()
        if not batch:
            return None
        # A backlog: let another worker help while this one sends.
        if is_behind(batch, self.batch_size):
            _redis(ask_for_help)
        self.helpful = keeps_a_helper_busy(batch, self.batch_size)
        streaming = claim_next and is_streaming(batch, self.batch_size)
        settings = self.settings_for(batch)
        reasons = {d.id: reason for d in batch if (reason := _not_wanted_reason(settings, d))}
        cancel(reasons)
        outgoing = [prepare(d, settings) for d in batch if d.id not in reasons]
        results = self.send_all(outgoing)
        if streaming:
            # Sent already: only the next claim waits, for more of the stream.
            time.sleep(max(0.0, began + GATHER_SECONDS - time.monotonic()))
        write([record(out, started, result, self.schedule)
               for out, (started, result) in zip(outgoing, results)])
        # Claim the next batch before committing this one's records: one
        # commit per batch instead of two (on PostgreSQL each waits for a
        # WAL flush), and the calls just delivered already offer their next
        # event. Every drain ends with run_until_empty() or
        # run_while_behind(), which send it.
        if claim_next:
            self.ahead = claim(self.owner, self.batch_size, self.lease)
        db.session.commit()
        return len(batch)

    def run_until_empty(self) -> int:
        """Run batches until nothing is due; return how many were claimed."""
        claimed = 0
        while (count := self.run_batch()):
            claimed += count
        return claimed

    def run_while_behind(self) -> int:
        """A helper's loop: run batches while they show a backlog; return how many were claimed.

        Stops at the first batch that is small or fresh (the listening drain
        can serve the rest alone, see keeps_a_helper_busy), after sending
        the batch claimed ahead.
        """
        claimed = 0
        while (count := self.run_batch()):
            claimed += count
            if not self.helpful:
                break
        if self.ahead:
            claimed += self.run_batch(claim_next=False) or 0
        return claimed


def drain(linger: float | None = None, helper: bool = False) -> int:
    """The RQ job: deliver everything due, batch after batch; return how many were claimed.

    Adaptive: at low load a claim finds one delivery and sends it at once;
    under load a claim takes up to HOOKLINE_BATCH_SIZE (each the head of a
    different call, so order is kept), sends them side by side over kept-alive
    connections (see Drainer.send_all), and records the whole batch in one
    transaction; in a live stream it lets each batch gather for
    GATHER_SECONDS before the next claim.

    The listening drain (the one a publish queued) does not end when nothing
    is due: for up to HOOKLINE_DRAIN_LINGER seconds it waits on the Redis
    bell that every publish rings, so steady traffic is served by one
    long-lived job rather than a queued job per event (RQ's bookkeeping costs
    ~27 round trips per job). It stops lingering as soon as other jobs wait
    for the worker, and hands over to a fresh job after
    HOOKLINE_DRAIN_MAX_SECONDS. A ``helper`` drain (asked for by a drain
    whose batch came back full and behind, see BEHIND_SECONDS) ends at its
    first batch that is small or fresh (keeps_a_helper_busy), or when
    nothing is due.
    """
    config = current_app.config
    drainer = Drainer(config)
    if helper:
        _redis(started_as_helper)
        return drainer.run_while_behind()
    linger = config["HOOKLINE_DRAIN_LINGER"] if linger is None else linger
    deadline = time.monotonic() + config["HOOKLINE_DRAIN_MAX_SECONDS"]
    _redis(listening)
    refreshed = time.monotonic()
    claimed = 0
    idle_since = None
    while True:
        count = drainer.run_batch()
        now = time.monotonic()
        if now - refreshed > 1:
            # Busy or idle: a flag left to expire under steady load made
            # the next publish queue a second listening drain, and the two
            # split the stream into batches of ~3 (twice the CPU per event).
            _redis(listening)
            refreshed = now
        if count:
            claimed += count
            idle_since = None
            if now > deadline:
                break
            continue
        idle_since = idle_since or now
        if now - idle_since >= linger or now > deadline or _redis(jobs_waiting, 1):
            break
        # Wait for the next publish (or half a second, for retries coming due).
        if _redis(lambda: wait_for_bell(min(0.5, linger)), _REDIS_DOWN) is _REDIS_DOWN:
            break  # the worker's tick delivers from the database until Redis is back
    # Stop listening, then look once more: an event committed just before
    # the flag went away rang a bell nobody will hear.
    _redis(stop_listening)
    claimed += drainer.run_until_empty()
    if time.monotonic() > deadline and has_due_work():
        _redis(wake)  # hand over to a fresh job
    return claimed
