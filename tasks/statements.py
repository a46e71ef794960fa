"""Run one of the drain's per-batch statements as compiled driver SQL.

A drain runs a few statements per batch (the claim, promote, the roll-up
upsert). ``Session.execute`` compiles (or finds in its cache) and binds
each of them every time, which cost ~3× what SQLite took to run the
roll-up upsert. Here each statement is compiled once per dialect
(tasks.driver.plan, or the same steps for a text statement), its values
bound by the bind processors SQLAlchemy would use, returned values
converted by its result processors, and it runs with
``Connection.exec_driver_sql`` in the session's transaction: the same SQL
and values, and the engine's events and errors as for any statement.
"""

import contextlib
import functools

from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import TextualSelect

from tasks import driver


@functools.cache
def _text_plan(statement, dialect) -> driver.Plan:
    """A text statement compiled once for ``dialect``, as tasks.driver.plan compiles a Core one."""
    compiled = statement.compile(dialect=dialect)
    names = compiled.positiontup if compiled.positional else list(compiled.binds)
    converters = tuple((name, driver.bind_processor(compiled.binds[name].type, dialect)) for name in names)
    return driver.Plan(compiled.string, converters, compiled.positional)


@functools.cache
def _result_converters(dialect, types: tuple) -> tuple:
    """(position, result processor) for each of ``types`` whose driver value SQLAlchemy would convert."""
    found = []
    for position, type_ in enumerate(types):
        process = type_().dialect_impl(dialect).result_processor(dialect, None)
        if process is not None:
            found.append((position, process))
    return tuple(found)


def run(session, statement, values: dict, result_types: tuple = ()) -> list:
    """Execute ``statement`` with ``values`` in the session's transaction; return its rows (lists), if any.

    ``result_types`` (SQLAlchemy type classes, one per returned column, in
    order) convert the rows as SQLAlchemy would. A statement that needs
    SQLAlchemy's own execution (Python-side defaults) goes through it.
    """
    connection = session.connection()
    dialect = connection.dialect
    if isinstance(statement, (TextClause, TextualSelect)):
        plan = _text_plan(statement, dialect)
    else:
        plan = driver.plan(statement, dialect, tuple(sorted(values)))
    if plan is None:
        result = session.execute(statement, values)
        return [list(row) for row in result] if result.returns_rows else []
    parameters = plan.parameters(values)
    # exec_driver_sql reads a list as many rows: one row goes as a tuple.
    result = connection.exec_driver_sql(plan.sql, tuple(parameters) if plan.positional else parameters)
    if not result.returns_rows:
        return []
    rows = [list(row) for row in result.fetchall()]  # one fetchall: iterating fetches row by row
    converters = _result_converters(dialect, result_types)
    for row in rows:
        for position, process in converters:
            row[position] = process(row[position])
    return rows


@contextlib.contextmanager
def by_key(session):
    """On PostgreSQL, plan the statements run inside this block with no sequential scan of a table.

    The delivery path's statements (the claim, the batch's fenced writes,
    promote) read and write rows picked by id or by an open-rows index, a
    few dozen per batch. PostgreSQL's planner picks a scan of the whole
    table instead when the table looks small, and a plan that psycopg has
    prepared keeps that choice for the connection's life: a worker that
    starts on a young log (as in the benchmark, or on a fresh install with
    autovacuum off) then read every delivery on each claim and each write
    as the log grew. ``SET LOCAL`` lasts until the block ends (or the
    transaction does, if it fails), so the other statements of the same
    transaction (auto-disable's read of the log) are planned as before.
    Nothing on SQLite.
    """
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        yield
        return
    driver_connection = connection.connection.driver_connection
    driver_connection.execute("SET LOCAL enable_seqscan = off")
    yield
    driver_connection.execute("SET LOCAL enable_seqscan TO DEFAULT")
