"""Sign-in throttling per account and per client address, counted in Redis.

Every attempt is counted *before* its password is checked, and refused when
the new count is over the limit: a fixed window per key, one Lua script that
INCRs both counters and starts each window on its first hit (atomic, one
round trip, so parallel attempts cannot all read "not yet over" and then all
check a password). A plain script rather than the ``limits`` package: it
counts both keys and reads their TTLs (for Retry-After) in one round trip,
and works on any connection redis-py opens (TCP, TLS, the embedded server's
unix socket) with nothing more to install.

Redis being down must not lock admins out, so errors let the attempt through.
"""

import logging

from flask import current_app

from extensions import get_redis

log = logging.getLogger(__name__)

# KEYS: the counters; ARGV[1]: the window in seconds. Returns count, ttl per key.
_HIT = """
local out = {}
for _, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  local ttl = redis.call('TTL', key)
  if ttl < 0 then
    -- The first hit of a window (or a counter that somehow lost its expiry).
    redis.call('EXPIRE', key, ARGV[1])
    ttl = tonumber(ARGV[1])
  end
  table.insert(out, count)
  table.insert(out, ttl)
end
return out
"""

# KEYS[1]: the account's counter (cleared), KEYS[2]: the address's (given back one).
_SUCCESS = """
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 and tonumber(redis.call('GET', KEYS[2])) > 0 then
  redis.call('DECR', KEYS[2])
end
return 0
"""


def _keys(email: str, address: str) -> list[tuple[str, int]]:
    config = current_app.config
    return [
        (f"hookline:login:account:{email.strip().lower()}", config["HOOKLINE_LOGIN_MAX_PER_ACCOUNT"]),
        (f"hookline:login:address:{address}", config["HOOKLINE_LOGIN_MAX_PER_ADDRESS"]),
    ]


def _script(source: str):
    # register_script sends EVALSHA and falls back to EVAL once per Redis restart.
    scripts = current_app.extensions.setdefault("hookline_throttle_scripts", {})
    if source not in scripts:
        scripts[source] = get_redis().register_script(source)
    return scripts[source]


def hit(email: str, address: str) -> int:
    """Count a sign-in attempt; return the seconds to wait when it is over a limit, else 0.

    Call it before checking the password: a refused attempt must not reach it.
    """
    keys = _keys(email, address)
    window = current_app.config["HOOKLINE_LOGIN_WINDOW_SECONDS"]
    try:
        values = _script(_HIT)(keys=[key for key, _ in keys], args=[window])
    except Exception:
        log.warning("login throttle unavailable (Redis)", exc_info=True)
        return 0
    wait = 0
    for i, (_, limit) in enumerate(keys):
        count, ttl = int(values[2 * i]), int(values[2 * i + 1])
        if count > limit:
            wait = max(wait, ttl if ttl > 0 else 1)
    return wait


def record_success(email: str, address: str) -> None:
    """A correct password clears the account's counter and gives the address its attempt back.

    So the address limit counts failed sign-ins, as the account limit does.
    """
    try:
        _script(_SUCCESS)(keys=[key for key, _ in _keys(email, address)])
    except Exception:
        log.warning("login throttle unavailable (Redis)", exc_info=True)
