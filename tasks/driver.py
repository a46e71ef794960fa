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
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import JSON, Boolean
from sqlalchemy.dialects.sqlite import DATETIME as SQLITE_DATETIME
from sqlalchemy.exc import DBAPIError

from tasks.jsontext import WithJSON, json_text, dumps


def bind_processor(type_, dialect):
    """The function SQLAlchemy would store a value of ``type_`` through (None: as it is), or one writing the same.

    SQLite's DATETIME formats each value through a dict of its fields;
    ``isoformat`` writes the same text for a naive datetime ("YYYY-MM-DD
    HH:MM:SS.ffffff", microseconds always), several times faster, and a
    drain binds several datetimes per attempt. Anything else (an aware
    datetime, a date, None) goes through SQLAlchemy's own. SQLite's JSON
    (when the engine has no serializer of its own) is SQLAlchemy's
    processor around :func:`json_text` (which stores the text a
    :class:`WithJSON` carries), a dict written in one call
    (:func:`_same_json`): two per attempt. A Boolean is a dictionary lookup
    (:func:`_same_bool`).
    """
    impl = type_.dialect_impl(dialect)
    process = impl.bind_processor(dialect)
    if process is not None and isinstance(impl, Boolean):
        return _same_bool(process, dialect.supports_native_boolean)
    if (process is not None and isinstance(impl, JSON) and dialect.name == "sqlite"
            and dialect._json_serializer is None and hasattr(impl, "_make_bind_processor")):
        string_process = impl._str_impl.bind_processor(dialect)
        process = impl._make_bind_processor(string_process, json_text)
        return process if string_process is not None else _same_json(process)
    if (process is None or not isinstance(impl, SQLITE_DATETIME)
            or impl._storage_format != SQLITE_DATETIME._storage_format):
        return process

    def same_text(value):
        if value is None:  # SQLAlchemy's processor stores None as it is, too
            return None
        if type(value) is datetime and value.tzinfo is None:
            text = _datetime_texts.get(value)
            if text is None:
                if len(_datetime_texts) >= 1024:
                    _datetime_texts.clear()
                text = _datetime_texts[value] = value.isoformat(" ", "microseconds")
            return text
        return process(value)

    return same_text


def _same_json(process):
    """SQLite's JSON processor ``process`` (around :func:`json_text`, storing its text as it is), a dict's text in one call.

    A dict is stored as :func:`json_text` writes it, as ``process`` would store
    it, without SQLAlchemy's checks around it; anything else goes through
    ``process`` (JSON.NULL, SQL NULL, lists...).
    """
    def same_json(value):
        kind = type(value)
        if kind is WithJSON:
            return value.json
        if kind is dict:
            return dumps(value)
        return process(value)

    return same_json


def _same_bool(process, native: bool):
    """Boolean's bind processor ``process``, by a dictionary lookup for True, False and None.

    SQLAlchemy's checks the value and converts it in two Python calls; a
    publish binds two booleans and a drain one per delivery. The same value
    for those three (an int where the database has no boolean type), and
    SQLAlchemy's own for anything else (its error for a value that is not a
    boolean).
    """
    stored = {True: True, False: False} if native else {True: 1, False: 0}
    stored[None] = None

    def same_value(value):
        if type(value) is bool or value is None:
            return stored[value]
        return process(value)

    return same_value


#: Naive datetime -> its SQLite text, shared by every DATETIME column: a drain binds each
#: attempt's start twice (the attempt's and its delivery's) and one "delivered at" for the
#: whole batch, and isoformat costs more than a dictionary lookup. Emptied when full.
_datetime_texts: dict = {}


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
    converters = tuple((name, bind_processor(compiled.binds[name].type, dialect)) for name in names)
    return Plan(compiled.string, converters, compiled.positional)


_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@functools.lru_cache(maxsize=256)
def _postgresql_rows(compiled: Plan, types: tuple, count: int) -> str | None:
    """``compiled`` (one row, psycopg's named placeholders) as one statement for ``count`` rows, or None.

    An INSERT ... VALUES gets ``count`` VALUES rows; an UPDATE gets its rows
    as ``FROM (VALUES ...) AS v`` and reads every value from ``v``. Every
    placeholder is ``$n`` with its type cast (``types``, in the plan's
    order), so a column of NULLs keeps its type.
    """
    names = [name for name, _ in compiled.converters]
    width = len(names)

    def row(i: int) -> str:
        return "(" + ", ".join(f"${i * width + k + 1}::{types[k]}" for k in range(width)) + ")"

    rows = ", ".join(row(i) for i in range(count))
    sql = compiled.sql
    if "%%" in sql:  # a literal percent sign, escaped for psycopg's placeholders: a raw cursor would keep both
        return None
    if sql.startswith("INSERT ") and sql.endswith(")") and " VALUES (" in sql and "RETURNING" not in sql:
        return sql[:sql.index(" VALUES (")] + " VALUES " + rows
    if sql.startswith("UPDATE ") and sql.count(" WHERE ") == 1 and " FROM " not in sql:
        head, where = _PLACEHOLDER.sub(r"v.\1", sql).split(" WHERE ")
        return f"{head} FROM (VALUES {rows}) AS v({', '.join(names)}) WHERE {where}"
    return None


@functools.cache
def _postgresql_form(statement, dialect, keys: tuple) -> tuple[Plan, tuple]:
    """The multi-row form's plan and each parameter's type as SQL, in the plan's order.

    Types without a length: a cast to ``VARCHAR(16)`` would cut a longer
    value short; to ``VARCHAR`` then into the column, a value too long is
    refused, as it was before. Since every parameter is cast to its column's
    type, a JSON value goes as the text json.dumps writes (:data:`dumps`, its
    encoder built once) instead of psycopg's Json wrapper, which calls
    json.dumps (building an encoder) and looks its dumper up for each value:
    two JSON columns per attempt. The same text is stored (``json`` keeps it
    as written). Left as it is when the engine has a serializer of its own.
    """
    compiled = plan(statement, dialect, keys, many=True)
    binds = statement.compile(dialect=dialect, column_keys=list(keys)).binds
    converters, types = [], []
    for name, convert in compiled.converters:
        type_ = binds[name].type
        impl = type_.dialect_impl(dialect)
        if (convert is not None and isinstance(impl, JSON) and dialect._json_serializer is None
                and hasattr(impl, "_make_bind_processor")):
            convert = impl._make_bind_processor(None, json_text)
        converters.append((name, convert))
        types.append(re.sub(r"\(\d+\)", "", type_.compile(dialect=dialect)))
    return Plan(compiled.sql, tuple(converters), compiled.positional), tuple(types)


#: Rows per statement of the PostgreSQL form (a statement takes at most 65,535 parameters).
_ROWS_PER_STATEMENT = 500


def _run_postgresql(connection, statement, rows: list[dict]) -> int | None:
    """PostgreSQL: ``rows`` as one statement (see _postgresql_rows); None if the statement has no such form.

    psycopg runs an executemany as a pipeline of one statement per row, each
    row's parameters dumped, sent and its result read in Python: several
    times the CPU of one statement of many rows. A raw cursor: ``$n``
    placeholders, parsed by nobody but the server.
    """
    import psycopg

    compiled, types = _postgresql_form(statement, connection.dialect, tuple(sorted(rows[0])))
    if _postgresql_rows(compiled, types, 1) is None:
        return None
    written = 0
    cursor = psycopg.RawCursor(connection.connection.driver_connection)
    try:
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start:start + _ROWS_PER_STATEMENT]
            sql = _postgresql_rows(compiled, types, len(chunk))
            parameters = [value for row in chunk for value in compiled.parameters(row).values()]
            try:
                cursor.execute(sql, parameters)
            except psycopg.Error as exc:  # the SQLAlchemy error the rest of the app would raise
                raise DBAPIError.instance(sql, parameters, exc, psycopg.Error) from exc
            written += cursor.rowcount
    finally:
        cursor.close()
    return written


def parameters_for(dialect, statement, rows: list[dict]) -> list | None:
    """``rows`` as the driver's executemany takes them, built now (None: executemany builds its own).

    For a writer that holds a lock while it runs the statement (a drain on
    SQLite holds the one write lock from BEGIN IMMEDIATE to its commit): it
    converts the rows first, then begins. None for what executemany does
    otherwise (PostgreSQL's one statement of many rows, SQLAlchemy's execute).
    """
    if not rows:
        return None
    compiled = plan(statement, dialect, tuple(sorted(rows[0])), many=True)
    if compiled is None or (dialect.driver == "psycopg" and not compiled.positional):
        return None
    return [compiled.parameters(row) for row in rows]


def executemany(session, statement, rows: list[dict], parameters: list | None = None) -> int:
    """Run ``statement`` once per dict of ``rows`` (all with the same keys) in the session's transaction.

    Returns how many rows it changed (both drivers count an executemany's
    rows; psycopg sums its statements'): the drain's state UPDATE is its own fence.
    On PostgreSQL an INSERT's or a by-key UPDATE's rows go as one statement
    (see _run_postgresql): the same rows written, the same count.
    ``parameters``: the rows as parameters_for built them earlier, if it did.
    """
    if not rows:
        return 0
    connection = session.connection()
    compiled = plan(statement, connection.dialect, tuple(sorted(rows[0])), many=True)
    if compiled is None:
        return session.execute(statement, rows).rowcount
    if connection.dialect.driver == "psycopg" and not compiled.positional:
        written = _run_postgresql(connection, statement, rows)
        if written is not None:
            return written
    if parameters is None:
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
