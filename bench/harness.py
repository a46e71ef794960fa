"""What every bench line shares: the Context, the bench's app and workers, the load, and the checks.

The scenarios (bench/scenarios.py, bench/paced.py, bench/scaling.py) and
line 8's child (bench/baseline_child.py) build on these: one setup of the
app and its integration, one generator of call events, and one way to
check what the receiver got (every event once, signatures valid with the
public ``standardwebhooks`` package, each call's events in order).
"""

import base64
import os
import random
import statistics
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from standardwebhooks import Webhook, WebhookVerificationError

from bench.services import Database, Receiver, RedisServer, Workers


@dataclass
class Context:
    """What every scenario shares: one receiver, one Redis, one database, one app."""

    app: object
    redis: RedisServer
    receiver: Receiver
    database: Database
    worker_env: dict
    secret: str
    logdir: object  # where the children's output goes
    calls: int = 50
    call_base: int = 100_000  # call ids already used; each scenario takes fresh ones

    @property
    def prefix(self) -> str:
        """Receiver paths start with the database's kind, so two databases' runs never mix."""
        return f"/{self.database.kind}" if self.database else ""

    def next_calls(self, n: int) -> int:
        first = self.call_base
        self.call_base += n
        return first


def summary_ms(seconds: list[float]) -> dict:
    """Median, p95, p99 and max of durations given in seconds, in milliseconds."""
    from tasks.stats import percentile  # the log page's rule: nearest rank

    ms = sorted(s * 1000 for s in seconds)
    return {"n": len(ms), "median_ms": statistics.median(ms), "p95_ms": percentile(ms, 95),
            "p99_ms": percentile(ms, 99), "max_ms": max(ms)}


# -- load ----------------------------------------------------------------------


def call_events(m: int, calls: int, first_call_id: int) -> list[tuple[str, dict]]:
    """``m`` events of ``calls`` simulated calls, interleaved as concurrent calls are.

    Each call is initiated, ringing, answered, transcript turns, ended (the
    same generator as ``flask simulate-call``); the round-robin interleave is
    what an engine handling many calls at once would publish.
    """
    from cli.devtools import call_lifecycle

    random.seed(first_call_id)  # the same run publishes the same bytes
    per_call = max(5, -(-m // calls))
    lifecycles = [call_lifecycle(first_call_id + i, "outbound", per_call - 4) for i in range(calls)]
    interleaved = [call[i] for i in range(per_call) for call in lifecycles if i < len(call)]
    return interleaved[:m]


#: The settings every bench app and worker runs with (the workers get them as env).
BENCH_CONFIG = {"SECRET_KEY": "bench-secret-key", "HOOKLINE_ALLOWED_NETWORKS": "127.0.0.0/8"}


def bench_app(database_url: str, redis_url: str, receiver_url: str):
    """An app on ``database_url`` with its tables and the integration on for every event type; (app, secret).

    Imports the app where it is called: bench/baseline_child.py calls this
    after putting another tree first on sys.path.
    """
    from app import create_app
    from events import EVENT_TYPES
    from models import db
    from models.settings import get_settings
    from tasks.signing import generate_secret

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": redis_url, **BENCH_CONFIG})
    with app.app_context():
        db.create_all()
        settings = get_settings()
        settings.enabled, settings.events = True, list(EVENT_TYPES)
        settings.url = receiver_url + "/unused"
        settings.headers = [["X-Api-Key", "sk_bench_0123456789"]]
        settings.secret = generate_secret()
        db.session.commit()
        return app, settings.secret


def make_context(db: Database, redis: RedisServer, receiver: Receiver, workdir: Path, calls: int):
    """The app the bench publishes with, on ``db``, and the env its workers get."""
    app, secret = bench_app(db.url, redis.url, receiver.base_url)
    env = {**os.environ, "HOOKLINE_ENV": "testing", "FLASK_APP": "app", **BENCH_CONFIG,
           "DATABASE_URL": db.url, "REDIS_URL": redis.url}
    return Context(app=app, redis=redis, receiver=receiver, database=db, worker_env=env,
                   secret=secret, logdir=workdir / "logs", calls=calls)


def publisher_backend_pid() -> int:
    """PostgreSQL: the server process of this thread's publishing connection (open after its first publish)."""
    from tasks import publish_pg

    return publish_pg._connections.current().connection.info.backend_pid


def close_publisher_connection() -> None:
    """Close this thread's publishing connection, so that its database can be dropped."""
    from tasks import publish_pg

    publish_pg._connections.forget()


def aim(app, url: str) -> None:
    """Send to ``url`` from now on (workers read the settings at send time)."""
    from models import db
    from models.settings import get_settings

    with app.app_context():
        get_settings().url = url
        db.session.commit()


def point_integration(ctx: Context, path: str) -> None:
    """Aim the integration at ``path`` on the receiver."""
    aim(ctx.app, ctx.receiver.base_url + path)


def start_workers(ctx: Context, k: int) -> Workers:
    """``k`` flask workers, warmed up (imports, database and HTTP connections) by a few events."""
    from bench.services import start_hookline_workers
    from tasks import publish_event

    workers = start_hookline_workers(k, ctx.worker_env, ctx.redis.client,
                                     ctx.app.config["HOOKLINE_QUEUE"], ctx.logdir)
    first = ctx.next_calls(k)
    path = f"{ctx.prefix}/warmup-k{k}-{first}"  # its own path each time: rounds start workers again
    point_integration(ctx, path)
    warmup = call_events(10 * k, k, first)
    with ctx.app.app_context():
        for event_type, payload in warmup:
            publish_event(event_type, payload)
    ctx.receiver.wait_for(path, len(warmup), timeout=60)
    return workers


def drain_jobs(ctx: Context) -> int:
    """Jobs the Hookline workers have finished so far (RQ keeps the count per worker)."""
    from rq import Queue, Worker

    from tasks.jobs import SERIALIZER

    queue = Queue(ctx.app.config["HOOKLINE_QUEUE"], connection=ctx.redis.client, serializer=SERIALIZER)
    return sum(w.successful_job_count for w in Worker.all(queue=queue))


def last_delivery_id() -> int:
    """The newest delivery's id (0 in an empty log): a line counts the deliveries after it."""
    from models import db
    from models.events import Delivery

    return db.session.scalar(select(func.max(Delivery.id))) or 0


def recorded(after_id: int) -> tuple[int, int]:
    """(deliveries delivered, attempts recorded) for deliveries with id > after_id."""
    from models import db
    from models.events import DELIVERED, Attempt, Delivery

    delivered = db.session.scalar(
        select(func.count()).select_from(Delivery)
        .where(Delivery.id > after_id, Delivery.status == DELIVERED))
    attempts = db.session.scalar(
        select(func.count()).select_from(Attempt).where(Attempt.delivery_id > after_id))
    db.session.rollback()  # end the read transaction so the next poll sees new commits
    return delivered, attempts


def verify_samples(ctx: Context, path: str) -> tuple[int, int]:
    """(verified, sampled): the receiver's kept requests checked with standardwebhooks."""
    samples = ctx.receiver.samples(path)
    ok = 0
    webhook = Webhook(ctx.secret)
    for s in samples:
        try:
            webhook.verify(base64.b64decode(s["body"]), s["headers"])
            ok += 1
        except WebhookVerificationError:
            pass
    return ok, len(samples)


def out_of_order(ids: list[str], events, arrivals) -> int:
    """How many arrivals came before an earlier-published event of the same call."""
    from events import call_id_of

    position = {event_id: i for i, event_id in enumerate(ids)}
    call_of = {event_id: call_id_of(t, p) for event_id, (t, p) in zip(ids, events)}
    last_seen: dict[str, int] = {}
    late = 0
    for _, event_id in sorted(arrivals):
        call, pos = call_of.get(event_id), position.get(event_id, -1)
        if call in last_seen and pos < last_seen[call]:
            late += 1
        last_seen[call] = max(pos, last_seen.get(call, -1))
    return late
