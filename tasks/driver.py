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
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError


@dataclass(frozen=True)
class _Plan:
    sql: str
    #: (parameter name, bind processor or None), in the statement's order.
    converters: tuple
    positional: bool


@functools.cache
def _plan(statement, dialect, keys: tuple[str, ...]) -> _Plan | None:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    if compiled.insert_prefetch or compiled.update_prefetch or compiled.postfetch or compiled.returning:
        return None  # SQLAlchemy must compute defaults per row, or read rows back
    names = compiled.positiontup if compiled.positional else list(compiled.binds)
    if any(name not in keys for name in names):
        return None
    converters = tuple((name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
                       for name in names)
    return _Plan(compiled.string, converters, compiled.positional)


def executemany(session, statement, rows: list[dict]) -> None:
    """Run ``statement`` once per dict of ``rows`` (all with the same keys) in the session's transaction."""
    if not rows:
        return
    connection = session.connection()
    plan = _plan(statement, connection.dialect, tuple(sorted(rows[0])))
    if plan is None:
        session.execute(statement, rows)
        return
    if plan.positional:
        parameters = [tuple(convert(row[name]) if convert else row[name] for name, convert in plan.converters)
                      for row in rows]
    else:
        parameters = [{name: convert(row[name]) if convert else row[name] for name, convert in plan.converters}
                      for row in rows]
    dbapi = connection.dialect.dbapi
    cursor = connection.connection.driver_connection.cursor()
    try:
        cursor.executemany(plan.sql, parameters)
    except dbapi.Error as exc:  # the SQLAlchemy error the rest of the app would raise
        raise DBAPIError.instance(plan.sql, parameters, exc, dbapi.Error) from exc
    finally:
        cursor.close()
