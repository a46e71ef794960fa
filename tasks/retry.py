"""When to try a failed delivery again, and how long a retrying head holds its call.

The admin picks a retry window in the panel ("Keep retrying for"): about
40 minutes (the seed's 30 s, 2 min, 8 min and 32 min: 5 attempts, the
default), about a day (then 2 h, 5 h, 10 h, 10 h: 9 attempts) or about 3
days (then 2 h, 5 h, 10 h, 14 h, 20 h, 20 h: 11 attempts).
``HOOKLINE_RETRY_SCHEDULE`` overrides the choice; ``HOOKLINE_RETRY_SCALE``
(refused in production) multiplies every delay so tests and demos run the
real schedules in seconds. Each delay gets ±10% jitter so a receiver that
comes back is not hit by every retry at the same second.
"""

import random

JITTER = 0.10
#: A receiver's Retry-After is honoured up to this many seconds.
MAX_RETRY_AFTER = 3600.0

_SEED = (30, 120, 480, 1920)
_MIN, _HOUR = 60, 3600
#: The panel's choices: key -> (label, delays in seconds between attempts).
WINDOWS = {
    "40m": ("about 40 minutes (5 attempts)", _SEED),
    "1d": ("about a day (9 attempts)", _SEED + (2 * _HOUR, 5 * _HOUR, 10 * _HOUR, 10 * _HOUR)),
    "3d": ("about 3 days (11 attempts)",
           _SEED + (2 * _HOUR, 5 * _HOUR, 10 * _HOUR, 14 * _HOUR, 20 * _HOUR, 20 * _HOUR)),
}
DEFAULT_WINDOW = "40m"

#: A retrying head holds its call's later events back for this long after
#: its first failed attempt; after that the rest of the call goes on.
HOLD_SECONDS = 32 * _MIN

#: Answers that mean "this event will not be accepted as it is": the head
#: stops holding its call at once (it still keeps its own schedule).
RETRYABLE_4XX = (408, 429)


def schedule_for(window: str | None, config) -> tuple[float, ...]:
    """The delays in force: HOOKLINE_RETRY_SCHEDULE if set, else the window's, times HOOKLINE_RETRY_SCALE."""
    delays = config.get("HOOKLINE_RETRY_SCHEDULE")
    if delays is None:
        delays = WINDOWS.get(window or DEFAULT_WINDOW, WINDOWS[DEFAULT_WINDOW])[1]
    scale = config.get("HOOKLINE_RETRY_SCALE", 1.0)
    return tuple(delay * scale for delay in delays)


def hold_seconds(config) -> float:
    """How long a retrying head holds its call (HOLD_SECONDS times HOOKLINE_RETRY_SCALE)."""
    return HOLD_SECONDS * config.get("HOOKLINE_RETRY_SCALE", 1.0)


def lets_call_go(status_code: int | None) -> bool:
    """True for a 4xx other than 408/429: retrying soon will not help, so the call goes on."""
    return status_code is not None and 400 <= status_code < 500 and status_code not in RETRYABLE_4XX


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
