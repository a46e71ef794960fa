"""Writing the attempt roll-ups (models.rollups): with the attempts, from old rows, and pruning.

Every writer of attempts adds to the roll-ups in its own transaction: the
drain's batch write (tasks.outbox.write) and the Test button
(tasks.testsend). A batch is summed in Python first and goes out as one
upsert statement, usually one row (the current minute), so the drain's
hot path pays one more statement per batch, not one per attempt.
"""

import functools
from collections import defaultdict
from datetime import datetime

from sqlalchemy import delete, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite

from models import db, utcnow
from models.events import CANCELLED, DELIVERED, FAILED, RETRYING, Attempt, Delivery
from models.rollups import LATENCY_COLUMNS, OUTCOME_COLUMNS, bucket_of, minute_of, rollups
from tasks import statements

COLUMNS = OUTCOME_COLUMNS + LATENCY_COLUMNS
_OUTCOME_INDEX = {name: i for i, name in enumerate(OUTCOME_COLUMNS)}
_LATENCY_BASE = len(OUTCOME_COLUMNS)


def tally(entries) -> dict[int, list[int]]:
    """Sum ``(moment, duration_ms or None, outcome)`` entries per minute: {minute: counts in COLUMNS order}.

    ``duration_ms`` is None for a cancellation (nothing was sent, no latency).
    """
    minutes: dict[int, list[int]] = defaultdict(lambda: [0] * len(COLUMNS))
    for moment, duration_ms, outcome in entries:
        counts = minutes[minute_of(moment)]
        counts[_OUTCOME_INDEX[outcome]] += 1
        if duration_ms is not None:
            counts[_LATENCY_BASE + bucket_of(duration_ms)] += 1
    return dict(minutes)


def _rows(tallies: dict[int, list[int]]) -> list[dict]:
    # Sorted by minute: concurrent writers lock the same minute rows in the same order.
    return [{"minute": minute, **dict(zip(COLUMNS, counts))} for minute, counts in sorted(tallies.items())]


@functools.cache
def _upsert_statement(dialect: str):
    """INSERT ... ON CONFLICT (minute) DO UPDATE SET col = col + excluded.col, built once per dialect."""
    make = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = make(rollups)
    return statement.on_conflict_do_update(
        index_elements=[rollups.c.minute],
        set_={name: rollups.c[name] + statement.excluded[name] for name in COLUMNS},
    )


@functools.cache
def _upsert_one_postgresql():
    """PostgreSQL: the same upsert for one minute, its counts bound as one integer array.

    One parameter per column made psycopg parse the statement again on
    every execute (it caches only statements of up to 50 parameters) and
    dump 85 values: the most CPU of any statement a batch runs. The array
    goes as its text form, which PostgreSQL parses (psycopg dumps a list
    item by item in Python). Same rows written.
    """
    table = rollups.name
    names = ", ".join(COLUMNS)
    picked = ", ".join(f"c[{i}]" for i in range(1, len(COLUMNS) + 1))
    added = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in COLUMNS)
    return text(f"INSERT INTO {table} (minute, {names}) SELECT :minute, {picked}"
                f" FROM (SELECT CAST(:counts AS INTEGER[]) AS c) AS v"
                f" ON CONFLICT (minute) DO UPDATE SET {added}")


def add(tallies: dict[int, list[int]]) -> None:
    """Add per-minute counts to the roll-ups in the session's transaction (one statement); the caller commits."""
    if not tallies:
        return
    dialect = db.engine.dialect.name
    # Usually one minute (the current one): a plain execute, not an
    # executemany (psycopg runs one of those as a pipeline, for one row too).
    if len(tallies) == 1 and dialect == "postgresql":
        (minute, counts), = tallies.items()
        array = "{" + ",".join(map(str, counts)) + "}"
        statements.run(db.session, _upsert_one_postgresql(), {"minute": minute, "counts": array})
        return
    rows = _rows(tallies)
    statement = _upsert_statement(dialect)
    if len(rows) == 1:
        statements.run(db.session, statement, rows[0])
    else:
        db.session.execute(statement, rows)


def add_batch(attempts: list[dict], changes: list[dict]) -> None:
    """Add a written batch: each attempt under the state its change set, each cancellation without one."""
    add(batch_tally(attempts, changes))


def batch_tally(attempts: list[dict], changes: list[dict]) -> dict[int, list[int]]:
    """add_batch's per-minute counts, summed without writing (``add`` writes them)."""
    status = {change["delivery_id"]: change.get("status") for change in changes}
    entries = [(a["started_at"], a["duration_ms"], status.get(a["delivery_id"]) or RETRYING) for a in attempts]
    attempted = {a["delivery_id"] for a in attempts}
    now = None
    for change in changes:
        if change.get("status") == CANCELLED and change["delivery_id"] not in attempted:
            now = now or utcnow()
            entries.append((now, None, CANCELLED))
    return tally(entries)


def outcome_of_attempt(ok: bool, number: int, attempt_count: int, delivery_status: str) -> str:
    """The state an old attempt led to, read back from its row and its delivery's current one.

    Exact for logs written by the drain; a redelivered delivery's earlier
    final failure reads as "retrying" (its later attempts exist).
    """
    if ok:
        return DELIVERED
    if delivery_status == FAILED and number == attempt_count:
        return FAILED
    return RETRYING


def rebuild(connection, chunk: int = 5000) -> int:
    """Recompute every roll-up from the attempts and cancellations kept; returns the minutes written.

    For the migration that introduces roll-ups (and for repairs). Reads the
    attempts once, in a stream, and sums them in Python: bucketing a
    duration needs a logarithm, which SQLite may lack. A cancelled
    delivery counts at its last attempt, or its creation when it had none.
    """
    a, d = Attempt.__table__.c, Delivery.__table__.c
    rows = connection.execute(
        select(a.started_at, a.duration_ms, a.ok, a.number, d.attempt_count, d.status)
        .join_from(Attempt.__table__, Delivery.__table__, a.delivery_id == d.id)
        .execution_options(stream_results=True, yield_per=chunk))
    entries = ((started, duration, outcome_of_attempt(ok, number, count, status))
               for started, duration, ok, number, count, status in rows)
    tallies = tally(entries)
    cancelled = connection.execute(
        select(d.last_attempt_at, d.created_at).where(d.status == CANCELLED))
    for minute, counts in tally((last or created, None, CANCELLED) for last, created in cancelled).items():
        into = tallies.setdefault(minute, [0] * len(COLUMNS))
        into[:] = [x + y for x, y in zip(into, counts)]
    connection.execute(delete(rollups))
    ordered = _rows(tallies)
    for start in range(0, len(ordered), chunk):
        connection.execute(insert(rollups), ordered[start:start + chunk])
    return len(ordered)


def prune(cutoff: datetime) -> int:
    """Delete the roll-ups of minutes before ``cutoff`` (the retention's); the caller commits."""
    return db.session.execute(delete(rollups).where(rollups.c.minute < minute_of(cutoff))).rowcount
