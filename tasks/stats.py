"""Delivery statistics for the log page and the settings panel.

Pure functions over the database: each takes ``now`` (naive UTC) so tests
can fix the clock. Everything here runs the same SQL on SQLite and
PostgreSQL: windows are ranges on indexed timestamp columns compared with
bound parameters, never DB-specific date functions.
"""

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
from sqlalchemy import Integer, case, func, literal, select, union_all

from models import db
from models.events import CANCELLED, DELIVERED, FAILED, OPEN_STATES, Attempt, Delivery
from tasks.queue import get_redis

#: The chart's outcomes, in stacking order (bottom first), with their labels.
OUTCOMES = (
    ("delivered", "Delivered"),
    ("failed", "Failed"),
    ("open", "Pending or retrying"),
    ("cancelled", "Cancelled"),
)
#: The chart's two ranges: (window, bucket width).
RANGES = {
    "24h": (timedelta(hours=24), timedelta(hours=1)),
    "7d": (timedelta(days=7), timedelta(hours=6)),
}
DEFAULT_RANGE = "24h"
STATS_WINDOW = timedelta(hours=24)
_EPOCH = datetime(1970, 1, 1)
#: The smallest step of a stored timestamp: "created at or before now" is "before now + 1 µs".
_TICK = timedelta(microseconds=1)


@dataclass
class Bucket:
    """Deliveries created in [start, end), counted by their current outcome."""

    start: datetime
    end: datetime
    delivered: int = 0
    failed: int = 0
    open: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.delivered + self.failed + self.open + self.cancelled


@dataclass
class Summary:
    """The figures above the chart."""

    hits: int  # every delivery still kept
    last_hit_at: datetime | None  # the latest attempt
    last_hit_status: int | None
    last_hit_ok: bool | None
    last_hit_error: str | None  # its error kind when it had no HTTP status
    attempts_24h: int
    succeeded_24h: int
    p50_ms: float | None
    p95_ms: float | None

    @property
    def success_rate(self) -> float | None:
        """Share of the last 24 h's attempts that got a 2xx, 0..1 (None without attempts)."""
        if not self.attempts_24h:
            return None
        return self.succeeded_24h / self.attempts_24h


@dataclass
class Series:
    """The chart's data: consecutive buckets covering one range."""

    range: str
    width: timedelta
    buckets: list[Bucket] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        """Each outcome summed over the whole range."""
        return {key: sum(getattr(b, key) for b in self.buckets) for key, _ in OUTCOMES}

    @property
    def peak(self) -> int:
        return max((b.total for b in self.buckets), default=0)


def nearest_rank(count: int, p: float) -> int:
    """The 1-based rank of the ``p``-th percentile among ``count`` sorted values.

    Nearest rank (not interpolation) so the figure is a duration that was
    actually observed, and easy to check by hand.
    """
    return max(1, math.ceil(p / 100 * count))


def percentile(sorted_values: list[float], p: float) -> float | None:
    """The nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    return sorted_values[nearest_rank(len(sorted_values), p) - 1]


def outcome_of(status: str) -> str:
    """Map a delivery status to its chart outcome."""
    if status in OPEN_STATES:
        return "open"
    if status in (DELIVERED, FAILED, CANCELLED):
        return status
    return "open"


#: "<count>:<highest delivery id counted>", so the next count reads only newer rows.
#: One key per database (see :func:`hits_key`): several Hookline databases may share a Redis.
HITS_KEY = "hookline:hits"
#: The cached count is rebuilt at least this often, whatever happens.
HITS_TTL = 600


def hits_key() -> str:
    """The Redis key caching this database's hits: HITS_KEY + a digest of the database URL.

    The URL without its password (which may change; the database does not),
    with PostgreSQL's search_path option if any, so two schemas get two keys.
    """
    url = db.engine.url.render_as_string(hide_password=True)
    return f"{HITS_KEY}:{hashlib.sha256(url.encode()).hexdigest()[:16]}"


def count_hits() -> int:
    """Deliveries kept (the seed's "hits"): counted in full once, then only the new rows.

    COUNT(*) over a million deliveries costs ~55 ms on PostgreSQL and the log
    refreshes its stats every few seconds. Deliveries are only ever removed
    by the retention prune, which forgets the cached figure (and it expires
    after HITS_TTL anyway); without Redis this is a plain COUNT(*).
    """
    redis_client, key = get_redis(), hits_key()
    try:
        cached = redis_client.get(key)
    except redis.exceptions.ConnectionError:
        redis_client, cached = None, None
    base, counted_up_to = (int(part) for part in cached.split(b":")) if cached else (0, 0)
    new, newest = db.session.execute(
        select(func.count(), func.max(Delivery.id)).where(Delivery.id > counted_up_to)
    ).one()
    total = base + new
    if redis_client is not None and newest is not None:
        try:
            redis_client.set(key, f"{total}:{newest}", ex=HITS_TTL)
        except redis.exceptions.ConnectionError:
            pass
    return total


def forget_hits() -> None:
    """Deliveries were deleted: the next count_hits() counts them all again."""
    get_redis().delete(hits_key())


def nth_duration(window, rank: int, count: int) -> float | None:
    """The ``rank``-th smallest of the ``count`` attempt durations (1-based) in ``window``.

    Sorted by the database, from whichever end is nearer: ORDER BY ...
    LIMIT 1 OFFSET k keeps only the k + 1 best rows while it scans (a
    bounded heap on both databases), so the 95th percentile is the
    (count - rank + 1)-th largest, a heap of 5% of the window instead of 95%
    (measured with 73,000 attempts a day on SQLite: 39-55 ms down to 9-13).
    """
    query = select(Attempt.duration_ms).where(*window).limit(1)
    if rank > count - rank + 1:
        return db.session.scalar(query.order_by(Attempt.duration_ms.desc()).offset(count - rank))
    return db.session.scalar(query.order_by(Attempt.duration_ms).offset(rank - 1))


def summary(now: datetime) -> Summary:
    """Hits, the last hit, and the last 24 h's success rate and p50/p95 durations.

    Aggregated in the database, never by loading the window's rows: a count
    and a sum, then each percentile as ORDER BY duration LIMIT 1 OFFSET rank,
    all read from the (started_at, ok, duration_ms) index alone. The same SQL
    on SQLite and PostgreSQL (neither shares a percentile function with the
    other). Measured with 43,000 attempts a day: 13 ms, against 110 ms to
    fetch the rows and sort them in Python.
    """
    hits = count_hits()
    last = db.session.execute(
        select(Attempt.started_at, Attempt.status_code, Attempt.ok, Attempt.error_kind)
        .where(Attempt.started_at <= now)
        .order_by(Attempt.started_at.desc(), Attempt.id.desc())
        .limit(1)
    ).first()
    window = (Attempt.started_at > now - STATS_WINDOW, Attempt.started_at <= now)
    attempts, succeeded = db.session.execute(
        select(func.count(), func.sum(case((Attempt.ok, 1), else_=0))).where(*window)
    ).one()
    return Summary(
        hits=hits,
        last_hit_at=last.started_at if last else None,
        last_hit_status=last.status_code if last else None,
        last_hit_ok=last.ok if last else None,
        last_hit_error=last.error_kind if last else None,
        attempts_24h=attempts,
        succeeded_24h=succeeded or 0,
        p50_ms=nth_duration(window, nearest_rank(attempts, 50), attempts) if attempts else None,
        p95_ms=nth_duration(window, nearest_rank(attempts, 95), attempts) if attempts else None,
    )


def floor_time(moment: datetime, width: timedelta) -> datetime:
    """The start of the ``width``-long UTC slot holding ``moment`` (hours, 6 h, days)."""
    return _EPOCH + ((moment - _EPOCH) // width) * width


def bucket_edges(now: datetime, range_name: str = DEFAULT_RANGE) -> tuple[list[datetime], timedelta]:
    """The boundaries of a range's buckets; the last bucket holds ``now``."""
    window, width = RANGES[range_name]
    end = floor_time(now, width) + width
    count = int(window / width)
    return [end - width * (count - i) for i in range(count + 1)], width


def outcome_series(now: datetime, range_name: str = DEFAULT_RANGE) -> Series:
    """Deliveries per bucket by outcome over the last 24 h (hourly) or 7 d (6-hourly).

    One round trip: a UNION ALL of one ``GROUP BY status`` count per bucket,
    each a range on the (created_at, status) index. The database returns at
    most buckets × statuses rows instead of every row of the window, and the
    SQL is the same on SQLite and PostgreSQL (no date functions). Measured on
    a million rows it beats numbering each row's bucket with a CASE by 3× on
    SQLite and matches it on PostgreSQL.
    """
    if range_name not in RANGES:
        range_name = DEFAULT_RANGE
    edges, width = bucket_edges(now, range_name)
    buckets = [Bucket(start, end) for start, end in zip(edges, edges[1:])]
    counts = [
        select(literal(i, Integer).label("bucket"), Delivery.status, func.count().label("count"))
        .where(Delivery.created_at >= start, Delivery.created_at < min(end, now + _TICK))
        .group_by(Delivery.status)
        for i, (start, end) in enumerate(zip(edges, edges[1:]))
    ]
    for bucket_index, status, count in db.session.execute(union_all(*counts)):
        bucket = buckets[bucket_index]
        key = outcome_of(status)
        setattr(bucket, key, getattr(bucket, key) + count)
    return Series(range=range_name, width=width, buckets=buckets)
