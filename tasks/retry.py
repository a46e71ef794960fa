"""When to try a failed delivery again.

The seed's schedule: attempt 1 at once, then 30 s, 2 min, 8 min and 32 min
after each failure; after the 5th attempt the delivery has failed. Each
delay gets ±10% jitter so a receiver that comes back is not hit by every
retry at the same second.
"""

import random

JITTER = 0.10
#: A receiver's Retry-After is honoured up to this many seconds.
MAX_RETRY_AFTER = 3600.0


def next_delay(
    attempts_made: int,
    schedule: tuple[float, ...],
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next attempt, or None when the delivery has failed for good.

    ``attempts_made`` counts the attempt that just failed (1 after the first).
    A ``Retry-After`` longer than the scheduled delay wins, capped at one hour.
    """
    if attempts_made > len(schedule):
        return None
    rng = rng or random
    delay = schedule[attempts_made - 1] * rng.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, MAX_RETRY_AFTER)
    return delay


def max_attempts(schedule: tuple[float, ...]) -> int:
    """The number of attempts a delivery gets before it fails."""
    return len(schedule) + 1
