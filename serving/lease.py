"""The store's writer lease: one server process writes a store; a newer one takes over, the older one stops.

The server keeps each arrangement's replayed state in memory (:mod:`serving.cache`), which is right only while
no other process writes the store. At start-up a server takes the lease: it increments the ``server_lease``
row of ``counters`` and remembers the value (its generation). Every write transaction first confirms the
lease (an ``UPDATE`` matching its generation, which also takes the write lock on SQLite and the row lock on
PostgreSQL, so the check holds until the commit). When a second server has started on the same store since,
the first one's transactions find another generation and are refused with :class:`LeaseLostError` (503):
the newest server writes, with a cache loaded from the store, and the older one can no longer corrupt it.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from serving import db
from serving.store import ID_COUNTERS, execute_one

__all__ = ["LEASE_COUNTER", "LeaseLostError", "WriterLease", "confirm_and_commit"]

#: The ``counters`` row holding the generation of the server that may write.
LEASE_COUNTER = "server_lease"


_CONFIRM = (
    sa.update(db.counters)
    .where(db.counters.c.name == LEASE_COUNTER, db.counters.c.value == sa.bindparam("b_gen"))
    .values(value=sa.bindparam("b_gen"))
)


_BIG = sa.BigInteger()
_c = db.counters.c
#: The confirmation a write transaction ends with (see :meth:`WriterLease.confirm_with_ids`): the id counters
#: set to their new values and the lease row left as it is, every row divided by 1 if it holds what this
#: process expects and by 0 otherwise. Division by zero is an error on PostgreSQL; on SQLite it gives NULL,
#: which the column refuses (NOT NULL): either way the statement, and so the transaction, fails.
_CONFIRM_WITH_IDS = (
    sa.update(db.counters)
    .where(sa.or_(*(_c.name == name for name in (LEASE_COUNTER, *ID_COUNTERS))))
    .values(
        value=sa.case(
            (_c.name == "decision", sa.bindparam("b_decision", type_=_BIG)),
            (_c.name == "message", sa.bindparam("b_message", type_=_BIG)),
            else_=_c.value,
        )
        // sa.case(
            (
                _c.value
                == sa.case(
                    (_c.name == "decision", sa.bindparam("b_decision_was", type_=_BIG)),
                    (_c.name == "message", sa.bindparam("b_message_was", type_=_BIG)),
                    else_=sa.bindparam("b_gen", type_=_BIG),
                ),
                1,
            ),
            else_=0,
        )
    )
)


def _confirm_and_commit_template() -> str:
    """PostgreSQL: :data:`_CONFIRM_WITH_IDS` that also fails when a row is missing, then ``COMMIT``, as one
    ``%``-template of the integer parameters (the statement's own constants rendered as quoted literals)."""
    compiled = _CONFIRM_WITH_IDS.compile(dialect=postgresql.psycopg.dialect())
    assert "%%" not in compiled.string and "RETURNING" not in compiled.string
    literals: dict[str, str] = {}
    for name, value in compiled.params.items():
        if value is None:  # given per transaction: an integer, formatted in
            literals[name] = f"%({name})d"
        else:  # one of this module's constants (the counters' names)
            assert isinstance(value, (str, int)) and "'" not in str(value) and "\\" not in str(value)
            literals[name] = f"'{value}'" if isinstance(value, str) else str(int(value))
    update = compiled.string % literals
    rows = 1 + len(ID_COUNTERS)
    return (
        f"WITH confirmed AS ({update} RETURNING counters.name) "
        f"SELECT 1 / (CASE WHEN count(*) = {rows} THEN 1 ELSE 0 END) FROM confirmed; COMMIT"
    )


_CONFIRM_AND_COMMIT = _confirm_and_commit_template()


class LeaseLostError(Exception):
    """Another server process has taken over the store; this one may no longer write (503)."""


#: What a write refused for a lost lease says.
LOST = (
    "another server process has taken over this store (one writer per store); this one no longer writes: "
    "restart it or route traffic to the newer one"
)


def confirm_and_commit(conn: sa.Connection, sql: str) -> None:
    """Run :meth:`WriterLease.confirm_and_commit_sql`'s text on ``conn``'s driver cursor: the transaction is
    committed when this returns (the caller's ``commit()`` of it then sends nothing), or fails with it.

    Raises:
        psycopg.Error: The confirmation failed (lease lost, stale counters, a row missing) or the commit did.
    """
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)  # (no parameters: the simple query protocol, which takes several statements)
    finally:
        cursor.close()


class WriterLease:
    """The lease of one server process on its store.

    Args:
        engine: The store.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.generation = self._take()

    def _take(self) -> int:
        with self.engine.begin() as conn:
            bumped = conn.execute(
                sa.update(db.counters)
                .where(db.counters.c.name == LEASE_COUNTER)
                .values(value=db.counters.c.value + 1)
                .returning(db.counters.c.value)
            ).first()
            if bumped is not None:
                return int(bumped[0])
            conn.execute(sa.insert(db.counters).values(name=LEASE_COUNTER, value=1))
            return 1

    def held(self, conn: sa.Connection) -> bool:
        """Whether this process still holds the lease (no newer server has started on the store); reads only."""
        value = conn.execute(
            sa.select(db.counters.c.value).where(db.counters.c.name == LEASE_COUNTER)
        ).scalar_one_or_none()
        return value is not None and int(value) == self.generation

    def confirm(self, conn: sa.Connection) -> None:
        """Check, inside a write transaction, that this process still holds the lease.

        Raises:
            LeaseLostError: Another server started on the store since this one.
        """
        matched, _ = execute_one(conn, _CONFIRM, {"b_gen": self.generation})
        if matched != 1:
            raise LeaseLostError(LOST)

    def confirm_with_ids(self, conn: sa.Connection, was: Mapping[str, int], now: Mapping[str, int]) -> None:
        """End a write transaction: write the id counters' new values, if the lease is still this process's.

        One statement: it fails in the database, and with it the transaction, unless the lease row holds this
        process's generation and the id counters hold ``was`` (the values this process's copy gave out ids
        from, :class:`serving.store.IdCounters`); it takes the rows' locks, so the check holds until the
        commit. Run it last, after the transaction's other writes: a transaction of a process that lost the
        lease, or working from a stale copy of the counters, stores nothing. (Which of the two failed is told
        by :meth:`held`.) Since it comes last, the transactions of this process before it never wait for one
        another's locks on these rows while they work.

        Args:
            conn: The write transaction.
            was: The counters' values when the transaction started (``decision``, ``message``).
            now: Their values after the ids the transaction gave out.
        """
        params = {
            "b_decision": now["decision"],
            "b_message": now["message"],
            "b_decision_was": was["decision"],
            "b_message_was": was["message"],
            "b_gen": self.generation,
        }
        matched, _ = execute_one(conn, _CONFIRM_WITH_IDS, params)
        if matched != 1 + len(ID_COUNTERS):  # (a row missing: the store was not made by these migrations)
            raise LeaseLostError(LOST)

    def confirm_and_commit_sql(self, was: Mapping[str, int], now: Mapping[str, int]) -> str:
        """PostgreSQL: :meth:`confirm_with_ids` and the transaction's ``COMMIT`` as one simple query (one round
        trip instead of two), for the driver's cursor (:func:`confirm_and_commit`).

        The confirmation is the same ``UPDATE``, its integers written into the text; it fails in the database
        (division by zero) also when a row is missing, which :meth:`confirm_with_ids` checks from the row
        count after the statement, so that in every case where that raises, this fails before its ``COMMIT``:
        PostgreSQL skips the rest of a simple query after an error, and the transaction is then rolled back.
        """
        values = {
            "b_decision": int(now["decision"]),
            "b_message": int(now["message"]),
            "b_decision_was": int(was["decision"]),
            "b_message_was": int(was["message"]),
            "b_gen": int(self.generation),
        }
        return _CONFIRM_AND_COMMIT % values
