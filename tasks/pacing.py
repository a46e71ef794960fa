"""How a drain paces itself: when a batch is a live stream, when a drain is behind.

A drain that keeps up sends each batch as soon as it is claimed; in a live
stream it lets a batch gather a few milliseconds of publishes; when it falls
behind it asks another worker for help, and a helper goes on only while its
batches show a real backlog. Each question looks at a claimed batch only.
"""

from models import utcnow
from tasks.outbox import Claimed

#: A drain is behind when its batch came back full and the oldest delivery
#: in it has been due for longer than this; only then does it ask for a
#: helper. Helping a drain that keeps up only splits its batches, which
#: costs more CPU per event than it saves (bench/HISTORY.md).
BEHIND_SECONDS = 0.1


#: A drain in the middle of a stream (a batch of several deliveries, not
#: full, each published moments ago) lets the batch last at least this long
#: before it claims the next, so that one gathers what arrives meanwhile:
#: every batch pays the same claim and commit whatever its size. A single
#: event, a full batch or one holding an older delivery goes on at once.
GATHER_SECONDS = 0.010

#: A drain behind on a backlog claims more than HOOKLINE_BATCH_SIZE at once,
#: doubling batch after batch up to this many times it: every batch pays one
#: claim, promote, roll-up, BEGIN and commit whatever its size. Not 4: on
#: SQLite a batch's write transaction holds the one write lock, and with
#: 256-row transactions four publishing threads beside two drains published
#: slower (bench/HISTORY.md, branch drain3).
GROW_FACTOR = 2

#: ... but only while every request of its last batch was answered within
#: this long: a batch is also what a slow receiver holds up (one deadline per
#: HOOKLINE_SEND_CONCURRENCY requests), so the first slow answer brings the
#: next claim back to HOOKLINE_BATCH_SIZE.
ANSWERED_WITHIN_MS = 1000.0


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
    listening drain does not hold, so its batches are rarely full. Small
    batches still end it: after a stall a call's later events look old while
    each moves one per batch, and two drains at a few a batch cost twice the
    CPU per event of one.
    """
    return _behind_with(batch, max(2, batch_size // 4))


def next_claim_size(batch: list[Claimed], size_now: int, batch_size: int, results) -> int:
    """How many the next claim may take, after sending ``batch`` (claimed with ``size_now``) with ``results``.

    HOOKLINE_BATCH_SIZE unless the drain is behind (``batch`` holds a full
    HOOKLINE_BATCH_SIZE, some due for longer than BEHIND_SECONDS) and every
    request was answered within ANSWERED_WITHIN_MS; then twice ``size_now``
    when ``batch`` filled it (up to GROW_FACTOR times HOOKLINE_BATCH_SIZE),
    else ``size_now``. Live streams (batches not full) and slow receivers
    keep the plain size.
    """
    if not _behind_with(batch, batch_size) or any(r.duration_ms > ANSWERED_WITHIN_MS for r in results):
        return batch_size
    if len(batch) >= size_now:
        return min(2 * size_now, GROW_FACTOR * batch_size)
    return size_now
