"""The drain job: claim due deliveries, send them, record every attempt.

One drain job delivers everything that is due, in publish order, then
stops. Claims are short leases under a token of their own, renewed while a
batch is in flight (tasks.leases); every write is fenced by the token
(tasks.outbox), so a drain that lost its lease writes nothing and a dead
worker's deliveries go out again within one lease (with the same
webhook-id, so receivers can de-duplicate).

Per-call order: a delivery is claimable only when no earlier delivery of the
same call is still open (pending or retrying), so a call's events go out in
the order they were published whatever the number of workers.
"""

import logging
import time
from dataclasses import dataclass, field

import redis
from flask import current_app
from sqlalchemy.exc import DBAPIError

from extensions import get_sender
from models import db
from models.settings import WebhookSettings, get_settings
from tasks import attempts, autodisable, checkpoints, leases, outbox, pacing, retry
from tasks.outbox import Claimed, claim, has_due_work, new_token  # noqa: F401 (has_due_work: the tick's)
from tasks.queue import (
    ask_for_help, jobs_waiting, listening, started_as_helper, stop_listening, wait_for_bell, wake,
)

log = logging.getLogger(__name__)

#: A drain behind on its backlog asks for a helper at most this often (seconds).
HELP_INTERVAL = 1.0


@dataclass
class Batch:
    """Deliveries leased under one claim token."""
    token: str
    rows: list[Claimed] = field(default_factory=list)


def after_recording(recorded: list[attempts.Recorded], url: str) -> None:
    """The integration-wide steps a batch's outcomes call for: a 410 disables, failures may."""
    if any(r.gone for r in recorded):
        autodisable.after_gone(get_settings(), url)
    if any(r.failed for r in recorded):
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


class Drainer:
    """One drain's state: its lease, its sender, its retry schedule (from the settings), the batch claimed ahead."""

    def __init__(self, config):
        self.batch_size = self.claim_size = config["HOOKLINE_BATCH_SIZE"]  # claim_size: see pacing
        self.lease = config["HOOKLINE_LEASE_SECONDS"]
        self.config = config
        self.schedule: tuple[float, ...] = ()  # the settings' retry window, read with them
        self.hold_seconds = retry.hold_seconds(config)
        self.user_agent = config["HOOKLINE_USER_AGENT"]
        self.sender = get_sender()
        self.concurrency = config["HOOKLINE_SEND_CONCURRENCY"]
        self.keeper = leases.keeper()
        # The next batch, claimed in the transaction that recorded the last one.
        self.ahead: Batch | None = None
        self.helpful = False  # is there still work for a helper (see keeps_a_helper_busy)?
        self.asked_for_help_at = -HELP_INTERVAL
        self.settings: WebhookSettings | None = None  # a copy, kept between batches
        self.header_log: attempts.HeaderLog | None = None

    def claim(self) -> Batch:
        """Lease up to a batch of due deliveries under a new token; kept renewed until recorded."""
        batch = Batch(new_token())
        batch.rows = claim(batch.token, self.claim_size, self.lease)
        if batch.rows:
            self.keeper.hold(current_app._get_current_object(), batch.token, [d.id for d in batch.rows])
        return batch

    def settings_for(self, batch: list[Claimed]) -> WebhookSettings:
        """The settings to send ``batch`` with, as they were when it was claimed.

        The claim returns the settings row's updated_at (every ORM save
        bumps it; the one Core UPDATE, models.settings.clear_expired_secret,
        only forgets a secret that signing_secrets() already ignores), so
        the row is read again only when it changed: reading and decrypting
        it for every batch cost more than the claim. The copy belongs to no
        session, so commits do not expire it; what disables the integration
        (a 410, a day of failures) changes the session's own row instead.
        """
        if self.settings is None or self.settings.updated_at != batch[0].settings_version:
            row = get_settings()
            self.settings = WebhookSettings(**{column.key: getattr(row, column.key)
                                               for column in WebhookSettings.__table__.columns})
            self.header_log = attempts.HeaderLog(self.user_agent, self.settings.headers or [])
            self.schedule = retry.schedule_for(self.settings.retry_window, self.config)
        return self.settings

    def send_all(self, outgoing: list[attempts.Outgoing]) -> list:
        """Send a batch side by side (Sender.post_many); return a SendResult per request, in order.

        Up to HOOKLINE_SEND_CONCURRENCY requests are in flight at once from
        this thread. Every request of a batch is the head of a different
        call, so this never reorders a call's events.
        """
        return self.sender.post_many(
            [(out.url, out.body, out.signed, out.custom) for out in outgoing], window=self.concurrency)

    def run_batch(self, claim_next: bool = True) -> int | None:
        """Claim, send and record one batch; return how many were claimed (None: nothing due).

        With ``claim_next`` the next batch is claimed in the transaction
        that records this one (see below); the next run_batch() sends it.
        """
        batch, self.ahead = self.ahead, None
        began = time.monotonic()
        claimed_now = batch is None
        if claimed_now:
            batch = self.claim()
        # Whatever ends this batch, its lease stops being renewed: an error
        # before it is recorded (the database gone mid-batch) must leave the
        # lease to run out, so that a drain takes these calls up again, not
        # keep them leased for as long as this process lives.
        try:
            if claimed_now:
                db.session.commit()
            return self.send_and_record(batch, began, claim_next) if batch.rows else None
        finally:
            self.keeper.let_go(batch.token)

    def send_and_record(self, batch: Batch, began: float, claim_next: bool) -> int:
        """run_batch's work for a claimed, committed batch: send it and record it; return its size."""
        rows = batch.rows
        # A backlog: let another worker help while this one sends. At most once a HELP_INTERVAL:
        # asking is a Redis round trip, and it fails anyway while the helper asked for last is queued.
        if pacing.is_behind(rows, self.batch_size) and time.monotonic() - self.asked_for_help_at >= HELP_INTERVAL:
            self.asked_for_help_at = time.monotonic()
            _redis(ask_for_help)
        self.helpful = pacing.keeps_a_helper_busy(rows, self.batch_size)
        streaming = claim_next and pacing.is_streaming(rows, self.batch_size)
        settings = self.settings_for(rows)
        reasons = attempts.refusals(settings, rows)
        wanted = [d for d in rows if d.id not in reasons]
        # The secrets and the clock are read once for the batch: it is signed and recorded together.
        secrets = settings.signing_secrets()
        outgoing = attempts.prepare_batch(wanted, settings, self.header_log, secrets)
        results = self.send_all(outgoing)
        self.claim_size = pacing.next_claim_size(rows, self.claim_size, self.batch_size, results)
        if streaming:
            # Sent already: only the next claim waits, for more of the stream.
            time.sleep(max(0.0, began + pacing.GATHER_SECONDS - time.monotonic()))
        recorded = attempts.record_batch(wanted, outgoing, results, self.schedule, self.hold_seconds)
        self.write(batch, recorded, reasons, settings.url, claim_next)
        return len(rows)

    def write(self, batch: Batch, recorded, reasons: dict[int, str], url: str, claim_next: bool) -> None:
        """Record a batch in one transaction, claiming the next one in it; never lose the batch to one bad row.

        Claiming the next batch before committing this one's records makes
        one commit per batch instead of two, and the calls just delivered
        already offer their next event; every drain ends with
        run_until_empty() or run_while_behind(), which send it. If the
        database refuses the batch, each delivery is written on its own, and
        one it still refuses is written without the reply (Recorded.stripped).
        """
        try:
            outbox.write(batch.token, [r.attempt for r in recorded],
                         [r.change for r in recorded] + outbox.cancelled(reasons))
            after_recording(recorded, url)
            if claim_next:
                self.ahead = self.claim()
            db.session.commit()
            checkpoints.written()
            return
        except DBAPIError:
            db.session.rollback()
            if self.ahead is not None:
                self.keeper.let_go(self.ahead.token)
                self.ahead = None
            log.warning("could not record a batch of %d; recording its deliveries one by one",
                        len(recorded), exc_info=True)
        outbox.write(batch.token, [], outbox.cancelled(reasons))
        db.session.commit()
        for one in recorded:
            try:
                outbox.write(batch.token, [one.attempt], [one.change])
                db.session.commit()
            except DBAPIError as error:
                db.session.rollback()
                one = one.stripped(error)
                outbox.write(batch.token, [one.attempt], [one.change])
                db.session.commit()
        after_recording(recorded, url)
        db.session.commit()
        checkpoints.written()

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
    under load a claim takes HOOKLINE_BATCH_SIZE or more (each the head of a
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
    whose batch came back full and behind, see tasks.pacing) ends at its
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
