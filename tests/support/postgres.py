"""A throwaway PostgreSQL cluster of a test's own: restartable, and alone on its server.

initdb's a cluster in a temporary directory, on a free port (binaries from
``pg_config --bindir``), so a test never touches a shared server: the fault
suite restarts it, and the commit test counts the server's WAL flushes,
which a shared server's other clients would add to. initdb and postgres
refuse to run as root: as root, they run as the ``postgres`` OS user
(``runuser``), in a directory chowned to it.
"""

import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from tests.conftest import free_port


def _bindir() -> str | None:
    """The PostgreSQL server binaries' directory, or None."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            return subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                  check=True, timeout=10).stdout.strip()
        except (subprocess.SubprocessError, OSError):
            return None
    return None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1:``port``, restartable."""

    def __init__(self, bindir: str, fsync: bool = False):
        self.bindir = bindir
        self.fsync = fsync  # off unless a test counts the flushes: it only costs time
        self.port = free_port()
        # Not pytest's tmp_path: its parents are root-only, and postgres must reach it.
        self.root = tempfile.mkdtemp(prefix="hookline-pg-", dir="/tmp")
        self.data = os.path.join(self.root, "data")
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        command = [os.path.join(self.bindir, program), *args]
        if self.user is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode:
            raise RuntimeError(f"{program} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=50")
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.root, "log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: what a service restart does; ``immediate``: the server process crashes."""
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def close(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass  # already down
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def private_postgres(request):
    """A private cluster for the module's tests; skipped where the server binaries are missing.

    A module that sets ``PRIVATE_POSTGRES_FSYNC = True`` gets one that flushes to disk.
    """
    bindir = _bindir()
    missing = [p for p in ("initdb", "pg_ctl", "postgres")
               if not bindir or not os.access(os.path.join(bindir, p), os.X_OK)]
    if missing:
        pytest.skip(f"PostgreSQL server binaries not found ({', '.join(missing)}; pg_config --bindir: {bindir})")
    if os.geteuid() == 0 and (not shutil.which("runuser") or not _has_user("postgres")):
        pytest.skip("running as root needs runuser and a 'postgres' OS user (initdb refuses root)")
    cluster = PrivatePostgres(bindir, fsync=getattr(request.module, "PRIVATE_POSTGRES_FSYNC", False))
    yield cluster
    cluster.close()


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
