"""Configuration from the environment.

Three environments, chosen by ``HOOKLINE_ENV``:

* ``production`` (the default) — safe settings: HTTPS required, no private
  networks, refuses to start with the default SECRET_KEY.
* ``development`` (set by ``make dev``) — http and loopback URLs allowed.
* ``testing`` — like development, with CSRF off unless a test turns it on.

An explicit environment variable always beats the environment's default.
"""

import os
from datetime import timedelta

VERSION = "0.1.0"
DEFAULT_SECRET_KEY = "dev-insecure-change-me"

_ENV_DEFAULTS = {
    "production": {
        "HOOKLINE_REQUIRE_HTTPS": True,
        "HOOKLINE_ALLOWED_NETWORKS": "",
        "SESSION_COOKIE_SECURE": True,
        "REMEMBER_COOKIE_SECURE": True,
    },
    "development": {
        "HOOKLINE_REQUIRE_HTTPS": False,
        "HOOKLINE_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
        "SESSION_COOKIE_SECURE": False,
        "REMEMBER_COOKIE_SECURE": False,
    },
    "testing": {
        "HOOKLINE_REQUIRE_HTTPS": False,
        "HOOKLINE_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
        "SESSION_COOKIE_SECURE": False,
        "REMEMBER_COOKIE_SECURE": False,
        "TESTING": True,
        "WTF_CSRF_ENABLED": False,
    },
}


def _flag(value: str) -> bool:
    """Read a 0/1 style environment flag."""
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _seconds_list(value: str) -> tuple[float, ...]:
    """Parse ``HOOKLINE_RETRY_SCHEDULE`` ("30,120,480") into seconds."""
    try:
        delays = tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise RuntimeError(
            f"HOOKLINE_RETRY_SCHEDULE must be comma-separated seconds, got {value!r}"
        ) from None
    if any(d < 0 for d in delays):
        raise RuntimeError("HOOKLINE_RETRY_SCHEDULE may not contain negative delays")
    return delays


def _ca_bundle(path: str) -> str:
    """Check ``HOOKLINE_CA_BUNDLE`` names a readable file ("" when unset)."""
    path = path.strip()
    if path and not os.access(path, os.R_OK):
        raise RuntimeError(f"HOOKLINE_CA_BUNDLE must name a readable PEM file, got {path!r}")
    return path
def _scale(value: str) -> float:
    """Parse ``HOOKLINE_RETRY_SCALE``: a positive factor."""
    try:
        scale = float(value)
    except ValueError:
        scale = 0.0
    if not scale > 0:
        raise RuntimeError(f"HOOKLINE_RETRY_SCALE must be a positive number, got {value!r}")
    return scale


def load_config(instance_path: str, environ=os.environ) -> dict:
    """Build the Flask config mapping for the environment named by HOOKLINE_ENV."""
    env = environ.get("HOOKLINE_ENV", "production")
    if env not in _ENV_DEFAULTS:
        raise RuntimeError(
            f"HOOKLINE_ENV must be production, development or testing, got {env!r}"
        )
    config = {
        "HOOKLINE_ENV": env,
        "SECRET_KEY": environ.get("SECRET_KEY", DEFAULT_SECRET_KEY),
        # Encrypts secrets at rest; comma-separated, the first encrypts (default: SECRET_KEY).
        "HOOKLINE_ENCRYPTION_KEY": environ.get("HOOKLINE_ENCRYPTION_KEY", ""),
        "SQLALCHEMY_DATABASE_URI": environ.get(
            "DATABASE_URL",
            "sqlite:///" + os.path.join(instance_path, "hookline.sqlite"),
        ),
        "REDIS_URL": environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        # `make dev` runs an embedded redis-server on this socket (see cli/dev.py).
        "HOOKLINE_DEV_REDIS_SOCKET": os.path.join(instance_path, "redis", "redis.sock"),
        "HOOKLINE_QUEUE": environ.get("HOOKLINE_QUEUE", "hookline"),
        # None: the retry window chosen in the panel (tasks/retry.py); set, it overrides that.
        "HOOKLINE_RETRY_SCHEDULE": None,
        # Multiplies every retry delay and the 32 min a head holds its call (not in production).
        "HOOKLINE_RETRY_SCALE": _scale(environ.get("HOOKLINE_RETRY_SCALE", "1")),
        # How often each worker's timer looks for due work that no RQ job
        # covers (Redis lost its jobs, or a retry came due).
        "HOOKLINE_TICK_SECONDS": float(environ.get("HOOKLINE_TICK_SECONDS", "1")),
        # A claim lasts this long unless its drain renews it (every third of it,
        # while the batch is in flight): a dead worker's deliveries wait at most this.
        "HOOKLINE_LEASE_SECONDS": float(environ.get("HOOKLINE_LEASE_SECONDS", "15")),
        "HOOKLINE_DELIVERY_TIMEOUT": float(environ.get("HOOKLINE_DELIVERY_TIMEOUT", "10")),
        # Deliveries per claim. Every batch pays one claim, promote, roll-up and
        # commit whatever its size, so a backlog drains cheaper per event in
        # larger batches; at low load a claim takes what is due (often one).
        "HOOKLINE_BATCH_SIZE": int(environ.get("HOOKLINE_BATCH_SIZE", "64")),
        # PostgreSQL: a publish waits for its commit's disk flush only when set
        # (off: like SQLite's synchronous=NORMAL, see tasks/publish.py).
        "HOOKLINE_PUBLISH_SYNC_COMMIT": _flag(environ.get("HOOKLINE_PUBLISH_SYNC_COMMIT", "0")),
        # An idle drain waits this long for the next publish before its job ends.
        "HOOKLINE_DRAIN_LINGER": float(environ.get("HOOKLINE_DRAIN_LINGER", "2")),
        # A drain job hands over to a fresh one after this long (RQ's job timeout is 600 s).
        "HOOKLINE_DRAIN_MAX_SECONDS": float(environ.get("HOOKLINE_DRAIN_MAX_SECONDS", "300")),
        # Deliveries of different calls one drain sends side by side.
        "HOOKLINE_SEND_CONCURRENCY": int(environ.get("HOOKLINE_SEND_CONCURRENCY", "8")),
        # After a secret rotation the old secret keeps signing this long.
        "HOOKLINE_SECRET_OVERLAP_HOURS": float(environ.get("HOOKLINE_SECRET_OVERLAP_HOURS", "24")),
        "HOOKLINE_USER_AGENT": f"Hookline/{VERSION}",
        # An extra PEM file of CAs the sender trusts besides certifi's (a corporate CA).
        "HOOKLINE_CA_BUNDLE": _ca_bundle(environ.get("HOOKLINE_CA_BUNDLE", "")),
        "MAX_CONTENT_LENGTH": 256 * 1024,
        # Auto-disable when nothing succeeded for this long, with this many failures.
        "HOOKLINE_AUTO_DISABLE_HOURS": float(environ.get("HOOKLINE_AUTO_DISABLE_HOURS", "24")),
        "HOOKLINE_AUTO_DISABLE_MIN_FAILURES": int(environ.get("HOOKLINE_AUTO_DISABLE_MIN_FAILURES", "10")),
        # "Failing" (the panel's banner, the alerts): 5+ failed attempts in a row over this
        # long, or an open delivery older than HOOKLINE_STUCK_SECONDS (tasks/watch.py).
        "HOOKLINE_FAILING_SECONDS": float(environ.get("HOOKLINE_FAILING_SECONDS", "300")),
        "HOOKLINE_STUCK_SECONDS": float(environ.get("HOOKLINE_STUCK_SECONDS", "600")),
        "HOOKLINE_HEALTH_CACHE_SECONDS": float(environ.get("HOOKLINE_HEALTH_CACHE_SECONDS", "5")),
        # E-mail alerts (tasks/alerts.py): sent by each worker's alert thread every
        # HOOKLINE_ALERT_SECONDS; "failing" is alerted after HOOKLINE_ALERT_AFTER_SECONDS.
        "HOOKLINE_ALERT_SECONDS": float(environ.get("HOOKLINE_ALERT_SECONDS", "30")),
        "HOOKLINE_ALERT_AFTER_SECONDS": float(environ.get("HOOKLINE_ALERT_AFTER_SECONDS", "3600")),
        "MAIL_SERVER": environ.get("MAIL_SERVER", ""),
        "MAIL_PORT": int(environ.get("MAIL_PORT", "25")),
        "MAIL_USERNAME": environ.get("MAIL_USERNAME", ""),
        "MAIL_PASSWORD": environ.get("MAIL_PASSWORD", ""),
        "MAIL_USE_TLS": _flag(environ.get("MAIL_USE_TLS", "0")),
        "MAIL_FROM": environ.get("MAIL_FROM", "hookline@localhost"),
        "MAIL_TIMEOUT": float(environ.get("MAIL_TIMEOUT", "10")),
        # Deliveries and attempts older than this are pruned by the maintenance pass.
        "HOOKLINE_RETENTION_DAYS": float(environ.get("HOOKLINE_RETENTION_DAYS", "30")),
        "HOOKLINE_MAINTENANCE_SECONDS": float(environ.get("HOOKLINE_MAINTENANCE_SECONDS", "600")),
        # The log's stats are computed at most once per this many seconds (0: on every request).
        "HOOKLINE_STATS_CACHE_SECONDS": float(environ.get("HOOKLINE_STATS_CACHE_SECONDS", "5")),
        # PostgreSQL: how often one worker VACUUMs the deliveries table (0: leave it to autovacuum).
        "HOOKLINE_VACUUM_SECONDS": float(environ.get("HOOKLINE_VACUUM_SECONDS", "5")),
        # Sign-in throttling: failures allowed per window, per account and per address.
        "HOOKLINE_LOGIN_MAX_PER_ACCOUNT": int(environ.get("HOOKLINE_LOGIN_MAX_PER_ACCOUNT", "5")),
        "HOOKLINE_LOGIN_MAX_PER_ADDRESS": int(environ.get("HOOKLINE_LOGIN_MAX_PER_ADDRESS", "20")),
        "HOOKLINE_LOGIN_WINDOW_SECONDS": int(environ.get("HOOKLINE_LOGIN_WINDOW_SECONDS", "900")),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        # "Keep me signed in": two weeks, never readable by scripts or sent
        # cross-site; signing out anywhere ends it (User.session_token).
        "REMEMBER_COOKIE_DURATION": timedelta(days=14),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_ENABLED": True,
        "TESTING": False,
    }
    config.update(_ENV_DEFAULTS[env])
    if env == "development" and "REDIS_URL" not in environ:
        config["REDIS_URL"] = "unix://" + config["HOOKLINE_DEV_REDIS_SOCKET"]

    if "HOOKLINE_RETRY_SCHEDULE" in environ:
        config["HOOKLINE_RETRY_SCHEDULE"] = _seconds_list(environ["HOOKLINE_RETRY_SCHEDULE"])
    if "HOOKLINE_REQUIRE_HTTPS" in environ:
        config["HOOKLINE_REQUIRE_HTTPS"] = _flag(environ["HOOKLINE_REQUIRE_HTTPS"])
    if "HOOKLINE_ALLOWED_NETWORKS" in environ:
        config["HOOKLINE_ALLOWED_NETWORKS"] = environ["HOOKLINE_ALLOWED_NETWORKS"]
    return config


def check_production_safety(config: dict) -> None:
    """Refuse to run production with the development SECRET_KEY, a retry scale or a moved clock."""
    if config["HOOKLINE_ENV"] == "production" and config["SECRET_KEY"] == DEFAULT_SECRET_KEY:
        raise RuntimeError(
            "SECRET_KEY is not set, and HOOKLINE_ENV is production (the default), which refuses "
            "the default key. On a development checkout (after `make dev`) run commands with "
            "HOOKLINE_ENV=development, e.g. `make flask ARGS='webhook show'`; a new SECRET_KEY there "
            "could not read the secrets `make dev` stored. In production set SECRET_KEY once "
            "(python -c 'import secrets; print(secrets.token_hex(32))') and keep it."
        )
    if config["HOOKLINE_ENV"] == "production" and config.get("HOOKLINE_RETRY_SCALE", 1.0) != 1.0:
        raise RuntimeError(
            "HOOKLINE_RETRY_SCALE is for tests and demos: production refuses to start with it "
            "(it would shorten or stretch every retry). Unset it."
        )
    if config["HOOKLINE_ENV"] == "production" and os.environ.get("HOOKLINE_CLOCK_FILE"):
        raise RuntimeError(
            "HOOKLINE_CLOCK_FILE is for tests: it moves the clock that decides what is due. "
            "Production refuses to start with it. Unset it."
        )
