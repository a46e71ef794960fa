"""PostgreSQL: a statement run on libpq directly, prepared once on each kept connection.

A publish on PostgreSQL is one statement on the publishing thread's own
connection (tasks.publish_pg). psycopg's cursor spends more of the
publisher's CPU around that statement than the parameters and the libpq
call need: the query's conversion, its prepared-statement bookkeeping and
the generators it waits through. Here the statement is prepared on the
connection once per set of parameter types, and each run is one
``PQexecPrepared`` (which waits for the answer with the GIL released), its
values dumped by psycopg's own adapters, as its cursor would send them.
"""

import functools
import operator
import re

import psycopg
from psycopg import errors, pq
from psycopg.adapt import PyFormat, Transformer

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
_DONE = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)


@functools.lru_cache(maxsize=32)
def _converted(sql: str):
    """``sql`` with psycopg's ``%(name)s`` as ``$n`` (a name used twice is one parameter), and a getter of the values in that order."""
    names = []

    def number(match):
        if match.group(0) == "%%":
            return "%"
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = _PLACEHOLDER.sub(number, sql)
    get = operator.itemgetter(*names) if len(names) > 1 else (lambda values: (values[names[0]],))
    return text, get, len(names)


class Statements:
    """What one connection has prepared (by SQL text and parameter types), and its adapters."""

    __slots__ = ("transformer", "encoding", "names")

    def __init__(self, connection):
        self.transformer = Transformer(connection)
        self.encoding = connection.info.encoding
        self.names = {}


def _check(pgconn, result, encoding: str) -> None:
    """Raise psycopg's error for a result that failed: OperationalError when the connection is gone."""
    if result.status in _DONE:
        return
    if pgconn.status == pq.ConnStatus.BAD:
        raise psycopg.OperationalError(result.get_error_message(encoding) or "the connection to the server was lost")
    raise errors.error_from_result(result, encoding=encoding)


def run(kept, sql: str, values: dict) -> int:
    """Run ``sql`` (psycopg's named placeholders) with ``values`` on ``kept``'s connection; return how many rows it returned.

    ``kept`` is a tasks.thread_connection.Kept; what it has prepared is kept
    on it (``kept.prepared``), so a new connection prepares again. Raises
    psycopg's error, as its cursor would: the server's, or OperationalError
    when the connection is gone (``kept.connection.closed`` is then True).
    """
    text, get, count = _converted(sql)
    statements = kept.prepared
    if statements is None:
        statements = kept.prepared = Statements(kept.connection)
    tx = statements.transformer
    params = tx.dump_sequence(get(values), (PyFormat.AUTO,) * count)
    pgconn = kept.connection.pgconn
    # psycopg picks an integer's type by its value (int2, int4, int8), and
    # None goes untyped: a statement is prepared for each set of types met.
    key = (text, tx.types)
    name = statements.names.get(key)
    if name is None:
        name = f"hookline_{len(statements.names)}".encode()
        _check(pgconn, pgconn.prepare(name, text.encode(statements.encoding), tx.types), statements.encoding)
        statements.names[key] = name
    result = pgconn.exec_prepared(name, params, tx.formats)
    _check(pgconn, result, statements.encoding)
    return result.ntuples
