"""The house's layering: the web process does not load what only a worker needs."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER_ONLY = ("rq", "tasks.drain", "tasks.worker", "tasks.jobs", "tasks.leases")


def test_the_web_app_loads_neither_rq_nor_the_drain_nor_the_worker():
    # A fresh interpreter: this test process has imported everything already.
    code = (
        "import json, sys\n"
        "from app import create_app\n"
        "app = create_app({'SQLALCHEMY_DATABASE_URI': 'sqlite://', 'SECRET_KEY': 'x',"
        " 'REDIS_URL': 'redis://127.0.0.1:1/0'})\n"
        "app.test_client().get('/login')\n"
        f"print(json.dumps([name for name in {WORKER_ONLY!r} if name in sys.modules]))\n"
    )
    env = dict(os.environ, HOOKLINE_ENV="testing")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []
