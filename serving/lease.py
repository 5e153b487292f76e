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

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from serving import db
from serving.store import execute_one

__all__ = ["LEASE_COUNTER", "LeaseLostError", "WriterLease"]

#: The ``counters`` row holding the generation of the server that may write.
LEASE_COUNTER = "server_lease"


_CONFIRM = (
    sa.update(db.counters)
    .where(db.counters.c.name == LEASE_COUNTER, db.counters.c.value == sa.bindparam("b_gen"))
    .values(value=sa.bindparam("b_gen"))
)


class LeaseLostError(Exception):
    """Another server process has taken over the store; this one may no longer write (503)."""


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
            raise LeaseLostError(
                "another server process has taken over this store (one writer per store); this one no longer "
                "writes: restart it or route traffic to the newer one"
            )
