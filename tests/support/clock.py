"""A clock tests move instead of sleeping through retry schedules and holds.

``models.utcnow()`` adds the seconds in the file named by HOOKLINE_CLOCK_FILE;
every process a test starts after the ``clock`` fixture (workers copy the
test's environment) reads the same file, so ``clock.advance(1800)`` makes 30
minutes pass for the whole outbox at once.
"""

import os

import pytest

from models import CLOCK_FILE_ENV


class Clock:
    """Seconds added to the outbox's clock, shared through a file."""

    def __init__(self, path):
        self.path = path
        self.offset = 0.0
        self._write()

    def advance(self, seconds: float) -> None:
        """Move every process's clock ``seconds`` forward."""
        self.offset += seconds
        self._write()

    def _write(self) -> None:
        # Written whole, then renamed over: a reader never sees half a number.
        partial = f"{self.path}.partial"
        with open(partial, "w") as file:
            file.write(repr(self.offset))
        os.replace(partial, self.path)


@pytest.fixture
def clock(tmp_path, monkeypatch):
    """A movable clock for this test and every worker it starts (start them after asking for this)."""
    path = tmp_path / "clock"
    moved = Clock(str(path))
    monkeypatch.setenv(CLOCK_FILE_ENV, str(path))
    return moved
