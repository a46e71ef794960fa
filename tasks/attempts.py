"""The one recorder: a send outcome in, an Attempt row and the delivery's next state out.

The drain and the Test button both record through :func:`record`, so the
log shows a test exactly like a real delivery. Recording decides; it does
not write: the drain writes a batch's rows with its fenced statements
(tasks.drain.write), the Test button with the ORM. What a reply brought
back is made storable here (:func:`storable`), on every database, so no
receiver can make a row impossible to write.
"""

import re
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from json.encoder import encode_basestring_ascii

from models import EPOCH, utcnow
from models.events import DELIVERED, FAILED, RETRYING
from models.settings import mask_value, refusal
from tasks.jsontext import WithJSON, dumps
from tasks.retry import lets_call_go, next_delay
from tasks.sender import build_headers
from tasks.signing import signature_headers

#: NUL (PostgreSQL's text refuses it) and lone surrogates (no encoding
#: accepts them) become U+FFFD; everything else a receiver sent is kept.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

#: How much of the database's complaint a stripped attempt keeps.
SUMMARY_CHARS = 200


def storable(text: str | None) -> str | None:
    """``text`` with NUL and lone surrogates replaced by U+FFFD (None stays None)."""
    # Nearly every reply is ASCII without NUL: str.isascii() is a flag read.
    if not text or (text.isascii() and "\x00" not in text):
        return text
    return _UNSTORABLE.sub("\ufffd", text)


def _storable_headers(headers: dict | None) -> dict:
    """Reply headers with every name and value made storable."""
    if not headers:
        return {}
    # Nearly every reply's headers are ASCII text without NUL: one check for all of them.
    try:
        text = "".join(headers) + "".join(headers.values())
    except TypeError:  # a name or value that is not a str
        text = None
    if text is not None and text.isascii() and "\x00" not in text:
        return dict(headers)
    return {storable(str(name)): storable(str(value)) for name, value in headers.items()}


@dataclass
class Outgoing:
    """One request: where it goes, the exact body, its headers, and what the log shows of them."""

    delivery_id: int
    number: int  # which attempt this is, 1 for the first
    url: str
    body: bytes
    signed: dict
    custom: tuple  # (name, value) pairs as saved; the sender skips reserved or unsafe ones
    logged_headers: dict  # what the log shows: every header sent, custom values masked


@dataclass
class Recorded:
    """What recording one attempt decided: its row, the delivery's next state, what else follows."""

    attempt: dict
    change: dict
    #: The receiver answered 410 Gone: the caller switches the integration off
    #: (autodisable.after_gone), once, for the whole batch.
    gone: bool = False
    #: The delivery has failed for good: the caller checks auto-disable.
    failed: bool = False

    def stripped(self, error: BaseException) -> "Recorded":
        """The same outcome without what the receiver sent, for a row the database refused.

        Keeps the status, timing and the delivery's next state; the reply's
        headers and body are dropped and the error says why, so the log
        still moves on and the rest of the batch is written.
        """
        summary = f"The reply could not be stored ({type(error).__name__}): " + storable(str(error))
        summary = summary[:SUMMARY_CHARS]
        attempt = {**self.attempt, "response_headers": {}, "response_body": None,
                   "error_message": summary}
        return replace(self, attempt=attempt, change={**self.change, "last_error": summary})


class HeaderLog:
    """What the log shows of a request's headers: every one on the wire, in order, custom values masked.

    Built once per settings (the framing and the admin's headers do not
    change between requests); calling it with a request's signature
    headers gives that request's log entry.
    """

    def __init__(self, user_agent: str, custom):
        custom = [(name, value) for name, value in custom]
        #: The saved custom headers as pairs, for every request (the sender checks them once).
        self.pairs = tuple(custom)
        wire = build_headers(user_agent, {}, custom)  # what the sender really sends of them
        names = {name.lower() for name, _ in custom}
        masked = {name: mask_value(value) if name.lower() in names else value for name, value in wire.items()}
        self.framing = {name: masked.pop(name) for name in ("Content-Type", "User-Agent")}
        self.custom = masked
        # The entry's JSON around the signature's: json.dumps's text of every
        # name and value, kept (an attempt's request_headers are encoded once).
        self._before = [_json_item(item) for item in self.framing.items()]
        self._after = [_json_item(item) for item in self.custom.items()]
        self._size = len(self.framing) + len(self.custom)

    def __call__(self, signed: dict) -> dict:
        logged = WithJSON({**self.framing, **signed, **self.custom})
        # The same text as json.dumps(logged), unless a name repeats (then an item is
        # not where the pieces put it) or a signature value is not text (TypeError).
        try:
            if len(logged) == self._size + len(signed):
                logged.json = "{" + ", ".join(
                    self._before + [_json_item(item) for item in signed.items()] + self._after) + "}"
                return logged
        except TypeError:
            pass
        logged.json = dumps(logged)
        return logged


def _json_item(item: tuple[str, str]) -> str:
    """A name and a text value as json.dumps writes them in an object."""
    return encode_basestring_ascii(item[0]) + ": " + encode_basestring_ascii(item[1])


def prepare(delivery_id, number: int, event_id: str, body: bytes, settings, header_log: HeaderLog,
            secrets: list[str] | None = None, timestamp: int | None = None) -> Outgoing:
    """One request for ``body``, signed with the secrets in force, to the saved URL and headers.

    ``secrets``: the settings' signing_secrets(), when the caller already
    asked; ``timestamp``: the signature's time (default now). A batch
    passes both, read once for all its requests.
    """
    if secrets is None:
        secrets = settings.signing_secrets()
    signed = signature_headers(secrets, event_id, int(time.time()) if timestamp is None else timestamp, body)
    return Outgoing(delivery_id, number, settings.url, body, signed, header_log.pairs, header_log(signed))


def prepare_batch(claimed, settings, header_log: HeaderLog, secrets: list[str]) -> list[Outgoing]:
    """:func:`prepare` for each of a drain's claimed deliveries (tasks.outbox.Claimed), in order.

    Signed with ``secrets`` at one reading of the clock: the batch is
    signed and sent together.
    """
    now = int(time.time())
    return [prepare(d.id, d.attempt_count + 1, d.event_id, d.body.encode("utf-8"), settings, header_log, secrets, now)
            for d in claimed]


def refusals(settings, claimed) -> dict[int, str]:
    """Why ``settings`` refuse each of ``claimed`` they refuse (models.settings.refusal), by delivery id.

    Asked once per kind of delivery (its event type, a test or not): a
    batch holds a few kinds, and reading the settings' columns is not free.
    """
    verdicts, reasons = {}, {}
    for delivery in claimed:
        kind = (delivery.event_type, delivery.is_test)
        if kind not in verdicts:
            verdicts[kind] = refusal(settings, *kind)
        if verdicts[kind]:
            reasons[delivery.id] = verdicts[kind]
    return reasons


def _hold(current: datetime | None, started: datetime, hold_seconds: float, result) -> datetime | None:
    """Until when a failed head holds its call: set at the first failure, cut short by a 4xx but 408/429."""
    if result.ok:
        return current
    if lets_call_go(result.status_code):
        return min(current, started) if current else started
    return current or started + timedelta(seconds=hold_seconds)


def record(out: Outgoing, result, schedule, *, started: datetime, final: bool = False,
           delivered_at: datetime | None = None, holds_call_until: datetime | None = None,
           hold_seconds: float = 0.0, now: datetime | None = None) -> Recorded:
    """Decide what one send outcome means: the Attempt row and the delivery's next state.

    Delivered on any 2xx; failed for good on a 410 Gone (and ``gone`` set), when
    the schedule is spent, or at once when ``final`` (a test is never retried);
    otherwise retrying, due after the schedule's next delay (a receiver's
    Retry-After can lengthen it). The first failure sets until when the
    delivery holds its call's later events back (``hold_seconds`` after it);
    a 4xx other than 408/429 lets the call go on at once. Both dicts hold
    every column every time, so a batch's rows go out as one executemany each.
    ``now`` (utcnow() by default; a drain asks once for a batch recorded
    together) is when it was delivered, or what the next delay counts from.
    """
    duration_ms = round(result.duration_ms, 2)
    error = storable(result.error_message)
    # Dict displays, not dict(...) calls: one per attempt, twice, on the drain's hot path.
    attempt = {
        "delivery_id": out.delivery_id,
        "number": out.number,
        "started_at": started,
        "duration_ms": duration_ms,
        "status_code": result.status_code,
        "ok": result.ok,
        "url": out.url,
        "request_headers": out.logged_headers,
        "response_headers": _storable_headers(result.response_headers),
        "response_body": storable(result.response_body),
        "error_kind": result.error_kind,
        "error_message": error,
    }
    gone = failed = False
    delivered_now = due_at = None
    if result.ok:
        status, delivered_now = DELIVERED, now or utcnow()
    elif result.status_code == 410:
        status, gone, failed = FAILED, True, True
    else:
        delay = None if final else next_delay(out.number, schedule, result.retry_after)
        if delay is None:
            status, failed = FAILED, True
        else:
            status, due_at = RETRYING, (now or utcnow()) + timedelta(seconds=delay)
    # One dict per outcome, every column every time (see the docstring).
    change = {
        "delivery_id": out.delivery_id, "attempt_count": out.number, "last_attempt_at": started,
        "last_status_code": result.status_code, "last_duration_ms": duration_ms, "lease_until": None,
        "delivered_at": delivered_now or delivered_at, "last_error": error,
        "holds_call_until": _hold(holds_call_until, started, hold_seconds, result),
        "status": status, "due_at": due_at,
    }
    return Recorded(attempt, change, gone=gone, failed=failed)


def naive_utc(timestamp: float) -> datetime:
    """A ``time.time()`` value as the naive UTC datetime the models store (see models.utcnow)."""
    # The epoch plus the seconds: the same microsecond (both round half to even) as
    # datetime.fromtimestamp(timestamp, timezone.utc).replace(tzinfo=None), without the
    # keyword-parsing replace() that cost more than the rest of recording an attempt.
    return EPOCH + timedelta(0, timestamp)


def record_batch(claimed, outgoing: list[Outgoing], results, schedule, hold_seconds: float) -> list[Recorded]:
    """:func:`record` for each send of a drain's batch, in order; the clock is read once, for the whole batch.

    ``claimed`` are the deliveries (tasks.outbox.Claimed) the requests
    ``outgoing`` were made for, ``results`` what the sender returned.
    """
    now = utcnow()
    return [record(out, result, schedule, started=naive_utc(result.started_at), delivered_at=d.delivered_at,
                   holds_call_until=d.holds_call_until, hold_seconds=hold_seconds, now=now)
            for d, out, result in zip(claimed, outgoing, results)]
