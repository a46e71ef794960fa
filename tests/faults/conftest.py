"""Fault-suite fixtures: a Redis of the test's own that can be killed and restarted."""

import time

import pytest

from tests.conftest import free_port, start_redis_server


def pytest_collection_modifyitems(items):
    for item in items:
        if "/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.faults)


class OwnRedis:
    """A memory-only redis-server on a fixed port, restartable (losing everything)."""

    def __init__(self, workdir):
        self.port = free_port()
        self.workdir = workdir
        self.proc = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = start_redis_server(self.port, self.workdir)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(5)

    def restart(self, down_for: float = 0.5) -> None:
        """SIGKILL, stay down a moment, come back empty (no persistence)."""
        self.kill()
        time.sleep(down_for)
        self.start()


@pytest.fixture
def own_redis(tmp_path):
    r = OwnRedis(tmp_path)
    yield r
    if r.proc.poll() is None:
        r.kill()


@pytest.fixture
def app_config(app_config, own_redis):
    app_config["REDIS_URL"] = own_redis.url
    return app_config


def assert_all_arrived(receiver, published_ids):
    """Every published id reached the receiver at least once; duplicates carry the same id."""
    seen = [r.headers["webhook-id"] for r in receiver.requests]
    missing = set(published_ids) - set(seen)
    assert not missing, f"{len(missing)} of {len(published_ids)} events never arrived"
    assert set(seen) <= set(published_ids), "the receiver got ids nobody published"
    return {"published": len(published_ids), "received": len(set(seen)),
            "duplicates": len(seen) - len(set(seen))}
