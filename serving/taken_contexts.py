"""The context a decision was taken in, rebuilt from its arrangement's stored events and their arrival times.

A decision's context is what the server knew of its arrangement when it decided. While events arrive in time
order that is the log before the decision (:func:`regsim.replay.contexts_from_log`). Once a late event
(:mod:`serving.late_events`) has rewritten the log, the events before a decision include ones that arrived
after it; the online learner (:mod:`serving.online`), which corrects or rebuilds decisions after a late event
or a restart, needs the context the decision was taken in, not the one the rewritten log gives it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from regsim.decision import ContextBatch
from regsim.eventlog import EventType
from regsim.replay import LogReplay, morning_booking_day
from serving.store import events_table

__all__ = ["taken_contexts"]


def taken_contexts(template: LogReplay, rows: Sequence[Mapping[str, Any]], epoch: dt.date) -> dict[int, ContextBatch]:
    """The context each decision of one arrangement was taken in, from its stored rows and their arrival times.

    A decision is taken at its arrangement's present, in the state the events that had *arrived* by then make:
    an event that arrived after it, stamped before it (a late event), is in the log before the decision but
    was not in its context. The reported rows (those with an ``arrived_at``) are replayed in arrival order,
    each after catching the ledger up to its booking day, as the server applied them; a late arrival makes the
    replay start again from what had arrived, in event-time order (as :mod:`serving.late_events` re-derived
    it); each decision's context is the one its replay gives it. Derived rows are derived again.

    Args:
        template: A replay whose calendar covers the rows (:meth:`regsim.replay.LogReplay.blank` is used).
        rows: The arrangement's stored events (every column and ``arrived_at``), in log order.
        epoch: The calendar date of time 0.

    Returns:
        decision id -> its context (one row), for every decision among ``rows``.
    """
    reported = [(k, r) for k, r in enumerate(rows) if r["arrived_at"] is not None]
    if not reported:
        return {}
    aid = int(reported[0][1]["arrangement_id"])
    arrived: list[tuple[int, Mapping[str, Any]]] = []
    replay: LogReplay | None = None
    latest = -math.inf
    out: dict[int, ContextBatch] = {}
    for k, r in sorted(reported, key=lambda kr: (float(kr[1]["arrived_at"]), kr[0])):
        arrived.append((k, r))
        context: ContextBatch | None = None
        t = float(r["time"])
        if replay is None or t < latest:  # (a late arrival: what had arrived, in event-time order)
            replay = template.blank([aid])
            for _, e in sorted(arrived, key=lambda ke: (float(ke[1]["time"]), ke[0])):
                fed = _feed_one(replay, e, epoch)
                context = fed if e is r else context
        else:
            context = _feed_one(replay, r, epoch)
        latest = max(latest, t)
        if r["event"] == "decision" and context is not None:
            out[int(r["decision_id"])] = context
    return out


def _feed_one(replay: LogReplay, row: Mapping[str, Any], epoch: dt.date) -> ContextBatch | None:
    """Apply one reported row to a one-arrangement replay, as the server did; a decision's context."""
    event = EventType[str(row["event"]).upper()]
    if event != EventType.ARRANGEMENT_CREATED:
        replay.ledger.catch_up(np.array([0], dtype=np.int64), morning_booking_day(event, float(row["time"])))
    return replay.feed(events_table([row], epoch), contexts=event == EventType.DECISION)
