"""The message book: every message of a set of arrangements, and which of them are still pending.

A contacting decision schedules one message. The book keeps, column-wise, what production knows of each one
(its arrangement row, channel, purpose, installment, deciding decision, send slot hour and planned send time)
and its state: *pending* until it is sent or cancelled. The :class:`~regsim.ledger.Ledger` owns a book and is
the only writer of message states; simulation, log replay and the server address messages by their position in
the book, and the ``message_id`` column holds the id under which each is logged (the world numbers them by
position; the server by its store's sequence).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

__all__ = ["MessageBook", "MessageState"]


class MessageState(IntEnum):
    """Where a message is in its life."""

    PENDING = 0
    """Decided, not yet sent (waiting for its send time, a print room or a call centre)."""
    SENT = 1
    CANCELLED = 2
    """Dropped before it was sent: its installment was paid, or the arrangement ended."""


_PENDING = int(MessageState.PENDING)
_COLUMNS: dict[str, type] = {
    "row": np.int64,
    "channel": np.int64,
    "purpose": np.int64,
    "installment": np.int64,
    "decision": np.int64,
    "hour": np.int64,
    "send_time": np.float64,
    "message_id": np.int64,
    "state": np.int8,
}


class MessageBook:
    """A growable column store of messages (struct of arrays; positions are stable until :meth:`compact`).

    Attributes:
        n: Number of messages in the book.
        row: The arrangement row of each message.
        channel: Channel option (1.. of ``("none", *CHANNELS)``).
        purpose: :class:`~regsim.decision.MessagePurpose` of each message.
        installment: The installment the message is about.
        decision: Id of the decision that scheduled it.
        hour: Hour of the day of its send slot.
        send_time: When it was to be sent (days since the epoch).
        message_id: The id it is logged under.
        state: :class:`MessageState` of each message.
    """

    row: NDArray[np.int64]
    channel: NDArray[np.int64]
    purpose: NDArray[np.int64]
    installment: NDArray[np.int64]
    decision: NDArray[np.int64]
    hour: NDArray[np.int64]
    send_time: NDArray[np.float64]
    message_id: NDArray[np.int64]
    state: NDArray[np.int8]

    def __init__(self, capacity: int = 1024) -> None:
        self.n = 0
        for name, dtype in _COLUMNS.items():
            setattr(self, name, np.zeros(max(int(capacity), 1), dtype=dtype))
        self.pending_pool = np.zeros(0, dtype=np.int64)
        """Positions of messages that may still be pending (a superset, pruned as they are looked at)."""

    def add(
        self,
        row: NDArray[np.int64],
        channel: NDArray[np.int64],
        purpose: NDArray[np.int64],
        installment: NDArray[np.int64],
        decision: NDArray[np.int64],
        hour: NDArray[np.int64],
        send_time: NDArray[np.float64],
        message_id: NDArray[np.int64] | None = None,
    ) -> NDArray[np.int64]:
        """Add pending messages; returns their positions. Without ``message_id`` a message's id is its position."""
        k = len(row)
        while self.n + k > len(self.row):
            for name in _COLUMNS:
                old = getattr(self, name)
                new = np.zeros(2 * len(old), dtype=old.dtype)
                new[: len(old)] = old
                setattr(self, name, new)
        sl = slice(self.n, self.n + k)
        positions = np.arange(self.n, self.n + k, dtype=np.int64)
        self.row[sl], self.channel[sl], self.purpose[sl] = row, channel, purpose
        self.installment[sl], self.decision[sl], self.hour[sl] = installment, decision, hour
        self.send_time[sl] = send_time
        self.message_id[sl] = positions if message_id is None else message_id
        self.state[sl] = _PENDING
        self.n += k
        self.pending_pool = np.concatenate([self.pending_pool, positions])
        return positions

    def pending_of(self, chosen: NDArray[np.bool_]) -> NDArray[np.int64]:
        """Positions of the pending messages whose row is marked in ``chosen`` (a mask over the rows)."""
        pool = self.pending_pool
        if not len(pool):
            return pool
        pool = pool[self.state[pool] == _PENDING]
        self.pending_pool = pool
        return pool[chosen[self.row[pool]]]

    def positions_of(self, message_ids: NDArray[np.int64]) -> NDArray[np.int64]:
        """Positions of messages given by id (``-1`` for an id not in the book)."""
        out = np.full(len(message_ids), -1, dtype=np.int64)
        if not self.n:
            return out
        ids = self.message_id[: self.n]
        order = np.argsort(ids, kind="stable")
        wanted = np.asarray(message_ids, dtype=np.int64)
        at = np.minimum(np.searchsorted(ids[order], wanted), self.n - 1)
        found = ids[order][at] == wanted
        out[found] = order[at][found]
        return out

    def of_rows(self, rows: NDArray[np.int64], n_rows: int) -> NDArray[np.int64]:
        """Positions of every message of these rows, in book order."""
        chosen = np.zeros(n_rows, dtype=bool)
        chosen[rows] = True
        return np.flatnonzero(chosen[self.row[: self.n]])

    def forget_rows(self, gone: NDArray[np.bool_]) -> None:
        """Drop these rows' messages from the pending pool (their arrangements were replaced; see ``compact``)."""
        pool = self.pending_pool
        self.pending_pool = pool[~gone[self.row[pool]]]

    def compact(self, live: NDArray[np.int64]) -> NDArray[np.int64]:
        """Keep only the messages at positions ``live`` (sorted, unique); returns the new position of every old one.

        The pending pool is renumbered; positions held elsewhere must be renumbered by the caller with the
        returned map (``-1`` for a dropped message).
        """
        new_position = np.full(self.n, -1, dtype=np.int64)
        new_position[live] = np.arange(len(live))
        for name in _COLUMNS:
            column = getattr(self, name)
            column[: len(live)] = column[live]
        self.n = len(live)
        pool = new_position[self.pending_pool]
        # A dropped pending message leaves the pool: kept as -1 it would index the buffer's last (unused, zero =
        # pending) slot, a phantom message of row 0 that a later cancellation of that row would log.
        self.pending_pool = pool[pool >= 0]
        return new_position

    def subset(self, positions: NDArray[np.int64], new_row: NDArray[np.int64]) -> MessageBook:
        """A new book holding the messages at ``positions``, their rows renumbered through ``new_row[old_row]``."""
        out = MessageBook(max(len(positions), 16))
        k = len(positions)
        for name in _COLUMNS:
            getattr(out, name)[:k] = getattr(self, name)[positions]
        out.row[:k] = new_row[out.row[:k]]
        out.n = k
        out.pending_pool = np.flatnonzero(out.state[:k] == _PENDING).astype(np.int64)
        return out

    def extend(self, other: MessageBook, new_row: NDArray[np.int64]) -> None:
        """Append every message of ``other``, its rows renumbered through ``new_row[old_row]``."""
        k = other.n
        if not k:
            return
        start = self.n
        self.add(
            new_row[other.row[:k]],
            other.channel[:k],
            other.purpose[:k],
            other.installment[:k],
            other.decision[:k],
            other.hour[:k],
            other.send_time[:k],
            other.message_id[:k],
        )
        self.state[start : start + k] = other.state[:k]
        self.pending_pool = self.pending_pool[self.state[self.pending_pool] == _PENDING]

    def remove(self, positions: NDArray[np.int64]) -> None:
        """Drop the messages at these positions (the others keep their order; positions shift)."""
        keep = np.ones(self.n, dtype=bool)
        keep[positions] = False
        self.compact(np.flatnonzero(keep))
