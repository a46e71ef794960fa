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
    rows = [list(row) for row in result]
    converters = _result_converters(dialect, result_types)
    for row in rows:
        for position, process in converters:
            row[position] = process(row[position])
    return rows
