"""The event log: one typed record per event, in the schema production logs use too.

The log holds nothing only a simulator knows: no debtor type, liquidity, shock or "noticed" flag (those go to
:mod:`regsim.ground_truth`). A decision record carries the full action, the policy's name and version, the
probability the policy gave the action, and the rules that masked other options, so the log is enough for
KPIs, off-policy evaluation and retraining.

**Self-service events** use the schema's columns with a meaning per event (as ``amount_eur`` and
``deferral_days`` already have), so the schema, and the server's store that mirrors it, stay as they are:

* ``menu_shown``: ``decision_id`` = the menu's id; the six slot levels are ``a_deferral`` (deferral),
  ``a_reduction`` (plan), ``a_due_day`` (discount) and the bits of ``a_channel`` (1 waiver, 2 counselling,
  4 custom);
  ``propensity`` the policy's probability of the whole menu; ``masked_rules`` the menu rules that capped
  options; ``policy``, ``policy_version``; ``installment`` the overdue installment.
* ``menu_choice``: ``decision_id`` = the menu's id; ``a_channel`` = the option chosen
  (:class:`regsim.menu.MenuOption`, 0 = closed the page); its confirmation, if any, is a message logged under
  the menu's id (``decision_id``).
* ``new_plan``: ``n_installments``, ``installment_eur``, ``installment`` (the plan after it), like a re-plan.
* ``concession``: ``amount_eur`` = EUR conceded; ``reduction`` = the discount fraction (null for a waiver);
  ``n_installments``, ``installment_eur`` (the plan after it).
* ``case_resolved``: ``decision_id`` = the menu's id; ``amount_eur`` = the staff call's cost;
  ``deferral_days`` and ``n_installments`` = the solution staff agreed.

Records are buffered column-wise in chunks (a whole day's payments are one append), then written as one Arrow
table / Parquet file sorted by time. ``time`` is in days since the run's start (production: since the epoch
of :data:`EPOCH`); ``timestamp`` is the calendar time.
"""

from __future__ import annotations

import datetime as dt
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import ArrayLike, NDArray

from regsim.config import CHANNELS
from regsim.decision import DecisionKind

__all__ = ["EVENT_SCHEMA", "EventLog", "EventType", "read_events", "write_events"]


class EventType(IntEnum):
    """Kinds of event. Values are stored by name; never reuse a name for another meaning."""

    ARRANGEMENT_CREATED = 0
    DECISION = 1
    MESSAGE_SENT = 2
    MESSAGE_DELIVERED = 3
    MESSAGE_OPENED = 4
    MESSAGE_CLICKED = 5
    MESSAGE_CANCELLED = 6
    PAYMENT = 7
    INSTALLMENT_DUE = 8
    INSTALLMENT_PAID = 9
    INSTALLMENT_MISSED = 10
    DEFERRAL = 11
    REDUCTION = 12
    DUE_DAY_SET = 13
    OPT_OUT = 14
    COMPLETED = 15
    BROKEN = 16
    REFERRED = 17
    MENU_SHOWN = 18
    """A self-service menu shown (regsim.menu): see "Self-service events" in the module docstring."""
    MENU_CHOICE = 19
    """The debtor's answer to a menu (an option, or closing the page)."""
    NEW_PLAN = 20
    """A plan the debtor chose (or staff set up): the open balance over a new number of installments."""
    CONCESSION = 21
    """A discount or a waiver of collection costs: ``amount_eur`` is the concession, counted in net recovery."""
    CASE_RESOLVED = 22
    """Staff resolved a custom-solution case (from outside the ledger, like a payment)."""


_EVENT_NAMES = [e.name.lower() for e in EventType]
_KIND_NAMES = [k.name.lower() for k in DecisionKind]
_CHANNEL_NAMES = ["none", *CHANNELS]

#: Column name -> (Arrow type, fill value for events that do not set it, meaning).
_COLUMNS: dict[str, tuple[pa.DataType, Any, str]] = {
    "time": (pa.float64(), np.nan, "days since the start of the run"),
    "event": (pa.dictionary(pa.int8(), pa.string()), 0, "event type (EventType, lower case)"),
    "arrangement_id": (pa.int64(), -1, "pseudonymous arrangement id"),
    "installment": (pa.int16(), -1, "installment index the event concerns, -1 if none"),
    "amount_eur": (pa.float64(), np.nan, "payment amount; message cost; balance at breakdown; debt at creation"),
    "channel": (pa.dictionary(pa.int8(), pa.string()), 0, "contact channel ('none' if not a message)"),
    "message_id": (pa.int64(), -1, "message id, linking sent/delivered/opened/clicked/cancelled"),
    "decision_id": (pa.int64(), -1, "decision id, linking a message to the decision that scheduled it"),
    "decision_kind": (pa.dictionary(pa.int8(), pa.string()), -1, "decision point kind (decisions only)"),
    "a_channel": (pa.int8(), -1, "action: channel option"),
    "a_send_slot": (pa.int8(), -1, "action: send-slot option"),
    "a_due_day": (pa.int8(), -1, "action: due-day option"),
    "a_deferral": (pa.int8(), -1, "action: deferral option"),
    "a_reduction": (pa.int8(), -1, "action: reduction option"),
    "propensity": (pa.float64(), np.nan, "probability the policy gave the chosen action"),
    "send_time": (pa.float64(), np.nan, "when the decided message is to be sent, days since start"),
    "masked_rules": (pa.string(), None, "rules that masked options at this decision, comma-separated"),
    "policy": (pa.string(), None, "policy name (decisions only)"),
    "policy_version": (pa.string(), None, "policy version (decisions only)"),
    "due_day": (pa.int8(), -1, "day of the month installments fall due (plan events)"),
    "n_installments": (pa.int16(), -1, "installments in the plan after the event (plan events)"),
    "installment_eur": (pa.float64(), np.nan, "installment amount after the event (plan events)"),
    "deferral_days": (pa.int16(), -1, "days granted (deferral) or days late (installment paid)"),
    "reduction": (pa.float64(), np.nan, "fraction by which installments were reduced"),
    "prior_payments": (pa.int16(), -1, "earlier payments to the creditor (creation only)"),
    "prior_late_share": (pa.float64(), np.nan, "share of those that were late (creation only)"),
    "prior_pay_dom": (pa.int8(), -1, "usual day of the month of those payments (creation only)"),
    "collection_costs_eur": (pa.float64(), np.nan, "statutory collection costs charged at breakdown (F8)"),
}

#: The Arrow schema of the event log (plus ``timestamp``, the calendar time of ``time``).
EVENT_SCHEMA = pa.schema(
    [pa.field("timestamp", pa.timestamp("ms"))]
    + [pa.field(name, typ, metadata={"description": desc}) for name, (typ, _, desc) in _COLUMNS.items()]
)

_COLUMN_NAMES = frozenset(_COLUMNS)
_NUMPY_DTYPES: dict[str, Any] = {
    name: (typ.index_type.to_pandas_dtype() if pa.types.is_dictionary(typ) else typ.to_pandas_dtype())
    for name, (typ, _, _) in _COLUMNS.items()
    if not pa.types.is_string(typ)
}


class EventLog:
    """A column-wise, append-only buffer of events.

    Args:
        start_date: Calendar date of day 0, used for the ``timestamp`` column.
    """

    def __init__(self, start_date: dt.date) -> None:
        self.start_date = start_date
        self._chunks: list[tuple[int, dict[str, Any]]] = []
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def n_chunks(self) -> int:
        """Number of appends so far (a cursor for :meth:`chunks_since`)."""
        return len(self._chunks)

    def chunks_since(self, cursor: int) -> list[tuple[EventType, int, dict[str, Any]]]:
        """The appends made since ``cursor`` (a value of :attr:`n_chunks`): (event, rows, columns)."""
        return [(EventType(chunk["event"]), n, chunk) for n, chunk in self._chunks[cursor:]]

    def append(self, event: EventType, time: ArrayLike, arrangement_id: ArrayLike, **columns: Any) -> None:
        """Append one or many events of one type.

        Args:
            event: The event type.
            time: Time of each event (days since start); broadcast against ``arrangement_id``.
            arrangement_id: Arrangement of each event (a scalar or an array).
            **columns: Further columns of :data:`EVENT_SCHEMA`, each a scalar or an array of the same length.
                ``channel`` is an option index (0 = none); ``decision_kind`` a :class:`DecisionKind`.
        """
        # The world appends tens of thousands of small chunks per run: the common cases (an int64 array of ids,
        # one float time or an aligned float array, array columns) skip NumPy's general conversions; every
        # other input takes them, so what is stored is the same either way.
        if type(arrangement_id) is np.ndarray and arrangement_id.dtype == np.int64 and arrangement_id.ndim == 1:
            ids = arrangement_id
        else:
            ids = np.atleast_1d(np.asarray(arrangement_id, dtype=np.int64))
        n = len(ids)
        if n == 0:
            return
        if not _COLUMN_NAMES.issuperset(columns):
            unknown = set(columns) - _COLUMN_NAMES
            raise KeyError(f"unknown event columns {sorted(unknown)}; allowed: {sorted(_COLUMNS)}")
        if isinstance(time, float):
            # One time for all rows: a read-only view of it with stride 0, as np.broadcast_to makes (no copy per
            # row), built directly.
            times: NDArray[np.float64] = np.ndarray((n,), np.float64, np.array([time], np.float64), 0, (0,))
            times.flags.writeable = False
        elif type(time) is np.ndarray and time.dtype == np.float64 and time.shape == (n,):
            times = time
        else:
            times = np.broadcast_to(np.asarray(time, float), (n,))
        chunk: dict[str, Any] = {"arrangement_id": ids, "time": times}
        chunk["event"] = int(event)
        for name, value in columns.items():
            chunk[name] = value if type(value) is np.ndarray or np.ndim(value) == 0 else np.asarray(value)
        self._chunks.append((n, chunk))
        self._n += n

    def to_table(self) -> pa.Table:
        """All events as an Arrow table in :data:`EVENT_SCHEMA`, sorted stably by time.

        Columns are assembled one at a time (gathered from the chunks that set them, reordered, converted to
        Arrow, and the NumPy copy dropped) to keep the peak memory near the size of the table itself.
        """
        n = self._n
        starts = np.cumsum([0] + [size for size, _ in self._chunks])
        # Which chunks set each column, gathered in one pass (each column then visits only its own chunks).
        setting: dict[str, list[int]] = {name: [] for name in _COLUMNS}
        for k, (_, chunk) in enumerate(self._chunks):
            for name in chunk:
                setting[name].append(k)
        time = np.empty(n)
        for k, (size, chunk) in enumerate(self._chunks):
            time[starts[k] : starts[k] + size] = chunk["time"]
        order = np.argsort(time, kind="stable")
        time = time[order]
        fields = []
        for name, (typ, fill, _) in _COLUMNS.items():
            if name == "time":
                fields.append(pa.array(time, typ))
                continue
            string = pa.types.is_string(typ)
            col = np.full(n, None, dtype=object) if string else np.full(n, fill, dtype=_NUMPY_DTYPES[name])
            for k in setting[name]:
                col[starts[k] : starts[k + 1]] = self._chunks[k][1][name]
            col = col[order]
            if name == "event":
                fields.append(pa.DictionaryArray.from_arrays(pa.array(col, pa.int8()), _EVENT_NAMES))
            elif name == "channel":
                fields.append(pa.DictionaryArray.from_arrays(pa.array(col, pa.int8()), _CHANNEL_NAMES))
            elif name == "decision_kind":
                idx = pa.array(col, pa.int8(), mask=col < 0)
                fields.append(pa.DictionaryArray.from_arrays(idx, _KIND_NAMES))
            elif pa.types.is_floating(typ):
                fields.append(pa.array(col, typ, from_pandas=True))  # unset (NaN) is stored as null
            else:
                fields.append(pa.array(col, typ))
            del col
        millis = np.round(time * 86_400_000.0).astype("int64")
        epoch = int(dt.datetime.combine(self.start_date, dt.time()).replace(tzinfo=dt.UTC).timestamp())
        stamps = pa.array(millis + epoch * 1000, pa.timestamp("ms"))
        return pa.Table.from_arrays([stamps, *fields], schema=EVENT_SCHEMA)


def write_events(table: pa.Table, path: str | Path) -> Path:
    """Write an event table as Parquet (zstd); returns the path."""
    p = Path(path)
    pq.write_table(table, p, compression="zstd")
    return p


def read_events(path: str | Path) -> pa.Table:
    """Read an event log written by :func:`write_events` (or by the server's export)."""
    table = pq.read_table(path)
    missing = set(EVENT_SCHEMA.names) - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: not an event log; missing columns {sorted(missing)}")
    return table


def event_codes(table: pa.Table) -> NDArray[np.int64]:
    """The ``event`` column as :class:`EventType` codes."""
    col = table.column("event").combine_chunks()
    names = col.dictionary.to_pylist()
    remap = np.array([_EVENT_NAMES.index(nm) for nm in names], dtype=np.int64)
    return remap[col.indices.to_numpy(zero_copy_only=False)]
