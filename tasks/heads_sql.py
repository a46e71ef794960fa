"""SQL fragments of tasks.heads' statements: a call's holding rows, due rows, rows picked by id.

Each is written for one dialect where their planners differ (see each).
"""

from models.events import OPEN_SQL

HOLDING = "({0}.holds_call_until IS NULL OR {0}.holds_call_until > :now)"
DUE = "{0}.due_at <= :now AND ({0}.lease_until IS NULL OR {0}.lease_until < :now)"


def indexed(dialect: str, index: str) -> str:
    """SQLite is told which index to read: on a table never ANALYZEd its planner reads the status index."""
    return f" INDEXED BY {index}" if dialect == "sqlite" else ""


def id_among(dialect: str, column: str, ids: str) -> str:
    """``column`` is one of the ids the SELECT ``ids`` returns, looked up by primary key.

    PostgreSQL gets ``= ANY(ARRAY(...))``: written as ``IN (...)``, once the
    table had statistics its planner chose a hash join over a scan of every
    delivery. SQLite already probes the rowid for each id of an ``IN``.
    """
    return f"{column} = ANY(ARRAY({ids}))" if dialect == "postgresql" else f"{column} IN ({ids})"


def open_by_id(dialect: str, condition: str = OPEN_SQL) -> str:
    """``condition`` (open rows, or open rows of a flag) for rows already picked by id.

    On PostgreSQL written so that it matches no partial index's predicate:
    statistics taken while nothing was open make those indexes look empty,
    and the planner then scanned a whole backlog through one of them to find
    the few ids it was given, instead of looking each up by primary key.
    """
    return condition.replace("status IN", "status || '' IN", 1) if dialect == "postgresql" else condition


def held_back(dialect: str, row: str, extra: str = "") -> str:
    """EXISTS: an older open row of ``row``'s call holds it (one seek on the open rows' index).

    On PostgreSQL ``OFFSET 0`` keeps it a seek per row: the planner may
    otherwise turn it into a join over every open row, which it does when
    its statistics were taken with nothing open and a backlog has built
    since (one claim then read all the open rows once per candidate).
    """
    keep_a_seek = " OFFSET 0" if dialect == "postgresql" else ""
    return (f"EXISTS (SELECT 1 FROM deliveries AS o{indexed(dialect, 'ix_deliveries_open_call')}"
            f" WHERE {OPEN_SQL} AND o.call_id = {row}.call_id AND o.id < {row}.id"
            f" AND {HOLDING.format('o')}{extra}{keep_a_seek})")


def is_head(dialect: str, row: str) -> str:
    """``row`` may be sent now: no call, let go, or nothing older of its call holds it."""
    # "IS NOT NULL AND": the claim negates this, and NOT of a NULL comparison is no truer.
    return (f"({row}.call_id IS NULL OR ({row}.holds_call_until IS NOT NULL AND {row}.holds_call_until <= :now)"
            f" OR NOT {held_back(dialect, row)})")
