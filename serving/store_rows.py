"""The server's sink for the ledger: every event a ledger applies or derives, as a row of the ``events`` table.

The server changes arrangements only through :class:`regsim.ledger.Ledger` (the workspace's replay holds one);
:class:`StoreRows` receives what the ledger writes, in log order, and turns it into store rows
(:func:`serving.store.event_row`: names for channels and decision kinds, ``None`` for unset values), which the
service inserts into the store in the same transaction. What the server answers (installments paid, reminders
cancelled) is read off these rows too, so the server never works out a consequence of an event itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from regsim.clock import Time
from regsim.config import CHANNELS
from regsim.decision import DecisionKind
from regsim.eventlog import EventType
from regsim.replay import LogReplay
from serving.store import EVENT_DEFAULTS, event_row

__all__ = ["StoreRows", "rows_of"]

_CHANNEL_NAMES = ("none", *CHANNELS)
_KIND_NAMES = tuple(k.name.lower() for k in DecisionKind)
_EVENT_KEYS = frozenset(EVENT_DEFAULTS)


def _column(name: str, values: Any) -> list[Any]:
    """A logged column as the store holds it (:func:`_plain` of each value), converted as a whole."""
    if name == "channel":
        return [_CHANNEL_NAMES[k] for k in np.asarray(values, dtype=np.int64).tolist()]
    if name == "decision_kind":
        return [_KIND_NAMES[k] for k in np.asarray(values, dtype=np.int64).tolist()]
    if isinstance(values, np.ndarray) and values.dtype.kind in "iub":
        return values.tolist()
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        out = values.tolist()
        return [None if v != v else v for v in out] if np.isnan(values).any() else out
    return [_plain(name, v) for v in values]


def _plain(name: str, value: Any) -> Any:
    """A logged value as the store holds it: names for channels and kinds, Python numbers, ``None`` for NaN."""
    if name == "channel":
        return _CHANNEL_NAMES[int(value)]
    if name == "decision_kind":
        return _KIND_NAMES[int(value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class StoreRows:
    """Collects a workspace ledger's events as store rows (see the module docstring).

    Args:
        replay: The workspace's replay, whose ledger writes here (its ``ids`` map rows to arrangements).
    """

    def __init__(self, replay: LogReplay) -> None:
        self.replay = replay
        self.rows: list[dict[str, Any]] = []

    def keeps(self, event: EventType) -> bool:
        """Every event is stored."""
        return True

    def record(self, event: EventType, t: Time, rows: NDArray[np.int64], **columns: Any) -> None:
        """Store rows of events of one type, one per ledger row (a column converted once, not per value)."""
        n = len(rows)
        if not n:
            return
        if not columns.keys() <= _EVENT_KEYS:
            raise KeyError(f"unknown event columns {sorted(set(columns) - _EVENT_KEYS)}")
        base = event_row(event, 0.0, 0)
        names = ["time", "arrangement_id"]
        values: list[list[Any]] = [
            np.broadcast_to(np.asarray(t, dtype=np.float64), (n,)).tolist(),
            self.replay.ids[rows].tolist(),
        ]
        for name, value in columns.items():
            if np.ndim(value) == 0:
                base[name] = _plain(name, value)  # the same for every row
            else:
                names.append(name)
                values.append(_column(name, value))
        for row_values in zip(*values, strict=True):
            row = base.copy()
            row.update(zip(names, row_values, strict=True))
            self.rows.append(row)

    def take(self) -> list[dict[str, Any]]:
        """The rows written since the last call (and forget them)."""
        out, self.rows = self.rows, []
        return out


def rows_of(replay: LogReplay) -> StoreRows:
    """The store-row sink of a workspace's replay, attached to its ledger on first use."""
    sink = replay.ledger.sink
    if not isinstance(sink, StoreRows):
        sink = StoreRows(replay)
        replay.ledger.sink = sink
    return sink


def of_type(rows: Sequence[dict[str, Any]], event: EventType) -> list[dict[str, Any]]:
    """The rows of one event type."""
    name = event.name.lower()
    return [r for r in rows if r["event"] == name]
