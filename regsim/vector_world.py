"""Many one-arrangement worlds simulated as one: rows with their own clocks (the vector env's engine).

A :class:`VectorWorld` holds ``n`` rows, each an independent arrangement that behaves exactly as the lone
arrangement of a one-arrangement :class:`~regsim.world.World` (what ``regsim/Arrangement-v0`` runs) with the
same debtor. The dynamics are the world's own: the day of :mod:`regsim.engine` (the world's ``_begin_day``,
payment draws, events, ``_end_day``) runs on a subset of rows, each row reading its own day (the ``_day_of``
hook), and every random draw is keyed by that local day. What differs is only the clock:

* **Days.** Each row has a local day. A *tick* gives every running row its next day at once (one vectorised
  call of each day method over the rows, whatever their local days). A row that reaches a decision point
  freezes there (its clock stops) until its decision is submitted; the others go on. Stretches of quiet days
  run in one call (:mod:`regsim.quiet_days`; ``skip_quiet_days=False`` runs every day).
* **Events within a day** (messages sent, delivered, noticed, opened; calls connected; letters posted) are
  kept on each row's local time in :class:`regsim.engine.EventQueue`, in SimPy's order (time, then creation),
  exactly as the one-arrangement world's SimPy environment holds them. The day process's timeouts (morning,
  evening) are the moments of :mod:`regsim.engine`, computed with SimPy's arithmetic, and take their place in
  the creation order at the moment the day process would have created them. The events of many rows run
  together, one vectorised call per kind and round; rows without pending events cost nothing.
* **Self-service** (mechanism 10, when ``self_service.enabled``): a menu point comes up inside a row's events
  (a reminder taken in), as in the world. With the default menus it is answered at once (the world's
  :func:`regsim.menu.default_menu`); with ``external_menus=True`` the row freezes mid-event
  (:attr:`Phase.MENU`) until :meth:`VectorWorld.answer_menus`, then its day goes on exactly where it stopped.
  Custom cases wait for the row's own collectors (their events are queued under ``-1 - case``: not messages).
* **Shared resources.** Rows are independent episodes: each row has its own collectors, robocall lines and
  print room (:class:`regsim.capacity.DedicatedCapacity`, as a one-arrangement world has), so a lone debtor
  never queues behind another slot.

Only what the Gymnasium adapter needs is kept per step: the events that make up a step's outcome
(:data:`regsim.rewards.OUTCOME_EVENTS`, tagged with their rows), not the full event log.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from regsim import engine
from regsim.arrangement import ArrangementStatus
from regsim.behaviour import DebtorState
from regsim.clock import Day, Time
from regsim.config import WorldConfig
from regsim.context import ContextColumns
from regsim.decision import ContextBatch, DecisionBatch
from regsim.engine import Action, EventQueue, distinct_rank
from regsim.eventlog import EventType
from regsim.menu import MenuBatch, MenuDecisionBatch
from regsim.population import Population, draw_population
from regsim.quiet_days import skip_quiet_days
from regsim.rewards import OUTCOME_EVENTS, EventChunk
from regsim.self_service import SelfServiceDesk
from regsim.world import World

__all__ = ["Phase", "VectorWorld"]

_ENDED = np.array(
    [
        s in (ArrangementStatus.COMPLETED, ArrangementStatus.BROKEN, ArrangementStatus.REFERRED)
        for s in ArrangementStatus
    ]
)
_COMPACT_MIN = 1 << 16  # messages kept before the book is first compacted
#: Self-service events kept beside the outcome events when self-service is on (a menu env's reward reads them).
SELF_SERVICE_EVENTS = frozenset(
    {EventType.MENU_SHOWN, EventType.MENU_CHOICE, EventType.CONCESSION, EventType.CASE_RESOLVED}
)
# Where a row's events stopped at a menu point: what of its day follows them once the menu is answered.
_AFTER_WAKE, _AFTER_DECISION_POINT, _AFTER_EVENING = 0, 1, 2


class Phase:
    """Where a row is in its episode."""

    RUNNING = 0
    """Before the morning of its local day."""
    DECIDING = 1
    """Frozen at a decision point, waiting for :meth:`VectorWorld.answer`."""
    DONE = 2
    """The arrangement ended or reached the horizon (the episode is over)."""
    MENU = 3
    """Frozen at a menu point mid-event (``external_menus``), waiting for :meth:`VectorWorld.answer_menus`."""


class _RowDesk(SelfServiceDesk):
    """The self-service desk of a vector world: menus asked from outside freeze their rows."""

    world: VectorWorld

    def hold(
        self, batch: MenuBatch, rows: NDArray[np.int64], t: NDArray[np.float64], owed: NDArray[np.float64]
    ) -> None:
        self.world._hold_menus(batch, rows, t, owed)


class VectorWorld(World):
    """``n`` independent arrangements, each with its own clock, simulated together.

    Args:
        config: The world.
        n: Number of rows (slots).
        months: Horizon of each arrangement in months of 30 days (default: the config's).
        seed: The population's seed (default: the config's); a row with arrangement id ``k`` is debtor ``k`` of
            that population.
        skip_quiet_days: Run stretches of quiet days in one call (:mod:`regsim.quiet_days`); False runs every
            day in full. The results are the same.
        external_menus: With self-service on, menu points freeze their rows until :meth:`answer_menus`
            (default ``False``: the default menu, answered at once as in a policy-less world's run).
    """

    def __init__(
        self,
        config: WorldConfig,
        n: int,
        *,
        months: int | None = None,
        seed: int | None = None,
        skip_quiet_days: bool = True,
        external_menus: bool = False,
    ) -> None:
        super().__init__(
            config,
            None,
            arrangements=n,
            months=months,
            seed=seed,
            policy_name="env",
            policy_version="0",
            sample_queues=False,
            dedicated_capacity=True,
            day_process=False,  # the rows' clocks are emulated (see the module); no SimPy process runs
        )
        self.skip_quiet_days = bool(skip_quiet_days)
        self.local_day = np.zeros(n, dtype=np.int64)
        self.clock = np.zeros(n)  # each row's day-process time (morning or evening of its local day)
        self.phase = np.full(n, Phase.DONE, dtype=np.int8)
        self.next_event = np.full(n, np.inf)  # time of each row's next pending event (inf: none)
        # The pending events of all rows, and each row's "now" while its events run.
        self._queue = EventQueue()
        self._now_of = np.zeros(n)
        self._in_events = False
        self._compact_at = _COMPACT_MIN
        self._apply_rows = np.zeros(0, dtype=np.int64)
        #: Decision points of the frozen rows: (rows, their contexts), one entry per batch (merged after advance()).
        self.frozen: list[tuple[NDArray[np.int64], ContextBatch]] = []
        # Decision points reached during :meth:`advance` (rows, kinds, installments), before their contexts.
        self._freezing: list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]] = []
        #: Outcome events since the last :meth:`take_outcome_events`: (event, rows, columns).
        self.outcome_events: list[EventChunk] = []
        #: Menu points of the rows frozen at one (``external_menus``): (rows, menus, times, amounts owed).
        self.menus: list[tuple[NDArray[np.int64], MenuBatch, NDArray[np.float64], NDArray[np.float64]]] = []
        self._resume_stage = np.zeros(n, dtype=np.int8)
        self._resume_until = np.zeros(n)
        self._resume_made = np.zeros(n, dtype=np.int64)
        self._kept = OUTCOME_EVENTS
        if self.desk is not None:  # its menus freeze rows when asked from outside
            self.desk = _RowDesk(self)
            self.desk.external = bool(external_menus)
            self._build_engine(sample_queues=False, dedicated_capacity=True)
            self._kept = OUTCOME_EVENTS | SELF_SERVICE_EVENTS

    def __getstate__(self) -> dict[str, Any]:
        # Pickling keeps the rows mid-episode (a training checkpoint resumes them exactly). SimPy's environment
        # does not pickle (it binds its event classes to the instance), and here it is idle (the clocks are
        # emulated), so it and the capacity built on it are left out and rebuilt on loading.
        state = self.__dict__.copy()
        del state["env"], state["capacity"], state["dedicated"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._build_engine(sample_queues=False, dedicated_capacity=True)

    # ======================================================================================================
    # Episodes
    # ======================================================================================================
    def reset_rows(self, rows: NDArray[np.int64], arrangement_ids: NDArray[np.int64]) -> None:
        """Start new arrangements (debtors ``arrangement_ids`` of the population) in these rows, at day 0."""
        rows = np.asarray(rows, dtype=np.int64)
        gid = np.asarray(arrangement_ids, dtype=np.int64)
        if not len(rows):
            return
        if self.frozen and (self.phase[rows] == Phase.DECIDING).any():  # forget their decision points
            gone = np.zeros(self.n, dtype=bool)
            gone[rows] = True
            kept = []
            for group, batch in self.frozen:
                stay = ~gone[group]
                if stay.all():
                    kept.append((group, batch))
                elif stay.any():
                    kept.append((group[stay], batch.take(np.flatnonzero(stay))))
            self.frozen = kept
        if self.menus and (self.phase[rows] == Phase.MENU).any():
            self.menus, _ = self._menus_of(rows)
        if self.desk is not None:
            self.desk.last_visit[rows] = -np.inf
            self.desk.case_pending[rows] = False
        self.gid[rows] = gid
        pop = draw_population(self.config, gid, self.streams)
        for f in fields(Population):
            getattr(self.pop, f.name)[rows] = getattr(pop, f.name)
        state = DebtorState.initial(pop, self.streams, gid)
        for f in fields(DebtorState):
            getattr(self.state, f.name)[rows] = getattr(state, f.name)
        self.ledger.reset(rows)  # (the messages of the rows' previous arrangements leave the pending pool)
        self.pay_time[rows] = np.inf
        self.pay_partial[rows] = False
        self.thank[rows] = False
        self.thank_installment[rows] = -1
        self.local_day[rows] = 0
        self.clock[rows] = 0.0
        self.phase[rows] = Phase.RUNNING
        self.next_event[rows] = np.inf
        self._now_of[rows] = 0.0
        gone = np.zeros(self.n, dtype=bool)
        gone[rows] = True
        self._queue.drop_rows(gone)  # events of the rows' previous arrangements are dropped with them
        if self.ledger.messages.n >= self._compact_at:
            self._compact_messages()

    def _compact_messages(self) -> None:
        """Forget the messages no pending event or cancellation can reach (the book would grow forever)."""
        m = self.ledger.messages
        queued = self._queue.messages()
        cases = queued[queued < 0]  # (custom cases, -1 - case: not messages)
        live = np.unique(np.concatenate([m.pending_pool, queued[queued >= 0]]))
        new_id = m.compact(live)
        if len(cases):  # a case's code indexes from the end: appended codes map each one onto itself
            k = int(-cases.min())
            new_id = np.concatenate([new_id, np.arange(-k, 0, dtype=new_id.dtype)])
        self._queue.renumber(new_id)  # the same order: only the positions change
        self._compact_at = max(_COMPACT_MIN, 4 * len(live))

    # ======================================================================================================
    # Driving the rows
    # ======================================================================================================
    def advance(self) -> None:
        """Run every running row to its next decision point (it freezes) or to its episode's end."""
        running = np.flatnonzero(self.phase == Phase.RUNNING)
        while len(running):
            if self.skip_quiet_days:
                skip_quiet_days(self, running)
            going = self._morning(running)
            self._draw_payments(going)
            self._evening(going)
            running = going[self.phase[going] == Phase.RUNNING]
        if self._freezing:  # a frozen row's state stays as it froze: its contexts are built now, in one batch
            ids, kinds, installments = (np.concatenate(part) for part in zip(*self._freezing, strict=True))
            self._freezing = []
            self.frozen.append((ids, self._contexts(ids, kinds, installments)))
        if len(self.frozen) > 1:  # one batch of all waiting decision points, rather than one per tick
            self.frozen = [
                (np.concatenate([g for g, _ in self.frozen]), ContextBatch.concat([b for _, b in self.frozen]))
            ]

    def next_decision(self) -> ContextBatch | None:
        """Not for a vector world: its rows are driven with :meth:`advance` and :meth:`answer`."""
        raise RuntimeError("a VectorWorld is driven with advance() and answer()")

    def answer(self, rows: NDArray[np.int64], actions: NDArray[np.int64]) -> None:
        """Answer the decision points of these frozen rows (one action per row) and let them go on.

        The rules are checked for every row before anything is applied.

        Raises:
            RuleViolation: A decision breaks a rule; nothing is applied and the rows stay frozen.
        """
        todo, self.frozen = self._checked(rows, actions)
        for group, batch, decisions in todo:
            self._apply_rows = group
            self._apply(batch, decisions)
        self._draw_payments(rows)
        self._evening(rows)

    def check(self, rows: NDArray[np.int64], actions: NDArray[np.int64]) -> None:
        """Check the answers :meth:`answer` would be given, changing nothing.

        Raises:
            RuleViolation: A decision breaks a rule.
        """
        self._checked(rows, actions)

    def _checked(
        self, rows: NDArray[np.int64], actions: NDArray[np.int64]
    ) -> tuple[
        list[tuple[NDArray[np.int64], ContextBatch, DecisionBatch]], list[tuple[NDArray[np.int64], ContextBatch]]
    ]:
        """The answered groups with their checked decisions, and the frozen groups left waiting."""
        rows = np.asarray(rows, dtype=np.int64)
        if np.any(self.phase[rows] != Phase.DECIDING):
            raise RuntimeError("answer(): every row must be frozen at a decision point")
        position = np.full(self.n, -1, dtype=np.int64)
        position[rows] = np.arange(len(rows))
        todo: list[tuple[NDArray[np.int64], ContextBatch, DecisionBatch]] = []
        keep: list[tuple[NDArray[np.int64], ContextBatch]] = []
        for group, batch in self.frozen:
            at = position[group]
            chosen = at >= 0
            if not chosen.all():
                if chosen.any():
                    keep.append((group[~chosen], batch.take(np.flatnonzero(~chosen))))
                    group, batch = group[chosen], batch.take(np.flatnonzero(chosen))
                else:
                    keep.append((group, batch))
                    continue
            decisions = DecisionBatch(actions[at[chosen]], np.full(len(group), np.nan))
            decisions = self.rules.normalise(batch, decisions)
            self.rules.check(batch, decisions)
            todo.append((group, batch, decisions))
        return todo, keep

    # -- menu points (self-service with external_menus) ----------------------------------------------------------
    def _hold_menus(
        self, batch: MenuBatch, rows: NDArray[np.int64], t: NDArray[np.float64], owed: NDArray[np.float64]
    ) -> None:
        """The desk's menu points asked from outside: their rows freeze mid-event (see :meth:`_run_events`)."""
        assert self._in_events, "a menu point comes up inside a row's events"
        self.phase[rows] = Phase.MENU
        self.menus.append((rows, batch, t, owed))

    def menu_points(self) -> tuple[NDArray[np.int64], MenuBatch] | None:
        """The rows frozen at a menu point and their menus, in one batch (``None``: none)."""
        if not self.menus:
            return None
        if len(self.menus) > 1:
            self.menus = [
                (
                    np.concatenate([m[0] for m in self.menus]),
                    _concat_menus([m[1] for m in self.menus]),
                    np.concatenate([m[2] for m in self.menus]),
                    np.concatenate([m[3] for m in self.menus]),
                )
            ]
        return self.menus[0][0], self.menus[0][1]

    def _menus_of(
        self, rows: NDArray[np.int64]
    ) -> tuple[
        list[tuple[NDArray[np.int64], MenuBatch, NDArray[np.float64], NDArray[np.float64]]],
        list[tuple[NDArray[np.int64], MenuBatch, NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]],
    ]:
        """The menu points left when those of ``rows`` are taken, and those taken (with each one's place in
        ``rows``)."""
        position = np.full(self.n, -1, dtype=np.int64)
        position[rows] = np.arange(len(rows))
        kept, taken = [], []
        for group, batch, t, owed in self.menus:
            at = position[group]
            mine = at >= 0
            if (~mine).any():
                k = np.flatnonzero(~mine)
                kept.append((group[k], _take_menus(batch, k), t[k], owed[k]))
            if mine.any():
                k = np.flatnonzero(mine)
                taken.append((group[k], _take_menus(batch, k), t[k], owed[k], at[k]))
        return kept, taken

    def answer_menus(self, rows: NDArray[np.int64], levels: NDArray[np.int64]) -> None:
        """Answer the menu points of these frozen rows (one menu of slot levels per row); their days go on.

        Each row runs on to where it would have been had the menu been answered at once: the rest of its
        events up to the day process's next moment, then what of its day follows (the morning, the decision
        point, or the evening); a row may freeze again (a decision point, another menu point) or end.

        Raises:
            RuleViolation: A menu shows a capped level; nothing is applied and the rows stay frozen.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return
        levels = np.asarray(levels, dtype=np.int64).reshape(len(rows), -1)
        if np.any(self.phase[rows] != Phase.MENU):
            raise RuntimeError("answer_menus(): every row must be frozen at a menu point")
        assert self.desk is not None
        kept, taken = self._menus_of(rows)
        answers = [MenuDecisionBatch(levels[at], np.full(len(at), np.nan)) for *_, at in taken]
        for (_, batch, *_), menus in zip(taken, answers, strict=True):
            self.desk.rules.check(batch, menus)
        self.menus = kept
        self._in_events = True  # (the choice happens at the menu point's moment, inside the row's events)
        try:
            for (group, batch, t, owed, _), menus in zip(taken, answers, strict=True):
                self.desk.carry_out(batch, menus, group, t, owed)
        finally:
            self._in_events = False
        self.phase[rows] = Phase.RUNNING
        for stage in (_AFTER_WAKE, _AFTER_DECISION_POINT, _AFTER_EVENING):
            sub = rows[self._resume_stage[rows] == stage]
            if not len(sub):
                continue
            until = self._resume_until[sub]
            self._run_events(sub, until, stage, self._resume_made[sub])
            go = self.phase[sub] != Phase.MENU
            sub, until = sub[go], until[go]
            if stage == _AFTER_WAKE:
                self.clock[sub] = until
                going = self._morning_rest(sub)
                self._draw_payments(going)
                self._evening(going)
            elif stage == _AFTER_DECISION_POINT:
                self.phase[sub] = Phase.DECIDING  # (its decision point is among the frozen ones)
            else:
                self._evening_rest(sub, until)

    def _resolve_cases(self, codes: NDArray[np.int64], t: Time) -> None:
        """Staff resolve the custom cases of these queued codes (``-1 - case``)."""
        assert self.desk is not None
        self.desk.resolve(-1 - codes, t)

    def take_outcome_events(self) -> list[EventChunk]:
        """The outcome events logged since the last call (and forget them)."""
        out, self.outcome_events = self.outcome_events, []
        return out

    # -- one day of a set of rows -----------------------------------------------------------------------------
    def _morning(self, rows: NDArray[np.int64]) -> NDArray[np.int64]:
        """The morning of these running rows; freezes those with a decision point, returns the others."""
        clock, day = self.clock[rows], self.local_day[rows]
        # The day process sleeps until the morning only when it is not already there (day 0 starts at once).
        wake = np.where(clock < day, engine.after(clock, engine.until_morning(clock, day)), clock)
        self._run_events(rows, wake, _AFTER_WAKE)
        if self.menus:
            keep = self.phase[rows] != Phase.MENU
            rows, wake = rows[keep], wake[keep]
        self.clock[rows] = wake
        return self._morning_rest(rows)

    def _morning_rest(self, rows: NDArray[np.int64]) -> NDArray[np.int64]:
        """The morning of these rows after the events before it: the day's start and its decision points."""
        ids, kinds, installments = self._begin_day(rows)
        if not len(ids):
            return rows
        # A decision point: what was due at this moment runs before the world waits for the answer.
        self._run_events(ids, self.clock[ids], _AFTER_DECISION_POINT)
        order = np.argsort(ids, kind="stable")
        self._freezing.append((ids[order], kinds[order], installments[order]))
        self.phase[ids[self.phase[ids] != Phase.MENU]] = Phase.DECIDING  # (one at a menu point: after it)
        return rows[self.phase[rows] == Phase.RUNNING]

    def _evening(self, rows: NDArray[np.int64]) -> None:
        """The rest of these rows' day: its events, the evening's payments, then the next day or the end."""
        if not len(rows):
            return
        clock, day = self.clock[rows], self.local_day[rows]
        evening = engine.after(clock, engine.until_evening(clock, day))
        self._run_events(rows, evening, _AFTER_EVENING)
        if self.menus:
            keep = self.phase[rows] != Phase.MENU
            rows, evening = rows[keep], evening[keep]
        self._evening_rest(rows, evening)

    def _evening_rest(self, rows: NDArray[np.int64], evening: NDArray[np.float64]) -> None:
        """These rows' evening after the day's events: its payments, then the next day or the end."""
        day = self.local_day[rows]
        self.clock[rows] = evening
        self._end_day(rows, evening)
        ended = _ENDED[self.ledger.status[rows]] | (day + 1 >= self.days)
        self.phase[rows[ended]] = Phase.DONE
        self.phase[rows[~ended]] = Phase.RUNNING
        self.local_day[rows[~ended]] += 1

    def _run_events(
        self,
        rows: NDArray[np.int64],
        until: NDArray[np.float64],
        stage: int,
        made: NDArray[np.int64] | None = None,
    ) -> None:
        """Run each row's pending events that come before the day process's next moment ``until``.

        In the one-arrangement world the day process sleeps on a SimPy timeout created at that moment, so
        events already pending come first, ties included, and events created later come after: the bound
        takes the next creation number (``made``: each row's, when a run stopped at a menu point resumes).
        A row whose event brings a menu point asked from outside stops there (:attr:`Phase.MENU`): what of its
        day comes after the events (``stage``) waits with its bound until :meth:`answer_menus`.

        Events run in rounds: each round takes the next event of every row that has one (a row's events keep
        their order), and runs the events of all rows in the round as one call per kind (messages sent,
        delivered, noticed, opened, calls connected, letters posted), with each message's own time.
        """
        due = self.next_event[rows] <= until
        if not due.any():
            return
        rows, until = rows[due], until[due]
        q = self._queue
        bound_made = np.zeros(self.n, dtype=np.int64)
        bound_made[rows] = q.new_numbers(1) if made is None else made[due]  # the day process's timeout
        bound = np.full(self.n, -np.inf)
        bound[rows] = until
        # Rows in a round go in the order given (so do their messages in each call), as the heaps did.
        rank = np.zeros(self.n, dtype=np.int64)
        rank[rows] = np.arange(len(rows))
        active = np.zeros(self.n, dtype=bool)
        active[rows] = True
        left = len(rows)
        self._in_events = True
        try:
            while left:
                heads = q.heads(active, rank)
                if heads is None:  # no active row has an event left
                    done = np.flatnonzero(active)
                    self._now_of[done] = bound[done]
                    self.next_event[done] = np.inf
                    break
                hrow, htime, hmade, entries, group = heads
                limit = bound[hrow]
                ready = (htime < limit) | ((htime == limit) & (hmade < bound_made[hrow]))
                # Rows done: no event left, or the next one comes after the bound (the day process resumes).
                finished = hrow[~ready]
                self.next_event[finished] = htime[~ready]
                active[finished] = False
                empty = active.copy()
                empty[hrow] = False
                done = np.flatnonzero(empty)
                self.next_event[done] = np.inf
                active[done] = False
                stopped = np.concatenate([finished, done])
                self._now_of[stopped] = bound[stopped]
                left -= len(stopped)
                if not ready.any():
                    break
                # Each ready row runs its next event: the entries with its head's time and creation number.
                take = ready[group] & (q.time[entries] == htime[group]) & (q.made[entries] == hmade[group])
                chosen = entries[take]
                mids, times, kinds = q.mid[chosen], q.time[chosen], q.kind[chosen]
                q.remove(chosen)
                self._now_of[hrow[ready]] = htime[ready]
                first_kinds = kinds[np.r_[True, group[take][1:] != group[take][:-1]]]
                for kind in dict.fromkeys(first_kinds.tolist()):  # actions in order of their first row
                    mine = kinds == kind
                    q.actions[kind](mids[mine], times[mine])
                if self.menus:  # rows now at a menu point stop; their events resume once it is answered
                    held = hrow[ready][self.phase[hrow[ready]] == Phase.MENU]
                    held = held[active[held]]
                    if len(held):
                        active[held] = False
                        left -= len(held)
                        self._resume_stage[held] = stage
                        self._resume_until[held] = bound[held]
                        self._resume_made[held] = bound_made[held]
                        self.next_event[held] = -np.inf  # (their next event is found when they resume)
        finally:
            self._in_events = False

    # ======================================================================================================
    # The clock hooks of World
    # ======================================================================================================
    def _day_of(self, ids: NDArray[np.int64] | None) -> Day:
        if ids is None:
            raise RuntimeError("a vector world has no shared day")
        return self.local_day[ids]

    def _time_at(self, ids: NDArray[np.int64]) -> Time:
        return self.local_day[ids].astype(np.float64)

    def _arrivals_on(self, rows: NDArray[np.int64] | None) -> NDArray[np.int64] | None:
        assert rows is not None
        arriving = rows[self.pop.arrival_day[rows] == self.local_day[rows]]
        return arriving if len(arriving) else None

    def _payment_day(self, times: NDArray[np.float64]) -> Day:
        return np.floor(times).astype(np.int64)

    def _rows_of(self, batch: ContextBatch) -> NDArray[np.int64]:
        return self._apply_rows

    def _at(self, t: float, action: Action, mids: NDArray[np.int64]) -> None:
        """Call ``action(mids, t)`` at local time ``t`` of each message's row (one event per row)."""
        self._at_each(np.full(len(mids), t), action, mids)

    def _at_each(self, times: NDArray[np.float64], action: Action, mids: NDArray[np.int64]) -> None:
        """Call ``action`` on each message at local time ``times[i]`` of its row: one event per row and distinct
        time, created in increasing order of time (as :meth:`World._at_each` creates them)."""
        if not len(mids):
            return
        if self.desk is not None and action == self.desk.resolve:  # custom cases, not messages
            rows = np.asarray(self.desk._case_row, dtype=np.int64)[mids]
            mids, action = -1 - mids, self._resolve_cases
        else:
            rows = self.ledger.messages.row[mids]
        # Decisions are applied at the row's morning; events are created at the time of the event running.
        now = self._now_of[rows] if self._in_events else self.clock[rows]
        when = engine.after(now, np.maximum(0.0, times - now))  # SimPy's arithmetic for a timeout
        if len(times) == 1:  # (often: one message's next event)
            made = np.array([self._queue.new_numbers(1)], dtype=np.int64)
        else:
            which, count = distinct_rank(times)
            made = self._queue.new_numbers(count) + which
        self._queue.push(when, made, rows, mids, action)
        if not self._in_events:  # (a row's events in progress update this when they are done)
            np.minimum.at(self.next_event, rows, when)

    def keeps(self, event: EventType) -> bool:
        return event in self._kept

    def record(self, event: EventType, t: Time, rows: NDArray[np.int64], **columns: Any) -> None:
        if event in self._kept and len(rows):
            self.outcome_events.append((event, np.asarray(rows), columns))


def _by_name(batch: MenuBatch) -> dict[str, NDArray[Any]]:
    return cast(dict[str, NDArray[Any]], batch.columns)


def _take_menus(batch: MenuBatch, k: NDArray[np.int64]) -> MenuBatch:
    """The menu points ``k`` of a batch."""
    columns = cast(ContextColumns, {name: v[k] for name, v in _by_name(batch).items()})
    return MenuBatch(
        batch.space,
        batch.menu_ids[k],
        columns,
        batch.concessions[k],
        batch.costs_waived[k],
        batch.mask[k],
        {name: f[k] for name, f in batch.forbidden.items()},
    )


def _concat_menus(batches: list[MenuBatch]) -> MenuBatch:
    """Menu points of several batches in one."""
    names = sorted({name for b in batches for name in b.forbidden})
    first = batches[0]
    return MenuBatch(
        first.space,
        np.concatenate([b.menu_ids for b in batches]),
        cast(ContextColumns, {n: np.concatenate([_by_name(b)[n] for b in batches]) for n in _by_name(first)}),
        np.concatenate([b.concessions for b in batches]),
        np.concatenate([b.costs_waived for b in batches]),
        np.concatenate([b.mask for b in batches]),
        {n: np.concatenate([b.forbidden.get(n, np.zeros_like(b.mask)) for b in batches]) for n in names},
    )
