"""Reading and writing the store: events in the event-log schema, arrangements, messages, ids, policy state.

Every function takes an open :class:`sqlalchemy.Connection`; the caller owns the transaction, so that a
request's effects (events, messages, its idempotency key, the learner's state) commit together or not at all.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import operator
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.sql.dml import UpdateBase

from regsim.config import CHANNELS
from regsim.decision import DecisionKind
from regsim.eventlog import EVENT_SCHEMA, EventType
from serving import db

__all__ = [
    "EVENT_DEFAULTS",
    "IdCounters",
    "event_row",
    "events_table",
    "execute_many",
    "execute_one",
    "insert_events",
    "iter_event_tables",
    "load_events",
    "next_decision_and_message_ids",
    "next_ids",
    "pipelined",
]

_EVENT_NAMES = tuple(e.name.lower() for e in EventType)
_CHANNEL_NAMES = ("none", *CHANNELS)
_KIND_NAMES = tuple(k.name.lower() for k in DecisionKind)
_DICTIONARIES = {"event": _EVENT_NAMES, "channel": _CHANNEL_NAMES, "decision_kind": _KIND_NAMES}

#: Value stored for a column an event does not set: -1 for integers and "none" for the channel, as the
#: simulator's log has them; NULL for floats and strings (NaN and null in the log).
EVENT_DEFAULTS: dict[str, Any] = {}
for _field in EVENT_SCHEMA:
    if _field.name in ("timestamp",):
        continue
    if _field.name == "channel":
        EVENT_DEFAULTS[_field.name] = "none"
    elif pa.types.is_integer(_field.type):
        EVENT_DEFAULTS[_field.name] = -1
    else:
        EVENT_DEFAULTS[_field.name] = None
assert list(EVENT_DEFAULTS) == list(db.EVENT_COLUMNS), "serving.db.events must mirror regsim.eventlog.EVENT_SCHEMA"


_EVENT_KEYS = frozenset(EVENT_DEFAULTS)
_EVENT_NAME = {e: e.name.lower() for e in EventType}


def event_row(event: EventType, time: float, arrangement_id: int, **columns: Any) -> dict[str, Any]:
    """A full ``events`` row: the given columns, the rest at their defaults (``arrived_at``: ``None``, derived).

    Raises:
        KeyError: A column is not one of the event-log schema's.
    """
    if not columns.keys() <= _EVENT_KEYS:
        raise KeyError(f"unknown event columns {sorted(set(columns) - _EVENT_KEYS)}")
    row = dict(EVENT_DEFAULTS)
    row.update(columns)
    row["event"] = _EVENT_NAME[event]
    row["time"] = float(time)
    row["arrangement_id"] = int(arrangement_id)
    row["arrived_at"] = None
    return row


def insert_events(conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append events (in the given order, which is their log order).

    An event sets a few of the log's thirty columns; the rest hold their defaults (-1, ``"none"``, NULL). The
    driver binds every parameter it is given, at a cost per value that exceeds the rest of SQLite's insert, so
    each run of consecutive rows of one event type is inserted by a statement that binds only the columns some
    row of the run sets, and writes the defaults as constants (on PostgreSQL, a run of several rows is one
    statement binding an array per column: :func:`_insert_columns`). The rows, their order and the stored
    values are those of a statement that binds every column.
    """
    n, start = len(rows), 0
    while start < n:
        event, end = rows[start]["event"], start + 1
        while end < n and rows[end]["event"] == event:
            end += 1
        run = rows[start:end] if start or end < n else rows
        # A column is bound when a row of the run holds another value than its default.
        bound = tuple(c for c in _ROW_COLUMNS if c in _ALWAYS or set([r[c] for r in run]) != {_DEFAULTS[c]})
        stmt = _INSERTS.get(bound)
        if stmt is None:
            stmt = _INSERTS[bound] = _insert_binding(bound)
        if conn.dialect.name == "postgresql" and len(run) > 1:
            _insert_columns(conn, db.events, bound, run, _literals(bound))
        else:
            _execute_many(conn, stmt, run, None)  # (the statement names its values)
        start = end


def _literals(bound: tuple[str, ...]) -> dict[str, str]:
    """The SQL constants of the ``events`` columns not in ``bound``: their defaults (this module's constants)."""
    return {
        name: "NULL" if default is None else repr(default) if isinstance(default, int) else f"'{default}'"
        for name, default in _DEFAULTS.items()
        if name not in bound
    }


#: The ``events`` columns a row holds (``seq`` is the database's), with the value a row holds when unset.
_DEFAULTS: dict[str, Any] = {**EVENT_DEFAULTS, "arrived_at": None}
_ROW_COLUMNS = tuple(_DEFAULTS)
#: Bound in every statement (the columns every event sets).
_ALWAYS = frozenset({"time", "event", "arrangement_id"})
#: One insert statement per set of bound columns (built once each: execute_many keeps their compiled form).
_INSERTS: dict[tuple[str, ...], sa.Insert] = {}


def _insert_binding(bound: tuple[str, ...]) -> sa.Insert:
    """An insert into ``events`` binding ``bound`` and writing every other column's default as a constant."""
    values: dict[str, Any] = {}
    for name in _ROW_COLUMNS:
        if name in bound:
            values[name] = sa.bindparam(name)
        else:
            # The defaults are this module's constants (-1, "none", None), never a request's value.
            values[name] = sa.literal_column(_literals(bound)[name])
    return db.events.insert().values(values).inline()


# (dialect, id of the statement) -> (the statement, kept alive so that its id stays unique; SQL; parameter
# order for positional paramstyles; parameter names)
_COMPILED: dict[tuple[str, int], tuple[UpdateBase, str, tuple[str, ...] | None, dict[str, Any]]] = {}


def _compiled(
    conn: sa.Connection, stmt: UpdateBase, keys: list[str] | None
) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
    """A statement's SQL for the connection's dialect, its parameter order (positional paramstyles) and its
    parameters with the values the statement binds itself (literals; ``None`` for those given at execution),
    compiled once per dialect."""
    key = (conn.dialect.name, id(stmt))
    compiled = _COMPILED.get(key)
    if compiled is None:
        c = stmt.compile(dialect=conn.dialect, column_keys=keys)
        positions = tuple(c.positiontup) if c.positiontup is not None else None
        compiled = (stmt, c.string, positions, dict(c.params))
        _COMPILED[key] = compiled
    return compiled[1], compiled[2], compiled[3]


def execute_many(conn: sa.Connection, stmt: UpdateBase, rows: Sequence[Mapping[str, Any]]) -> None:
    """Run a statement once per row through the driver's ``executemany``, compiled once per dialect.

    SQLAlchemy builds the parameters of every row itself, which costs more than SQLite's insert of it; this
    sends the rows' values straight to the driver, in the statement's parameter order. The statement must
    take exactly the rows' keys as parameters and need no type conversion of them (plain numbers, strings
    and ``None``, as event, message and arrangement rows are). Give it statements built once (module
    constants): the compiled form is kept per statement. On PostgreSQL an insert of several rows is one
    statement binding an array per column (:func:`_insert_columns`).
    """
    if not rows:
        return
    if isinstance(stmt, sa.Insert) and conn.dialect.name == "postgresql" and len(rows) > 1:
        _insert_columns(conn, stmt.table, tuple(rows[0]), rows, {})
        return
    _execute_many(conn, stmt, rows, list(rows[0]) if isinstance(stmt, sa.Insert) else None)


_PLAIN = frozenset({int, float, str, type(None)})
_FLOAT_WORDS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _element(value: Any) -> str:
    """A plain value as an element of a PostgreSQL array literal (strings always quoted, ``None`` as NULL)."""
    if value is None:
        return "NULL"
    if type(value) is str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if type(value) is float:
        text = repr(value)
        return _FLOAT_WORDS.get(text, text)
    return str(value)


def _array_literal(values: list[Any]) -> str | list[Any]:
    """A column's values as the text of a PostgreSQL array (``{1,NULL,2.5}``), or the list as it is.

    psycopg adapts a list element by element in Python, at a cost per value close to a row's insert; the text
    is built at the speed of ``str.join``. Only plain ``int``, ``float``, ``str`` and ``None`` values are
    written here (floats by their shortest exact ``repr``, which PostgreSQL reads back to the same double);
    a column holding anything else (a ``bool``, a timestamp, a numpy scalar) is handed to psycopg as a list.
    """
    types = set(map(type, values))
    if not types <= _PLAIN:
        return values
    if types == {int}:
        return "{" + ",".join(map(str, values)) + "}"
    if str not in types:
        # Numbers and NULLs; a float's repr holds a lowercase "n" only as nan or inf, spelled out below.
        text = ",".join(["NULL" if v is None else repr(v) for v in values])
        if "n" not in text:
            return "{" + text + "}"
    elif types == {str}:
        text = "\x00".join(values)
        if '"' not in text and "\\" not in text:
            return '{"' + '","'.join(values) + '"}'
    return "{" + ",".join(map(_element, values)) + "}"


def _array_type(conn: sa.Connection, typ: Any) -> str:
    """The element type of a column's array: strings as ``text`` (the insert then checks a column's length, as
    for a bound value; a cast to ``varchar(n)`` would cut a longer value), the rest the column's own type."""
    return "text" if isinstance(typ, sa.String) else str(typ.compile(dialect=conn.dialect))


# (dialect, table, bound columns, constant columns) -> SQL of an insert of column arrays (_insert_columns)
_UNNESTS: dict[tuple[str, str, tuple[str, ...], tuple[tuple[str, str], ...]], str] = {}


def _insert_columns(
    conn: sa.Connection,
    table: Any,
    bound: tuple[str, ...],
    rows: Sequence[Mapping[str, Any]],
    constants: Mapping[str, str],
) -> None:
    """PostgreSQL: insert rows as one statement that binds one array per column (``unnest``), in row order.

    ``executemany`` costs psycopg a query message, its parameters and a result per row, in Python: more than
    the database's own work for the narrow rows of the log. Here each bound column's values travel as one
    array; ``WITH ORDINALITY ... ORDER BY`` keeps the rows' order, so a serial key (the log's ``seq``) is
    assigned in the order given, as by one insert per row. ``constants``: SQL constants of other columns.
    The rows, their order and the stored values are those of :func:`_execute_many`.
    """
    key = (conn.dialect.name, table.name, bound, tuple(constants.items()))
    sql = _UNNESTS.get(key)
    if sql is None:
        names = [*bound, *constants]
        arrays = ", ".join(f"%s::{_array_type(conn, table.c[c].type)}[]" for c in bound)
        alias = ", ".join([*(f"u_{c}" for c in bound), "u_ord"])
        select = ", ".join([*(f"u.u_{c}" for c in bound), *constants.values()])
        sql = (
            f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {select} "
            f"FROM unnest({arrays}) WITH ORDINALITY AS u({alias}) ORDER BY u.u_ord"
        )
        _UNNESTS[key] = sql
    params = [_array_literal([r[c] for r in rows]) for c in bound]
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
    finally:
        cursor.close()


def _execute_many(
    conn: sa.Connection, stmt: UpdateBase, rows: Sequence[Mapping[str, Any]], keys: list[str] | None
) -> None:
    """:func:`execute_many` with the column keys to compile an insert for (``None``: the statement's own)."""
    sql, positions, names = _compiled(conn, stmt, keys)
    if positions is not None:
        if len(positions) == 1:
            params: list[Any] = [(r[positions[0]],) for r in rows]
        else:
            values = operator.itemgetter(*positions)
            params = [values(r) for r in rows]
    else:
        params = [{k: r[k] for k in names} for r in rows]
    # On the driver's cursor (as execute_one), so that inside pipelined() nothing waits for a result.
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(sql, params)
    finally:
        cursor.close()


@contextlib.contextmanager
def pipelined(conn: sa.Connection) -> Iterator[None]:
    """Writes made inside (:func:`insert_events`, :func:`execute_many`) go to PostgreSQL in one round trip.

    psycopg's pipeline mode sends statements without waiting for each one's result and syncs when the block
    ends, where any error is raised (the transaction is then rolled back as for any failed statement). A write
    group's inserts and updates follow one another with nothing read in between, so on PostgreSQL they cost one
    round trip instead of one per statement (each a wait for the database server's process to be scheduled).
    SQLite runs in the server's process: nothing changes there. Only writes belong inside: a read would wait
    for the writes before it anyway.
    """
    pipeline = getattr(conn.connection.dbapi_connection, "pipeline", None)
    if conn.dialect.name != "postgresql" or pipeline is None:
        yield
        return
    with pipeline():
        yield


# conn.info key: a write transaction's id allocation (IdCounters.allocating).
_IDS = "regsim.ids"


def execute_one(conn: sa.Connection, stmt: UpdateBase, params: Mapping[str, Any]) -> tuple[int, list[tuple[Any, ...]]]:
    """Run a statement built once (a module constant) with one set of bound parameters on the driver's cursor.

    The hot path's statements (the lease's confirmation, the id counters) run once per write transaction, where
    SQLAlchemy's own execution of a statement object, and even of its SQL, costs several times the database's
    work on SQLite. This runs the compiled SQL on a cursor of the connection's DBAPI connection, so inside the
    caller's transaction; the driver's exceptions are not wrapped in SQLAlchemy's. The same rules as
    :func:`execute_many`: plain values, no type conversion; ``params`` are the statement's bound parameters by
    name.

    Returns:
        The number of rows the statement matched and the rows it returned (``RETURNING``; empty without).
    """
    sql, positions, bound = _compiled(conn, stmt, None)
    values = {**bound, **params}
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if positions is not None:
            cursor.execute(sql, tuple(values[k] for k in positions))
        else:
            cursor.execute(sql, {k: values[k] for k in bound})
        rows = [tuple(r) for r in cursor.fetchall()] if cursor.description is not None else []
        return int(cursor.rowcount), rows
    finally:
        cursor.close()


#: Built once: constructing a statement costs more than running it on SQLite.
_NEXT_IDS = (
    sa.update(db.counters)
    .where(db.counters.c.name == sa.bindparam("b_name"))
    .values(value=db.counters.c.value + sa.bindparam("b_n"))
    .returning(db.counters.c.value)
)


_NEXT_DECISION_AND_MESSAGE_IDS = (
    sa.update(db.counters)
    .where(sa.or_(db.counters.c.name == "decision", db.counters.c.name == "message"))
    .values(
        value=db.counters.c.value
        + sa.case(
            (db.counters.c.name == "decision", sa.bindparam("b_decisions", type_=sa.BigInteger())),
            else_=sa.bindparam("b_messages", type_=sa.BigInteger()),
        )
    )
    .returning(db.counters.c.name, db.counters.c.value)
)


def next_decision_and_message_ids(conn: sa.Connection, decisions: int, messages: int) -> tuple[list[int], list[int]]:
    """``decisions`` fresh decision ids and ``messages`` fresh message ids in one statement (one round trip).

    Inside :meth:`IdCounters.allocating`, from the writer's copy of the counters (no statement).
    """
    held = conn.info.get(_IDS)
    if held is not None:
        return held.take("decision", decisions), held.take("message", messages)
    if decisions <= 0 or messages <= 0:
        return next_ids(conn, "decision", decisions), next_ids(conn, "message", messages)
    _, returned = execute_one(conn, _NEXT_DECISION_AND_MESSAGE_IDS, {"b_decisions": decisions, "b_messages": messages})
    last = {str(name): int(value) for name, value in returned}
    return (
        list(range(last["decision"] - decisions + 1, last["decision"] + 1)),
        list(range(last["message"] - messages + 1, last["message"] + 1)),
    )


def next_ids(conn: sa.Connection, counter: str, n: int) -> list[int]:
    """``n`` fresh ids from a counter (``"decision"`` or ``"message"``), inside the caller's transaction.

    Inside :meth:`IdCounters.allocating`, from the writer's copy of the counters (no statement).
    """
    held = conn.info.get(_IDS)
    if held is not None:
        return held.take(counter, n)
    if n <= 0:
        return []
    _, returned = execute_one(conn, _NEXT_IDS, {"b_name": counter, "b_n": n})
    last = int(returned[0][0])
    return list(range(last - n + 1, last + 1))


#: The id counters (``counters`` rows) a write transaction allocates from.
ID_COUNTERS = ("decision", "message")
_READ_COUNTERS = sa.select(db.counters.c.name, db.counters.c.value).where(db.counters.c.name.in_(ID_COUNTERS))


class _Allocation:
    """One transaction's ids: the counters as they were when it began (``start``) and as they are now."""

    def __init__(self, start: dict[str, int]) -> None:
        self.start = start
        self.now = dict(start)

    def take(self, counter: str, n: int) -> list[int]:
        if n <= 0:
            return []
        last = self.now[counter] + n
        self.now[counter] = last
        return list(range(last - n + 1, last + 1))


class IdCounters:
    """The writer's copy of the decision and message id counters: ids without a round trip per transaction.

    Only the process holding the writer lease writes the store (:mod:`serving.lease`), so between its
    transactions the ``counters`` rows hold what this copy says. A transaction takes its ids from the copy
    (:meth:`allocating`); its commit writes the counters' new values with a statement that fails in the
    database unless the rows still hold the values the copy started from and the lease is still this
    process's (:meth:`serving.lease.WriterLease.confirm_with_ids`), so a stale copy can never hand out an id
    twice: its transaction fails and stores nothing. The copy moves on only when the commit has returned; after
    any failed transaction it is read again from the store.
    """

    def __init__(self) -> None:
        self.values: dict[str, int] | None = None

    @contextlib.contextmanager
    def allocating(self, conn: sa.Connection) -> Iterator[_Allocation]:
        """Inside, :func:`next_ids` and :func:`next_decision_and_message_ids` take ids from this copy.

        Yields the transaction's allocation (``start`` and ``now`` values, for the confirmation). Call
        :meth:`committed` with it after the commit; an exception leaving the block forgets the copy.
        """
        if self.values is None:
            read = {str(name): int(value) for name, value in conn.execute(_READ_COUNTERS)}
            missing = set(ID_COUNTERS) - set(read)
            if missing:
                raise RuntimeError(f"the store's counters table lacks {sorted(missing)} (run the migrations)")
            self.values = read
        allocation = _Allocation(dict(self.values))
        conn.info[_IDS] = allocation
        try:
            yield allocation
        except BaseException:
            self.values = None
            raise
        finally:
            conn.info.pop(_IDS, None)

    def committed(self, allocation: _Allocation) -> None:
        """The transaction of ``allocation`` has committed: its counters are the store's."""
        self.values = dict(allocation.now)

    def forget(self) -> None:
        """Read the counters from the store again before the next transaction (after a failure)."""
        self.values = None


def events_table(rows: Sequence[Mapping[str, Any]] | Sequence[sa.RowMapping], epoch: dt.date) -> pa.Table:
    """Event rows (as stored) as an Arrow table in :data:`regsim.eventlog.EVENT_SCHEMA`, in the given order.

    Dictionary columns use the simulator's full dictionaries and ``timestamp`` is computed from ``time`` and
    the epoch exactly as :meth:`regsim.eventlog.EventLog.to_table` does, so an export reads like a simulated log.
    """
    n = len(rows)
    arrays: list[pa.Array] = []
    time = np.array([r["time"] for r in rows], dtype=np.float64)
    millis = np.round(time * 86_400_000.0).astype("int64")
    start = int(dt.datetime.combine(epoch, dt.time()).replace(tzinfo=dt.UTC).timestamp())
    arrays.append(pa.array(millis + start * 1000, pa.timestamp("ms")))
    for field in EVENT_SCHEMA:
        name = field.name
        if name == "timestamp":
            continue
        values = [r[name] for r in rows]
        if name in _DICTIONARIES:
            names = _DICTIONARIES[name]
            lookup = {v: k for k, v in enumerate(names)}
            idx = pa.array([None if v is None else lookup[v] for v in values], pa.int8())
            arrays.append(pa.DictionaryArray.from_arrays(idx, list(names)))
        elif pa.types.is_floating(field.type):
            arrays.append(pa.array([None if v is None or v != v else float(v) for v in values], field.type))
        else:
            arrays.append(pa.array(values, field.type))
    assert all(len(a) == n for a in arrays)
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


_EVENT_SELECT = [db.events.c[name] for name in db.EVENT_COLUMNS]


def load_events(conn: sa.Connection, arrangement_ids: Sequence[int], epoch: dt.date) -> pa.Table:
    """All events of some arrangements, in log order, as an Arrow table in the event-log schema."""
    ids = sorted({int(a) for a in arrangement_ids})
    rows: list[Any] = []
    # Chunked IN lists keep every statement within the databases' parameter limits.
    for k in range(0, len(ids), 500):
        chunk = ids[k : k + 500]
        stmt = sa.select(db.events.c.seq, *_EVENT_SELECT).where(db.events.c.arrangement_id.in_(chunk))
        rows.extend(r._mapping for r in conn.execute(stmt))
    rows.sort(key=lambda r: r["seq"])
    return events_table(rows, epoch)


def iter_event_tables(conn: sa.Connection, epoch: dt.date, chunk_rows: int = 100_000) -> Iterator[pa.Table]:
    """The whole event log in log order, as Arrow tables of at most ``chunk_rows`` events."""
    last = 0
    while True:
        stmt = (
            sa.select(db.events.c.seq, *_EVENT_SELECT)
            .where(db.events.c.seq > last)
            .order_by(db.events.c.seq)
            .limit(chunk_rows)
        )
        rows = [r._mapping for r in conn.execute(stmt)]
        if not rows:
            return
        last = int(rows[-1]["seq"])
        yield events_table(rows, epoch)
