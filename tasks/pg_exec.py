"""PostgreSQL: a statement run on libpq directly, prepared once on each kept connection.

A publish on PostgreSQL is one statement on the publishing thread's own
connection (tasks.publish_pg). psycopg's cursor spends more of the
publisher's CPU around that statement than the parameters and the libpq
call need: the query's conversion, its prepared-statement bookkeeping and
the generators it waits through. Here the statement is prepared on the
connection once per set of parameter types, and each run is one
``PQexecPrepared`` (which waits for the answer with the GIL released), its
values dumped by psycopg's own adapters, as its cursor would send them.
Imported by tasks.publish_pg when it sets a connection up, so that a process
on SQLite never loads psycopg (a worker's memory).
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
    """One connection's statements: what it has prepared (by SQL text and parameter types), and its adapters."""

    __slots__ = ("connection", "transformer", "encoding", "names")

    def __init__(self, connection):
        self.connection = connection
        self.transformer = Transformer(connection)
        self.encoding = connection.info.encoding
        self.names = {}

    def run(self, sql: str, values: dict) -> int:
        """Run ``sql`` (psycopg's named placeholders) with ``values``; return its command's row count.

        The count the server's command tag gives: the rows an INSERT wrote
        (with RETURNING or without), or those a SELECT returned.

        Raises psycopg's error, as its cursor would: the server's, or
        OperationalError when the connection is gone (``connection.closed``
        is then True).
        """
        text, get, count = _converted(sql)
        tx = self.transformer
        params = tx.dump_sequence(get(values), (PyFormat.AUTO,) * count)
        pgconn = self.connection.pgconn
        # psycopg picks an integer's type by its value (int2, int4, int8), and
        # None goes untyped: a statement is prepared for each set of types met.
        key = (text, tx.types)
        name = self.names.get(key)
        if name is None:
            name = f"hookline_{len(self.names)}".encode()
            _check(pgconn, pgconn.prepare(name, text.encode(self.encoding), tx.types), self.encoding)
            self.names[key] = name
        result = pgconn.exec_prepared(name, params, tx.formats)
        _check(pgconn, result, self.encoding)
        return result.command_tuples or 0


def _check(pgconn, result, encoding: str) -> None:
    """Raise psycopg's error for a result that failed: OperationalError when the connection is gone."""
    if result.status in _DONE:
        return
    if pgconn.status == pq.ConnStatus.BAD:
        raise psycopg.OperationalError(result.get_error_message(encoding) or "the connection to the server was lost")
    raise errors.error_from_result(result, encoding=encoding)
