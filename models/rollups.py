"""Attempt roll-ups: one row per UTC minute, counts by outcome and a latency histogram.

The stats read these instead of the attempts: a day is at most 1,440 rows
whatever the traffic (a million attempts a day read ~1,440 rows, not a
million). Rows are written in the transaction that records the attempts
(tasks.rollups), so they never disagree with the log.

Latency buckets are log-spaced, four per doubling from 0.1 ms: bucket 0
holds durations under 0.1 ms and bucket ``i`` holds [0.1·2^((i-1)/4),
0.1·2^(i/4)) ms, the last one everything from ~74 s up. A percentile read
from a bucket is its geometric middle, within 2^(1/8) - 1 ≈ 9.1% of the
exact value. One integer column per bucket (not a JSON array) so that
concurrent drains add to the same minute with a plain ``col = col + :n``
upsert on both SQLite and PostgreSQL.
"""

import math
from datetime import datetime, timedelta

from sqlalchemy import Column, Integer

from models import EPOCH, db

#: The smallest bucket boundary, in ms.
FIRST_MS = 0.1
#: Buckets per doubling of the duration.
PER_DOUBLING = 4
BUCKETS = 80
#: Outcome columns: each attempt counts once under the state it led to; a
#: cancellation (closed without a send) counts under ``cancelled``.
OUTCOME_COLUMNS = ("delivered", "retrying", "failed", "cancelled")
LATENCY_COLUMNS = tuple(f"lat_{i:02d}" for i in range(BUCKETS))
_MINUTE = timedelta(minutes=1)

rollups = db.Table(
    "attempt_rollups",
    # Minutes since 1970-01-01 UTC: plain integers make the chart's buckets an
    # integer division, the same SQL on both databases.
    Column("minute", Integer, primary_key=True, autoincrement=False),
    *(Column(name, Integer, nullable=False, default=0, server_default="0")
      for name in OUTCOME_COLUMNS + LATENCY_COLUMNS),
)


def minute_of(moment: datetime) -> int:
    """The UTC minute (minutes since 1970) holding a naive UTC ``moment``."""
    return (moment - EPOCH) // _MINUTE


def bucket_of(duration_ms: float) -> int:
    """The latency bucket holding ``duration_ms``."""
    if duration_ms < FIRST_MS:
        return 0
    return min(BUCKETS - 1, 1 + math.floor(PER_DOUBLING * math.log2(duration_ms / FIRST_MS)))


def middle_of(bucket: int) -> float:
    """The duration a bucket stands for: its geometric middle (the last bucket: its floor)."""
    if bucket == 0:
        return FIRST_MS / 2
    if bucket == BUCKETS - 1:
        return FIRST_MS * 2 ** ((bucket - 1) / PER_DOUBLING)
    return FIRST_MS * 2 ** ((bucket - 0.5) / PER_DOUBLING)
