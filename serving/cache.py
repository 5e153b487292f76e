"""The write-through replay cache: each arrangement's replayed state, kept in memory between requests.

Rebuilding an arrangement's state means replaying all of its events through the ledger
(:class:`regsim.replay.LogReplay`). Doing that from the store on every request is correct but costs a query and
a replay per request, growing with the arrangement's history. The cache keeps the replayed state (the ledger's:
plan, observable history, messages, bookkeeping day) and the ``arrangements`` row of every arrangement the server
has touched:

* **The store stays the source of truth.** An arrangement the cache does not hold is loaded from the store
  (its row and its events, replayed by the same code) the first time a request needs it, so a fresh process,
  a restart after a crash and a warm cache give the same state.
* **Write-through, after the commit.** A request works on a :class:`Workspace`, an independent copy of the
  arrangements it touches; the cache takes the workspace's state only once the transaction has committed
  (:meth:`ReplayCache.commit`). A failed or rolled-back request leaves the cache as it was.
* **Or in place, for decisions.** A group of single decisions (the hot path) works on the cache's own state
  (:meth:`ReplayCache.in_place`): copying its arrangements out and merging them back cost about as much as
  deciding them. A refused decision point is put back from a copy of what its bookkeeping could change, taken
  before (:meth:`Workspace.snapshot`); a transaction that fails after working in place has changed the cache,
  so the writer forgets the cache (:meth:`ReplayCache.clear`) and it is reloaded from the store as needed.
* **One writer process per store.** The cache is only right if no other process writes the store; the server
  takes a lease on the store at start-up (:mod:`serving.lease`) and refuses to write once another process has
  taken it over.

A replayed log knows a pending message by the decision that scheduled it, not by the id the server gave it: those
ids are read from the ``messages`` table when an arrangement is loaded. Memory grows with the number of
arrangements touched (about 1 KB each, and their messages); nothing is evicted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from regsim.arrangement import ArrangementStatus
from regsim.config import WorldConfig
from regsim.replay import LogReplay
from serving import db, schemas
from serving.store import load_events
from serving.store_rows import rows_of

__all__ = ["ArrangementInfo", "ReplayCache", "Workspace", "load_workspace"]


@dataclass
class ArrangementInfo:
    """An ``arrangements`` row: the plan as agreed, the prior history, the status and the latest event time."""

    arrangement_id: int
    debt_eur: float
    n_installments: int
    due_day: int
    created_time: float
    prior_payments: int
    prior_late_share: float
    prior_pay_dom: int
    status: str
    last_time: float

    def clone(self) -> ArrangementInfo:
        """An independent copy (cheaper than :func:`copy.copy`; a workspace takes one per arrangement)."""
        out = object.__new__(ArrangementInfo)
        out.__dict__.update(self.__dict__)
        return out

    @classmethod
    def from_row(cls, row: sa.Row[object]) -> ArrangementInfo:
        """From a row of :data:`serving.db.arrangements`."""
        m = row._mapping
        return cls(
            arrangement_id=int(m["arrangement_id"]),
            debt_eur=float(m["debt_eur"]),
            n_installments=int(m["n_installments"]),
            due_day=int(m["due_day"]),
            created_time=float(m["created_time"]),
            prior_payments=int(m["prior_payments"]),
            prior_late_share=float(m["prior_late_share"]),
            prior_pay_dom=int(m["prior_pay_dom"]),
            status=str(m["status"]),
            last_time=float(m["last_time"]),
        )


@dataclass
class Workspace:
    """The state of the arrangements one transaction touches: a replay and their rows (``None``: unregistered).

    A workspace is a copy: what a request changes in it reaches the cache only through
    :meth:`ReplayCache.commit`.
    """

    replay: LogReplay
    info: dict[int, ArrangementInfo | None]
    #: The cache's own state (:meth:`ReplayCache.in_place`), not a copy: nothing to take at the commit.
    in_place: bool = False

    def __post_init__(self) -> None:
        rows_of(self.replay)  # what its ledger writes becomes store rows (serving.store_rows)

    def status_of(self, arrangement_id: int) -> str:
        """An arrangement's status, as its ledger has it."""
        return _STATUS_NAMES[int(self.replay.ledger.status[self.replay.row[arrangement_id]])]

    def snapshot(self, ids: Iterable[int]) -> Workspace:
        """A copy of some arrangements' state, to :meth:`restore` if a request on them is refused midway."""
        wanted = list(dict.fromkeys(int(a) for a in ids))
        return Workspace(self.replay.subset(wanted), {a: _clone(self.info.get(a)) for a in wanted})

    def restore(self, snap: Workspace) -> None:
        """Put back the state a :meth:`snapshot` took."""
        self.replay.merge(snap.replay)
        # (in place, ``info`` is the cache's: it holds registered arrangements only)
        self.info.update({a: i for a, i in snap.info.items() if i is not None} if self.in_place else snap.info)


_STATUS_NAMES = tuple(s.name.lower() for s in ArrangementStatus)


def _clone(info: ArrangementInfo | None) -> ArrangementInfo | None:
    return None if info is None else info.clone()


def _horizon_days() -> int:
    # The calendar covers every time a request may carry, so one calendar serves every arrangement.
    return int(schemas.MAX_TIME_DAYS) + 1


def load_workspace(conn: sa.Connection, config: WorldConfig, ids: Sequence[int], template: LogReplay) -> Workspace:
    """The state of some arrangements rebuilt from the store alone (rows and events, replayed in log order)."""
    wanted = sorted({int(a) for a in ids})
    info: dict[int, ArrangementInfo | None] = dict.fromkeys(wanted)
    for k in range(0, len(wanted), 500):
        stmt = sa.select(db.arrangements).where(db.arrangements.c.arrangement_id.in_(wanted[k : k + 500]))
        for row in conn.execute(stmt):
            info[int(row.arrangement_id)] = ArrangementInfo.from_row(row)
    replay = template.blank(wanted)
    known = [a for a, i in info.items() if i is not None]
    if known:
        replay.feed(load_events(conn, known, config.simulation.start_date), contexts=False)
        _pending_message_ids(conn, replay, known)
    return Workspace(replay, info)


def _pending_message_ids(conn: sa.Connection, replay: LogReplay, ids: Sequence[int]) -> None:
    """Give the replayed pending messages the ids the server gave them (a log names a message only once sent)."""
    book = replay.ledger.messages
    by_decision = {int(d): k for k, d in enumerate(book.decision[: book.n].tolist())}
    for k in range(0, len(ids), 500):
        stmt = sa.select(db.messages.c.message_id, db.messages.c.decision_id).where(
            db.messages.c.arrangement_id.in_(list(ids[k : k + 500])), db.messages.c.state == "pending"
        )
        for message_id, decision_id in conn.execute(stmt):
            position = by_decision.get(int(decision_id))
            if position is not None:
                book.message_id[position] = int(message_id)


class ReplayCache:
    """Replayed state of every arrangement the server has touched (see the module docstring).

    Args:
        config: The world config (rules, decision options, calendar start).
    """

    def __init__(self, config: WorldConfig) -> None:
        self.config = config
        self.epoch: dt.date = config.simulation.start_date
        self.replay = LogReplay(config, [], _horizon_days())
        self.info: dict[int, ArrangementInfo | None] = {}

    def __len__(self) -> int:
        return len(self.info)

    def workspace(self, conn: sa.Connection, ids: Iterable[int]) -> Workspace:
        """A copy of some arrangements' state; those not cached yet are loaded from the store first.

        Unregistered arrangements are in the workspace with ``info`` ``None`` (a registration fills them in).
        """
        wanted = list(dict.fromkeys(int(a) for a in ids))
        missing = [a for a in wanted if a not in self.info]
        ws = Workspace(self.replay.subset(wanted), {a: _clone(self.info.get(a)) for a in wanted})
        if missing:
            loaded = load_workspace(conn, self.config, missing, self.replay)
            ws.replay.merge(loaded.replay)
            ws.info.update(loaded.info)
        return ws

    def in_place(self, conn: sa.Connection, ids: Iterable[int]) -> Workspace:
        """The cache's own state, to work on in place (no copy), with these arrangements loaded into it first.

        For requests that change only arrangements already registered (decisions): an unregistered one stays
        out of the cache (``info`` has no entry for it; a request on it is refused before changing anything).
        The caller restores what a refused request changed (from a :meth:`Workspace.snapshot` taken before it)
        and, if the transaction fails, calls :meth:`clear`: what it changed here is not in the store.
        """
        missing = [a for a in dict.fromkeys(int(a) for a in ids) if a not in self.info]
        if missing:
            loaded = load_workspace(conn, self.config, missing, self.replay)
            registered = [a for a, i in loaded.info.items() if i is not None]
            if registered:
                # (the store's committed state: every arrangement a group in flight changed is in the cache)
                keep = loaded.replay if len(registered) == len(loaded.info) else loaded.replay.subset(registered)
                self.replay.merge(keep)
                self.info.update({a: loaded.info[a] for a in registered})
        return Workspace(self.replay, self.info, in_place=True)

    def commit(self, ws: Workspace) -> None:
        """Take a workspace's state (call only after its transaction committed)."""
        if ws.in_place:
            return  # (its changes are here already)
        registered = {a: i for a, i in ws.info.items() if i is not None}
        if not registered:
            return
        keep = ws.replay if len(registered) == len(ws.info) else ws.replay.subset(list(registered))
        self.replay.merge(keep)
        self.info.update(registered)

    def clear(self) -> None:
        """Forget everything (the next request reloads from the store)."""
        self.replay = LogReplay(self.config, [], _horizon_days())
        self.info.clear()
