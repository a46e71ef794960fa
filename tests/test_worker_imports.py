"""A worker loads only what delivering needs: what it imports stays in its memory for good."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_PROBE = """
import json, sys
from app import create_app
create_app()
import tasks.worker
print(json.dumps(sorted(m for m in ("prometheus_client", "sqlite3") if m in sys.modules)))
"""


def _loaded_by_a_worker(database_url: str) -> list[str]:
    env = {**os.environ, "HOOKLINE_ENV": "testing", "DATABASE_URL": database_url, "SECRET_KEY": "probe"}
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("url, expected", [
    # /metrics' exporter is the web's: imported on the first scrape.
    ("sqlite:///{tmp}/hookline.db", ["sqlite3"]),
    # No SQLite anywhere in a PostgreSQL worker (nothing connects: the URL is only parsed).
    ("postgresql+psycopg://nobody@127.0.0.1:1/none", []),
])
def test_a_worker_app_does_not_load_the_metrics_exporter_or_an_unused_driver(tmp_path, url, expected):
    assert _loaded_by_a_worker(url.format(tmp=tmp_path)) == expected
