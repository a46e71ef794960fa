"""Run a Core statement's executemany on the database driver's own cursor.

A drain writes a batch's attempts and state changes as executemany. SQLAlchemy
turns each row's dict into parameters itself (defaults, type processing,
result set-up) and that was most of a drain's CPU for a batch. Here the
statement is compiled once per dialect and set of keys, as SQLAlchemy would
compile it, and each value goes through the same bind processor SQLAlchemy
would use, so the SQL and the stored values are the same; only the
per-row bookkeeping is gone. Statements whose execution needs Python-side
defaults filled in are left to SQLAlchemy.
"""

import functools
import operator
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError


@dataclass(frozen=True)
class Plan:
    """A statement compiled for one dialect, and how a row of values becomes its driver parameters."""

    sql: str
    #: (parameter name, bind processor or None), in the statement's order.
    converters: tuple
    positional: bool

    def __post_init__(self):
        # Every publish builds its parameters here: one C-level itemgetter
        # for the values, then only the few that have a processor converted.
        names = tuple(name for name, _ in self.converters)
        if len(names) == 1:
            get = lambda row, name=names[0]: (row[name],)  # noqa: E731 (itemgetter of one is no tuple)
        else:
            get = operator.itemgetter(*names) if names else (lambda row: ())
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_get", get)
        object.__setattr__(self, "_convert", tuple((i, convert) for i, (_, convert) in enumerate(self.converters)
                                                    if convert))

    def parameters(self, row: dict):
        """``row`` as the driver takes it (a list, or a dict if named), each value stored as SQLAlchemy would.

        A list, so that a caller can fill in a value only known later (the
        delivery's event_seq); ``Connection.exec_driver_sql`` wants a tuple.
        """
        values = list(self._get(row))
        for i, convert in self._convert:
            values[i] = convert(values[i])
        return values if self.positional else dict(zip(self._names, values))


@functools.cache
def plan(statement, dialect, keys: tuple[str, ...] | None = None, many: bool = False) -> Plan | None:
    """``statement`` compiled once for ``dialect`` (its SET/VALUES columns: ``keys``), or None if SQLAlchemy must run it.

    None when running it needs SQLAlchemy: Python-side defaults computed per
    row, or (for an executemany, ``many``) rows read back.
    """
    compiled = statement.compile(dialect=dialect, column_keys=None if keys is None else list(keys))
    if compiled.insert_prefetch or compiled.update_prefetch or compiled.postfetch or (many and compiled.returning):
        return None
    names = compiled.positiontup if compiled.positional else list(compiled.binds)
    if keys is not None and any(name not in keys for name in names):
        return None
    converters = tuple((name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
                       for name in names)
    return Plan(compiled.string, converters, compiled.positional)


def executemany(session, statement, rows: list[dict]) -> int:
    """Run ``statement`` once per dict of ``rows`` (all with the same keys) in the session's transaction.

    Returns how many rows it changed (both drivers count an executemany's
    rows; psycopg sums its statements'): the drain's state UPDATE is its own fence.
    """
    if not rows:
        return 0
    connection = session.connection()
    compiled = plan(statement, connection.dialect, tuple(sorted(rows[0])), many=True)
    if compiled is None:
        return session.execute(statement, rows).rowcount
    parameters = [compiled.parameters(row) for row in rows]
    dbapi = connection.dialect.dbapi
    cursor = connection.connection.driver_connection.cursor()
    try:
        cursor.executemany(compiled.sql, parameters)
        return cursor.rowcount
    except dbapi.Error as exc:  # the SQLAlchemy error the rest of the app would raise
        raise DBAPIError.instance(compiled.sql, parameters, exc, dbapi.Error) from exc
    finally:
        cursor.close()
