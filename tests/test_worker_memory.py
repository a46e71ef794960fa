"""What a worker process holds: no Alembic unless migrations run (issue 23).

Each check runs in a fresh interpreter: this test process has Flask-Migrate
imported already (other tests call ``flask_migrate.upgrade``).
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(args, tmp_path, database_url=None, **kwargs):
    env = {**os.environ, "HOOKLINE_ENV": "testing", "DATABASE_URL": database_url or f"sqlite:///{tmp_path / 'm.sqlite'}"}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, **kwargs)


def imported_by_a_worker(tmp_path, names: set, database_url=None) -> str:
    """Which of the packages ``names`` an app built as a worker builds it (on SQLite, or ``database_url``) imports, with tasks.worker and publish (printed, sorted)."""
    code = ("import sys; from app import create_app; from tasks import publish_event, publish_events; "
            "import tasks.worker; app = create_app(); "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(names)!r})))")
    out = run([sys.executable, "-c", code], tmp_path, database_url)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_an_app_as_a_worker_builds_it_imports_no_alembic(tmp_path):
    assert imported_by_a_worker(tmp_path, {"alembic", "mako", "pygments", "flask_migrate"}) == "[]"


def test_an_app_on_sqlite_that_publishes_and_drains_imports_no_psycopg(tmp_path):
    assert imported_by_a_worker(tmp_path, {"psycopg"}) == "[]"


def test_a_worker_imports_no_metrics_exporter_and_no_driver_it_does_not_use(tmp_path):
    # /metrics' exporter is the web's, imported on the first scrape.
    assert imported_by_a_worker(tmp_path, {"prometheus_client", "sqlite3"}) == "['sqlite3']"
    # A PostgreSQL worker loads no SQLite (nothing connects: the URL is only parsed).
    assert imported_by_a_worker(tmp_path, {"prometheus_client", "sqlite3"},
                                "postgresql+psycopg://nobody@127.0.0.1:1/none") == "[]"


def test_flask_db_still_migrates_and_reports_the_head(tmp_path):
    flask = str(Path(sys.executable).parent / "flask")
    heads = {p.name.split("_")[0] for p in (ROOT / "migrations" / "versions").glob("*.py")}
    upgrade = run([flask, "--app", "app", "db", "upgrade"], tmp_path)
    assert upgrade.returncode == 0, upgrade.stderr
    assert "Running upgrade" in upgrade.stderr
    current = run([flask, "--app", "app", "db", "-d", "migrations", "current"], tmp_path)
    assert current.returncode == 0, current.stderr
    revision, _, mark = current.stdout.strip().partition(" ")
    assert revision in heads and mark == "(head)"
    listing = run([flask, "--app", "app", "db", "--help"], tmp_path)
    assert "upgrade" in listing.stdout and "downgrade" in listing.stdout
