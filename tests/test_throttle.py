"""The sign-in throttle holds under parallel guesses, over TCP and the unix socket.

Password checks are counted from the real DEBUG line ``User.check_password``
writes for every check, not by replacing any of our code.
"""

import logging
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from models import db
from models.users import User
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, free_port, start_redis_server


@pytest.fixture(scope="module")
def unix_redis_url():
    """A private redis-server reached through a unix socket, as `make dev`'s embedded one."""
    workdir = tempfile.mkdtemp(prefix="hl-redis-")  # short: socket paths stop at 107 bytes
    socket_path = f"{workdir}/redis.sock"
    proc = start_redis_server(free_port(), workdir, unixsocket=socket_path)
    yield f"unix://{socket_path}"
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(params=["tcp", "unix"])
def app_config(request, app_config):
    if request.param == "unix":
        app_config["REDIS_URL"] = request.getfixturevalue("unix_redis_url")
    return app_config


def password_checks(caplog) -> dict[int, int]:
    """How many times each user's password was checked, from the log."""
    counts: dict[int, int] = {}
    for record in caplog.records:
        if record.name == "models.users" and record.msg.startswith("password checked"):
            counts[record.args[0]] = counts.get(record.args[0], 0) + 1
    return counts


def in_parallel(app, attempts: list[tuple[str, str]]) -> list[int]:
    """POST every (email, password) to /login at once, one client per thread; the statuses."""

    def attempt(credentials):
        email, password = credentials
        return app.test_client().post("/login", data={"email": email, "password": password}).status_code

    with ThreadPoolExecutor(max_workers=len(attempts)) as pool:
        return list(pool.map(attempt, attempts))


def user_id(app, email: str) -> int:
    with app.app_context():
        return User.by_email(email).id


def test_100_parallel_wrong_passwords_check_the_account_at_most_5_times(app, admin, caplog):
    caplog.set_level(logging.DEBUG, logger="models.users")
    statuses = in_parallel(app, [(ADMIN_EMAIL, f"guess-{i}") for i in range(100)])
    assert password_checks(caplog) == {user_id(app, ADMIN_EMAIL): 5}
    assert sorted(statuses) == [400] * 5 + [429] * 95
    # The right password is refused too until the window ends.
    assert app.test_client().post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).status_code == 429


def test_100_parallel_wrong_passwords_check_the_address_at_most_20_times(app, caplog):
    # Ten real accounts, ten guesses each, from one address. With the account
    # limit out of the way (10 per account), only the address limit holds them.
    app.config["HOOKLINE_LOGIN_MAX_PER_ACCOUNT"] = 10
    emails = [f"user{i}@example.com" for i in range(10)]
    with app.app_context():
        for email in emails:
            user = User(email=email)
            user.set_password("the-right-one")
            db.session.add(user)
        db.session.commit()
    caplog.set_level(logging.DEBUG, logger="models.users")
    statuses = in_parallel(app, [(emails[i % 10], f"guess-{i}") for i in range(100)])
    assert sum(password_checks(caplog).values()) == 20
    assert sorted(statuses) == [400] * 20 + [429] * 80


def test_a_correct_password_gives_the_address_its_attempt_back(app, admin):
    """The address limit counts failed sign-ins: an office of admins signing in is not throttled."""
    app.config["HOOKLINE_LOGIN_MAX_PER_ADDRESS"] = 3
    for _ in range(5):
        client = app.test_client()
        assert client.post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).status_code == 302
    for i in range(3):
        assert app.test_client().post("/login", data={"email": f"x{i}@example.com", "password": "no"}).status_code == 400
    assert app.test_client().post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).status_code == 429
