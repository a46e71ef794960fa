"""Delivery statistics for the log page and the settings panel, read from the roll-ups.

The figures come from ``attempt_rollups`` (models.rollups: one row per
minute, written with the attempts), so a day costs at most 1,440 rows and a
week 10,080 however many deliveries they held; only the last hit is read
from the attempts (one indexed lookup). Each function takes ``now`` (naive UTC) so tests can fix the clock.

Every open tab polls the stats every few seconds, so ``current()`` computes
them at most once per HOOKLINE_STATS_CACHE_SECONDS per database and window
and keeps them in Redis: shared by every web process and host (a
process-local cache would compute once per gunicorn worker), and Redis is
there anyway. Without Redis the stats are computed on every request.
"""

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import redis
from flask import current_app
from sqlalchemy import func, select

from models import EPOCH, db, utcnow
from models.events import Attempt
from models.rollups import LATENCY_COLUMNS, middle_of, minute_of, rollups
from extensions import get_redis

#: The chart's outcomes, in stacking order (bottom first), with their labels:
#: what each attempt led to, and deliveries closed without one.
OUTCOMES = (
    ("delivered", "Delivered"),
    ("failed", "Failed"),
    ("retrying", "Will retry"),
    ("cancelled", "Cancelled"),
)
#: The chart's two ranges: (window, bucket width).
RANGES = {
    "24h": (timedelta(hours=24), timedelta(hours=1)),
    "7d": (timedelta(days=7), timedelta(hours=6)),
}
DEFAULT_RANGE = "24h"
#: The success rate and percentiles cover this many minutes, the current one included.
STATS_MINUTES = 24 * 60


@dataclass
class Bucket:
    """Outcomes in [start, end): attempts by the state they led to, and cancellations."""

    start: datetime
    end: datetime
    delivered: int = 0
    failed: int = 0
    retrying: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.delivered + self.failed + self.retrying + self.cancelled


@dataclass
class Summary:
    """The figures above the chart (the 24 h ones over the 1,440 minutes ending with now's)."""

    hits: int  # every webhook call (attempt) still kept, up to now's minute
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


def histogram_percentile(counts: list[int], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of a latency histogram, as its bucket's middle (±9.1%)."""
    total = sum(counts)
    if not total:
        return None
    rank, seen = nearest_rank(total, p), 0
    for bucket, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return middle_of(bucket)
    return None  # not reached: the counts add up to total


def summary(now: datetime) -> Summary:
    """Hits, the last hit, and the last 24 h's success rate and p50/p95 durations.

    One aggregate over at most 1,440 roll-up rows (the window is whole
    minutes: the 1,439 before now's and now's own), one sum of the calls
    kept (a row per minute of the retention period: 43,200 small rows for
    30 days) and the latest attempt by the (started_at, ...) index.
    """
    last = db.session.execute(
        select(Attempt.started_at, Attempt.status_code, Attempt.ok, Attempt.error_kind)
        .where(Attempt.started_at <= now)
        .order_by(Attempt.started_at.desc(), Attempt.id.desc())
        .limit(1)
    ).first()
    newest = minute_of(now)
    c = rollups.c
    row = db.session.execute(
        select(func.sum(c.delivered), func.sum(c.retrying), func.sum(c.failed),
               *(func.sum(c[name]) for name in LATENCY_COLUMNS))
        .where(c.minute > newest - STATS_MINUTES, c.minute <= newest)
    ).one()
    hits = db.session.scalar(select(func.sum(c.delivered + c.retrying + c.failed)).where(c.minute <= newest))
    delivered, retrying, failed = (value or 0 for value in row[:3])
    latencies = [value or 0 for value in row[3:]]
    return Summary(
        hits=hits or 0,
        last_hit_at=last.started_at if last else None,
        last_hit_status=last.status_code if last else None,
        last_hit_ok=last.ok if last else None,
        last_hit_error=last.error_kind if last else None,
        attempts_24h=delivered + retrying + failed,
        succeeded_24h=delivered,
        p50_ms=histogram_percentile(latencies, 50),
        p95_ms=histogram_percentile(latencies, 95),
    )


def floor_time(moment: datetime, width: timedelta) -> datetime:
    """The start of the ``width``-long UTC slot holding ``moment`` (hours, 6 h, days)."""
    return EPOCH + ((moment - EPOCH) // width) * width


def bucket_edges(now: datetime, range_name: str = DEFAULT_RANGE) -> tuple[list[datetime], timedelta]:
    """The boundaries of a range's buckets; the last bucket holds ``now``."""
    window, width = RANGES[range_name]
    end = floor_time(now, width) + width
    count = int(window / width)
    return [end - width * (count - i) for i in range(count + 1)], width


def outcome_series(now: datetime, range_name: str = DEFAULT_RANGE) -> Series:
    """Outcomes per bucket over the last 24 h (hourly) or 7 d (6-hourly), up to now's minute.

    One GROUP BY over the range's roll-up rows (≤ 1,440 or 10,080): minutes
    are integers, so a row's bucket is an integer division, the same SQL on
    SQLite and PostgreSQL.
    """
    if range_name not in RANGES:
        range_name = DEFAULT_RANGE
    edges, width = bucket_edges(now, range_name)
    buckets = [Bucket(start, end) for start, end in zip(edges, edges[1:])]
    first, per_bucket = minute_of(edges[0]), int(width / timedelta(minutes=1))
    c = rollups.c
    index = ((c.minute - first) // per_bucket).label("bucket")
    rows = db.session.execute(
        select(index, func.sum(c.delivered), func.sum(c.failed), func.sum(c.retrying), func.sum(c.cancelled))
        .where(c.minute >= first, c.minute <= minute_of(now))
        .group_by(index)
    )
    for i, *counts in rows:
        for (key, _), count in zip(OUTCOMES, counts):
            setattr(buckets[i], key, count or 0)
    return Series(range=range_name, width=width, buckets=buckets)


# -- one computation per interval, whatever the number of open tabs -----------


def _key(range_name: str) -> str:
    """The cache key of a window's stats on this app's database."""
    url = db.engine.url.render_as_string(hide_password=True)
    return f"hookline:stats:{hashlib.sha1(url.encode()).hexdigest()[:12]}:{range_name}"


def _compute(range_name: str) -> dict:
    now = utcnow()
    return {"now": now, "summary": summary(now), "series": outcome_series(now, range_name)}


def _dump(stats: dict, fresh_until: float) -> str:
    series = stats["series"]
    return json.dumps({
        "fresh_until": fresh_until,
        "now": stats["now"].isoformat(),
        "summary": {**asdict(stats["summary"]), "last_hit_at": stats["summary"].last_hit_at
                    and stats["summary"].last_hit_at.isoformat()},
        "series": {"range": series.range, "buckets": [
            [b.start.isoformat()] + [getattr(b, key) for key, _ in OUTCOMES] for b in series.buckets]},
    })


def _load(raw: bytes) -> tuple[dict, float]:
    """The cached stats and until when they are fresh; unreadable ones (another version's) are stale."""
    try:
        return _parse(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        return {}, 0.0


def _parse(data: dict) -> tuple[dict, float]:
    found = data["summary"]
    if found["last_hit_at"]:
        found["last_hit_at"] = datetime.fromisoformat(found["last_hit_at"])
    range_name = data["series"]["range"]
    width = RANGES[range_name][1]
    buckets = []
    for start, *counts in data["series"]["buckets"]:
        start = datetime.fromisoformat(start)
        buckets.append(Bucket(start, start + width, **{key: n for (key, _), n in zip(OUTCOMES, counts)}))
    stats = {"now": datetime.fromisoformat(data["now"]), "summary": Summary(**found),
             "series": Series(range=range_name, width=width, buckets=buckets)}
    return stats, data["fresh_until"]


def current(range_name: str = DEFAULT_RANGE) -> dict:
    """``{"now", "summary", "series"}`` for a window, computed at most once per interval.

    Stale-while-revalidate: when the cached figures are older than
    HOOKLINE_STATS_CACHE_SECONDS, the one request that takes the Redis lock
    recomputes them while the others keep showing the previous figures (a
    first computation is waited for, up to a few seconds). 0 turns it off.
    """
    if range_name not in RANGES:
        range_name = DEFAULT_RANGE
    interval = current_app.config["HOOKLINE_STATS_CACHE_SECONDS"]
    if not interval:
        return _compute(range_name)
    client, key = get_redis(), _key(range_name)
    try:
        raw = client.get(key)
        deadline = time.monotonic() + 3
        while True:
            if raw is not None:
                stats, fresh_until = _load(raw)
                if fresh_until > time.time():
                    return stats
            if client.set(key + ":lock", 1, nx=True, ex=max(10, round(interval * 2))):
                break
            if raw is not None and stats:
                return stats  # someone is recomputing them: these are at most one interval old
            if time.monotonic() > deadline:
                return _compute(range_name)
            time.sleep(0.02)
            raw = client.get(key)
    except redis.exceptions.ConnectionError:
        return _compute(range_name)
    try:
        stats = _compute(range_name)
        client.set(key, _dump(stats, time.time() + interval), ex=max(60, round(interval * 12)))
    finally:
        client.delete(key + ":lock")
    return stats


def forget() -> None:
    """Something the stats show was recorded (a test): the next request computes them afresh."""
    try:
        get_redis().delete(*(_key(range_name) for range_name in RANGES))
    except redis.exceptions.ConnectionError:
        pass
