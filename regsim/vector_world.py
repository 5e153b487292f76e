"""Many one-arrangement worlds simulated as one: rows with their own clocks (the vector env's engine).

A :class:`VectorWorld` holds ``n`` rows, each an independent arrangement that behaves exactly as the lone
arrangement of a one-arrangement :class:`~regsim.world.World` (what ``regsim/Arrangement-v0`` runs) with the
same debtor. The dynamics are the world's own: the day methods of :class:`~regsim.world.World` run on a subset
of rows, each row reading its own day (the ``_day_of`` hook), and every random draw is keyed by that local day.
What differs is only the clock:

* **Days.** Each row has a local day. A *tick* gives every running row its next day at once (one vectorised
  call of each day method over the rows, whatever their local days). A row that reaches a decision point
  freezes there (its clock stops) until its decision is submitted; the others go on.
* **Events within a day** (messages sent, delivered, noticed, opened; calls connected; letters posted) are
  kept on each row's local time, in SimPy's order (time, then creation), exactly as the one-arrangement
  world's SimPy environment holds them: one queue of columns for all rows (:class:`_EventQueue`, one entry per
  message of an event). The day process is not a SimPy process here: the
  world emulates its timeouts (morning at ``d``, evening at ``d + 1 - 1e-6``) with the same float arithmetic,
  and runs a row's pending events up to each of those moments in that order (the emulated timeout takes its
  place in the creation order at the moment the day process would have created it). The events of many rows
  run together, one vectorised call per kind and round; rows without pending events cost nothing.
* **Shared resources.** Rows are independent episodes: each row has its own collectors, robocall lines and
  print room (:class:`regsim.capacity.DedicatedCapacity`, as a one-arrangement world has), so a lone debtor
  never queues behind another slot.

Only what the Gymnasium adapter needs is kept per step: the events that make up a step's outcome
(:data:`OUTCOME_EVENTS`, tagged with their rows), not the full event log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from regsim import behaviour
from regsim.arrangement import ArrangementStatus, Schedules
from regsim.behaviour import DebtorState
from regsim.config import WorldConfig
from regsim.decision import ContextBatch, DecisionBatch
from regsim.eventlog import EventType
from regsim.history import ObservableHistory
from regsim.population import Population, draw_population
from regsim.random import Purpose
from regsim.world import MIN_PARTIAL_PAYMENT_EUR, PAY_TOLERANCE_EUR, Time, World

__all__ = ["OUTCOME_EVENTS", "Phase", "VectorWorld"]

#: Events that enter a step's outcome (:class:`envs.rewards.StepOutcome`); the only ones kept.
OUTCOME_EVENTS = frozenset(
    {
        EventType.PAYMENT,
        EventType.MESSAGE_SENT,
        EventType.INSTALLMENT_PAID,
        EventType.INSTALLMENT_MISSED,
        EventType.COMPLETED,
        EventType.BROKEN,
        EventType.REFERRED,
    }
)
_ENDED = np.array(
    [
        s in (ArrangementStatus.COMPLETED, ArrangementStatus.BROKEN, ArrangementStatus.REFERRED)
        for s in ArrangementStatus
    ]
)
_PENDING, _ACTIVE = int(ArrangementStatus.PENDING), int(ArrangementStatus.ACTIVE)  # plain ints (see regsim.world)
Action = Callable[[NDArray[np.int64], Time], None]
_COMPACT_MIN = 1 << 16  # messages kept before the store is first compacted
_FAR = np.iinfo(np.int64).max // 4  # a day no row reaches (no installment left to fall due or be missed)
_LOOK_AHEAD = 16  # most days of a pay window looked at at once for draws that cannot succeed
_LOOK_STAGES = (4, _LOOK_AHEAD)  # days looked at first, then for the rows with no eventful day among them
# A day's payment draw, and the draws that may refer an overdue row.
_DAY_DRAWS = (Purpose.ATTEND, Purpose.SHOCK_START, Purpose.REFERRAL)
_DRAW_MARGIN = 1e-9  # a uniform this close below the bound of the payment probability counts as a payment


def _evening_after(
    clock: NDArray[np.float64], first: NDArray[np.int64], last: NDArray[np.int64]
) -> NDArray[np.float64]:
    """The day process's clock at the evening of day ``last`` after full days ``first..last`` from ``clock``.

    Each day the emulated process wakes at ``clock + (day - clock)`` (when not already there) and ends the day at
    ``wake + (day + 1 - 1e-6 - wake)``, as :meth:`VectorWorld._morning` and :meth:`VectorWorld._evening` compute
    them. From a previous evening ``e`` (just under ``day``) both differences are exact (Sterbenz), so the wake
    is exactly ``day`` and the evening exactly ``day + 1 - 1e-6``: the clock after a run of days depends on the
    clock before it only through the first day (a test checks the identity over every day of a horizon).
    """
    prev = np.where(last > first, last - 1 + 1 - 1e-6, clock)  # the evening before ``last``
    wake = np.where(prev < last, prev + (last - prev), prev)
    return wake + (last + 1 - 1e-6 - wake)


def _distinct_rank(values: NDArray[np.float64]) -> tuple[NDArray[np.int64], int]:
    """Each value's rank among the distinct values (``np.unique(values, return_inverse=True)``'s inverse), and
    how many distinct values there are, at less overhead than ``np.unique`` on the few values of an event.

    ``values`` are non-empty and never NaN (times).
    """
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    step = np.empty(len(ordered), dtype=np.int64)
    step[0] = 0
    np.not_equal(ordered[1:], ordered[:-1], out=step[1:])  # (a new distinct value: 1)
    rank = np.cumsum(step)
    which = np.empty(len(ordered), dtype=np.int64)
    which[order] = rank
    return which, int(rank[-1]) + 1


class Phase:
    """Where a row is in its episode."""

    RUNNING = 0
    """Before the morning of its local day."""
    DECIDING = 1
    """Frozen at a decision point, waiting for :meth:`VectorWorld.answer`."""
    DONE = 2
    """The arrangement ended or reached the horizon (the episode is over)."""


class VectorWorld(World):
    """``n`` independent arrangements, each with its own clock, simulated together.

    Args:
        config: The world.
        n: Number of rows (slots).
        months: Horizon of each arrangement in months of 30 days (default: the config's).
        seed: The population's seed (default: the config's); a row with arrangement id ``k`` is debtor ``k`` of
            that population.
    """

    def __init__(self, config: WorldConfig, n: int, *, months: int | None = None, seed: int | None = None) -> None:
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
        self.local_day = np.zeros(n, dtype=np.int64)
        self.clock = np.zeros(n)  # each row's emulated day-process time (morning or evening of its local day)
        self.phase = np.full(n, Phase.DONE, dtype=np.int8)
        self._next_event = np.full(n, np.inf)  # time of each row's next pending event (inf: none)
        self._annoyance_decay = np.exp(-1.0 / config.population.fatigue.decay_days)  # a morning's factor
        # The pending events of all rows, and each row's "now" while its events run.
        self._queue = _EventQueue()
        self._now = np.zeros(n)
        self._in_events = False
        self._compact_at = _COMPACT_MIN
        self._apply_rows = np.zeros(0, dtype=np.int64)
        #: Decision points of the frozen rows: (rows, their contexts), one entry per batch (merged after advance()).
        self.frozen: list[tuple[NDArray[np.int64], ContextBatch]] = []
        # Decision points reached during :meth:`advance` (rows, kinds, installments), before their contexts.
        self._freezing: list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]] = []
        #: Outcome events since the last :meth:`take_outcome_events`: (event, rows, columns).
        self.outcome_events: list[tuple[EventType, NDArray[np.int64], dict[str, Any]]] = []

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
        self.gid[rows] = gid
        pop = draw_population(self.config, gid, self.streams)
        for f in fields(Population):
            getattr(self.pop, f.name)[rows] = getattr(pop, f.name)
        state = DebtorState.initial(pop, self.streams, gid)
        for f in fields(DebtorState):
            getattr(self.state, f.name)[rows] = getattr(state, f.name)
        fresh = Schedules(len(rows), self.sched.capacity, self.calendar, self.sched.grace_days)
        for name in ("due", "amount", "paid", "n", "first_open", "came_due", "miss_ptr", "due_dom", "balance"):
            getattr(self.sched, name)[rows] = getattr(fresh, name)
        history = ObservableHistory(len(rows))
        for name, value in vars(history).items():
            getattr(self.history, name)[rows] = value
        self.status[rows] = ArrangementStatus.PENDING
        self.pay_time[rows] = np.inf
        self.pay_partial[rows] = False
        self.thank[rows] = False
        self.thank_installment[rows] = -1
        self.last_letter_time[rows] = -np.inf
        self.end_time[rows] = np.nan
        self._time_of[rows] = 0.0
        # Messages of the rows' previous arrangements die with them (their events are dropped below).
        pool = self._pending_pool
        self._pending_pool = pool[~np.isin(self.msgs.debtor[pool], rows)]
        self.local_day[rows] = 0
        self.clock[rows] = 0.0
        self.phase[rows] = Phase.RUNNING
        self._next_event[rows] = np.inf
        self._now[rows] = 0.0
        gone = np.zeros(self.n, dtype=bool)
        gone[rows] = True
        self._queue.drop_rows(gone)  # events of the rows' previous arrangements are dropped with them
        if self.msgs.n >= self._compact_at:
            self._compact_messages()

    def _compact_messages(self) -> None:
        """Forget the messages no pending event or cancellation can reach (the store would grow forever)."""
        m = self.msgs
        live = np.unique(np.concatenate([self._pending_pool, self._queue.messages()]))
        new_id = np.full(m.n, -1, dtype=np.int64)
        new_id[live] = np.arange(len(live))
        for name in ("debtor", "channel", "kind", "installment", "decision", "hour", "state"):
            column = getattr(m, name)
            column[: len(live)] = column[live]
        m.n = len(live)
        self._pending_pool = new_id[self._pending_pool]
        self._queue.renumber(new_id)  # the same order: only the message numbers change
        self._compact_at = max(_COMPACT_MIN, 4 * len(live))

    # ======================================================================================================
    # Driving the rows
    # ======================================================================================================
    def advance(self) -> None:
        """Run every running row to its next decision point (it freezes) or to its episode's end."""
        running = np.flatnonzero(self.phase == Phase.RUNNING)
        while len(running):
            self._skip_quiet_days(running)
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

    def take_outcome_events(self) -> list[tuple[EventType, NDArray[np.int64], dict[str, Any]]]:
        """The outcome events logged since the last call (and forget them)."""
        out, self.outcome_events = self.outcome_events, []
        return out

    # -- quiet days ----------------------------------------------------------------------------------------------
    def _quiet_days(self, rows: NDArray[np.int64]) -> NDArray[np.int64]:
        """How many days, from each row's local day on, are *quiet*: days whose only effect is the morning's
        liquidity (:meth:`_liquidity`), whatever the draws.

        A day is quiet for a row when it has nothing else to do that day but bookkeeping that no one sees before
        the row's next decision point (the booking of an installment falling due, whose event the vector world
        does not keep, and the miss test of an installment already paid, which logs nothing; both are made for
        the whole stretch at its end: :meth:`_skip_quiet_days`): an arrangement not yet arrived (before its
        arrival day), or an active one with no unpaid installment missed, no second installment falling due, no
        pre-due or follow-up decision point, no payment set out for (outside the pay window no payment is drawn;
        inside it, or while something is overdue, a day whose draw cannot succeed: :meth:`_first_eventful_day`),
        no referral drawn (overdue and in a shock, or a shock that may start: days whose draws cannot refer are
        quiet, the same method), no thank-you pending, no payment planned and annoyance at or below the
        disengagement threshold (it only decays on a quiet day, so no disengagement
        is drawn); and not the horizon's last day. Pending events are checked day by day in
        :meth:`_skip_quiet_days` (with the emulated clock). The bounds are each row's first day that is not
        quiet; every one is exact or early, so a quiet day is never misjudged.
        """
        s, cfg = self.sched, self.config
        day = self.local_day[rows]
        status = self.status[rows]
        first = np.full(len(rows), self.days - 1, dtype=np.int64)  # the last day always runs in full
        pending = status == _PENDING
        first[pending] = np.minimum(first[pending], self.pop.arrival_day[rows[pending]])
        active = status == _ACTIVE
        a = rows[active]
        if len(a):
            last = s.capacity - 1
            n = s.n[a]
            came = s.came_due[a]
            # (The due days are int32: widened before _FAR joins them, which int32 cannot hold.)
            # The first installment whose miss test is not silent: those before the oldest open one are paid.
            missed = np.maximum(s.miss_ptr[a], s.first_open[a])
            d = day[active]
            due_next = np.where(came < n, s.due[a, np.minimum(came, last)].astype(np.int64), _FAR)
            due_after = np.where(came + 1 < n, s.due[a, np.minimum(came + 1, last)].astype(np.int64), _FAR)
            miss_next = np.where(missed < n, s.due[a, np.minimum(missed, last)].astype(np.int64), _FAR)
            pre_days = max(cfg.decisions.pre_due_days, 0)
            pre_due, pre_after = due_next - pre_days, due_after - pre_days
            bound = np.minimum.reduce(
                [
                    first[active],
                    # The pre-due decision points of the next two installments (once past: the second falling due;
                    # the first one's booking is folded into the stretch).
                    np.where(pre_due >= d, pre_due, _FAR),
                    np.where(pre_after >= d, pre_after, due_after),
                    miss_next + s.grace_days + 1,  # an unpaid installment missed
                ]
            )
            overdue = s.overdue(a) > 0
            # (An overdue row in a shock is drawn a referral each day of it: those draws are looked at below.)
            busy = self.thank[a] | (
                (self.state.annoyance[a] > cfg.population.fatigue.disengage_threshold) & ~self.state.disengaged[a]
            )
            open_due = s.open_due(a)
            if overdue.any():  # follow-up decision points of the oldest overdue installment
                follow = open_due[:, None] + np.asarray(cfg.decisions.follow_up_days, dtype=np.int64)[None, :]
                follow_next = np.where(follow >= d[:, None], follow, _FAR).min(axis=1, initial=_FAR)
                bound = np.where(overdue, np.minimum(bound, follow_next), bound)
            # Something owed from the pay window on: a payment is drawn each day, and may succeed; an overdue
            # row may also be referred on each day of a shock (the one on now, or one that starts).
            window = np.maximum(open_due - cfg.arrangements.pay_window_days, d)
            drawn = ~busy & (window < bound)
            if drawn.any():
                bound[drawn] = self._first_eventful_day(
                    a[drawn], window[drawn], bound[drawn], open_due[drawn], overdue[drawn]
                )
            first[active] = np.where(busy, d, bound)
        first = np.where(pending | active, first, day)  # offered: its decision point is today
        first = np.where(np.isfinite(self.pay_time[rows]), day, first)
        return np.maximum(first - day, 0)

    def _first_eventful_day(
        self,
        rows: NDArray[np.int64],
        start: NDArray[np.int64],
        end: NDArray[np.int64],
        open_due: NDArray[np.int64],
        overdue: NDArray[np.bool_],
    ) -> NDArray[np.int64]:
        """Each row's first day in ``[start, end)`` on which its draws might do something (``end`` if none).

        For active rows with nothing else to do until ``end`` (see :meth:`_quiet_days`), owing something from
        ``start`` on. The day's payment draw (:meth:`~regsim.world.World._draw_payments`) sets out to pay when
        its uniform is below the payment probability, which on such days is at most
        :func:`regsim.behaviour.pay_intent_upper_bound`: a day whose uniform is at or above that bound (with a
        margin for rounding) draws no payment. An ``overdue`` row is drawn a referral on each day of a shock
        (:meth:`~regsim.world.World._liquidity`): on a day of the shock on now (before its ``shock_until``,
        which no new shock moves until one starts), a referral happens when the day's referral uniform is
        below the daily rate; after it, a new shock may start on a day whose shock-start uniform is below the
        shock rate (such a day is taken as eventful). The uniforms are the draws' own (keyed by row and day),
        so nothing is drawn differently. At most :data:`_LOOK_AHEAD` days are looked at (the day after is then
        taken as eventful: early, never late).

        A row short of money draws no payment before its next payday, whatever its uniforms: when its cash is
        below both the least it could owe on those days (what it owes at ``start``; what is owed only grows
        while nothing is paid) less :data:`~regsim.world.PAY_TOLERANCE_EUR` and a partial payment's minimum,
        the payment probability is exactly 0 (:meth:`~regsim.world.World.payment_probability`), and until a
        payday the mornings only shrink the cash (spending, or a shock that takes it all).
        """
        span = np.minimum(end - start, _LOOK_AHEAD)
        first = start + span
        broke_until = start.copy()
        # (What is owed is looked up only for the rows below the partial payment's minimum.)
        short = np.flatnonzero(self.state.cash[rows] < MIN_PARTIAL_PAYMENT_EUR)
        owed = self.sched.owed_now(rows[short], start[short], self.config.arrangements.pay_window_days)
        floor = owed - PAY_TOLERANCE_EUR
        broke = short[(self.state.cash[rows[short]] < floor) & (floor > 0)]  # (a negative cash rises to 0)
        if len(broke):
            broke_until[broke] = self.pop.next_payday(self.local_day[rows[broke]], self.calendar, rows[broke])
        # Most rows meet an eventful day early: the first few days are looked at for all of them, the rest only
        # for the rows that had none (the draws of a day are the same whenever they are made).
        todo, lo = np.arange(len(rows)), 0
        for hi in _LOOK_STAGES:
            hi = min(hi, int(span[todo].max()))
            if hi <= lo:
                break
            r, d0 = rows[todo], start[todo]
            offsets = np.arange(lo, hi)
            days = d0[:, None] + offsets[None, :]
            # The ids aligned with the days (one per draw): the draws' no-broadcasting path.
            gid = np.repeat(self.gid[r], hi - lo).reshape(days.shape)
            late = overdue[todo]
            if late.any():  # all of a day's draws at once (the same uniforms as one purpose at a time)
                u, u_start, u_refer = self.streams.uniforms(_DAY_DRAWS, gid, days)
            else:
                u = self.streams.uniform(Purpose.ATTEND, gid, days)
            # Annoyance only decays until then: after the mornings up to this stage's last day it is at least
            # today's times the decay to that power (less a relative 1e-12 for the rounding of repeated products).
            mornings = d0 - self.local_day[r] + hi
            lowest = self.state.annoyance[r] * (self._annoyance_decay**mornings * (1.0 - 1e-12))
            bound = behaviour.pay_intent_upper_bound(
                self.state,
                self.pop,
                self.config.population,
                self.config.arrangements,
                r[:, None],
                open_due[todo][:, None] - days,
                lowest_annoyance=lowest[:, None],
            )
            eventful = (u < bound + _DRAW_MARGIN) & (days >= broke_until[todo][:, None])
            if late.any():
                shock_until = self.state.shock_until[r][:, None]
                referral = (days < shock_until) & (u_refer < self.config.population.shocks.referral_per_day)
                shock = (days >= shock_until) & (u_start < self.pop.shock_rate[r][:, None])
                eventful |= late[:, None] & (shock | referral)
            eventful &= offsets[None, :] < span[todo][:, None]
            found = eventful.any(axis=1)
            first[todo[found]] = d0[found] + lo + np.argmax(eventful[found], axis=1)
            todo = todo[~found & (span[todo] > hi)]
            if not len(todo):
                break
            lo = hi
        return first

    def _skip_quiet_days(self, rows: NDArray[np.int64]) -> None:
        """Run the quiet days (:meth:`_quiet_days`) of these running rows at once: only their mornings' liquidity.

        The liquidity is :func:`regsim.behaviour.advance_days` (the draws of all the days at once); referrals
        and disengagement, the rest of :meth:`_liquidity`, cannot happen on a quiet day. A row stops at least a
        day before the day on which its next pending event would run, so no event is skipped. The day
        process's clock ends where the emulation of :meth:`_morning` and :meth:`_evening` would leave it: the
        evening of the last quiet day (:func:`_evening_after`). The bookkeeping of the stretch (installments
        falling due, miss tests of paid installments) is then made as of its last day: the same counters as day
        by day, and nothing read them in between.
        """
        left = self._quiet_days(rows)
        # An event at time t runs on day floor(t) at the earliest (the day before's evening bound is below t).
        left = np.minimum(left, np.floor(self._next_event[rows]) - self.local_day[rows]).astype(np.int64)
        quiet = left > 0
        if not quiet.any():
            return
        sub, left = rows[quiet], left[quiet]
        first = self.local_day[sub]
        behaviour.advance_days(
            self.state, self.pop, self.config.population, self.streams, self.gid, first, left, self.calendar, sub
        )
        end = first + left - 1
        self.clock[sub] = _evening_after(self.clock[sub], first, end)
        self.local_day[sub] = first + left
        active = sub[self.status[sub] == _ACTIVE]
        if len(active):
            end = self.local_day[active] - 1
            self.sched.advance_due(active, end)  # (INSTALLMENT_DUE is not kept: nothing to log)
            self.sched.advance_missed(active, end)  # (paid installments only: nothing to log)

    # -- one day of a set of rows -----------------------------------------------------------------------------
    def _morning(self, rows: NDArray[np.int64]) -> NDArray[np.int64]:
        """The morning of these running rows; freezes those with a decision point, returns the others."""
        clock, day = self.clock[rows], self.local_day[rows]
        # The day process sleeps until the morning only when it is not already there (day 0 starts at once).
        wake = np.where(clock < day, clock + (day - clock), clock)
        self._run_events(rows, wake)
        self.clock[rows] = wake
        self._liquidity(rows)
        self._book_due_dates(rows)
        ids, kinds, installments = self._decision_points(rows)
        if not len(ids):
            return rows
        # A decision point: what was due at this moment runs before the world waits for the answer.
        self._run_events(ids, self.clock[ids])
        order = np.argsort(ids, kind="stable")
        self._freezing.append((ids[order], kinds[order], installments[order]))
        self.phase[ids] = Phase.DECIDING
        return rows[self.phase[rows] == Phase.RUNNING]

    def _evening(self, rows: NDArray[np.int64]) -> None:
        """The rest of these rows' day: its events, the evening's payments, then the next day or the end."""
        if not len(rows):
            return
        clock, day = self.clock[rows], self.local_day[rows]
        evening = clock + (day + 1 - 1e-6 - clock)
        self._run_events(rows, evening)
        self.clock[rows] = evening
        due = self.pay_time[rows] <= evening
        self._settle(rows[due], evening[due])
        ended = _ENDED[self.status[rows]] | (day + 1 >= self.days)
        self.phase[rows[ended]] = Phase.DONE
        self.phase[rows[~ended]] = Phase.RUNNING
        self.local_day[rows[~ended]] += 1

    def _run_events(self, rows: NDArray[np.int64], until: NDArray[np.float64]) -> None:
        """Run each row's pending events that come before the day process's next moment ``until``.

        In the one-arrangement world the day process sleeps on a SimPy timeout created at that moment, so
        events already pending come first, ties included, and events created later come after: the bound
        takes the next creation number. Events run in rounds: each round takes the next event of every row
        that has one (a row's events keep their order), and runs the events of all rows in the round as one
        call per kind (messages sent, delivered, noticed, opened, calls connected, letters posted), with
        each message's own time.
        """
        due = self._next_event[rows] <= until
        if not due.any():
            return
        rows, until = rows[due], until[due]
        q = self._queue
        bound_made = q.new_numbers(1)  # the day process's timeout is created now
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
                    self._now[done] = bound[done]
                    self._next_event[done] = np.inf
                    break
                hrow, htime, hmade, entries, group = heads
                limit = bound[hrow]
                ready = (htime < limit) | ((htime == limit) & (hmade < bound_made))
                # Rows done: no event left, or the next one comes after the bound (the day process resumes).
                finished = hrow[~ready]
                self._next_event[finished] = htime[~ready]
                active[finished] = False
                empty = active.copy()
                empty[hrow] = False
                done = np.flatnonzero(empty)
                self._next_event[done] = np.inf
                active[done] = False
                stopped = np.concatenate([finished, done])
                self._now[stopped] = bound[stopped]
                left -= len(stopped)
                if not ready.any():
                    break
                # Each ready row runs its next event: the entries with its head's time and creation number.
                take = ready[group] & (q.time[entries] == htime[group]) & (q.made[entries] == hmade[group])
                chosen = entries[take]
                mids, times, kinds = q.mid[chosen], q.time[chosen], q.kind[chosen]
                q.remove(chosen)
                self._now[hrow[ready]] = htime[ready]
                first_kinds = kinds[np.r_[True, group[take][1:] != group[take][:-1]]]
                for kind in dict.fromkeys(first_kinds.tolist()):  # actions in order of their first row
                    mine = kinds == kind
                    q.actions[kind](mids[mine], times[mine])
        finally:
            self._in_events = False

    # ======================================================================================================
    # The clock hooks of World
    # ======================================================================================================
    def _day_of(self, ids: NDArray[np.int64] | None) -> int | NDArray[np.int64]:
        if ids is None:
            raise RuntimeError("a vector world has no shared day")
        return self.local_day[ids]

    def _time_at(self, ids: NDArray[np.int64]) -> float | NDArray[np.float64]:
        return self.local_day[ids].astype(np.float64)

    def _arrivals_on(self, rows: NDArray[np.int64] | None) -> NDArray[np.int64] | None:
        assert rows is not None
        arriving = rows[self.pop.arrival_day[rows] == self.local_day[rows]]
        return arriving if len(arriving) else None

    def _payment_day(self, times: NDArray[np.float64]) -> int | NDArray[np.int64]:
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
        rows = self.msgs.debtor[mids]
        # Decisions are applied at the row's morning; events are created at the time of the event running.
        now = self._now[rows] if self._in_events else self.clock[rows]
        when = now + np.maximum(0.0, times - now)  # SimPy's arithmetic for a timeout
        if len(times) == 1:  # (often: one message's next event)
            made = np.array([self._queue.new_numbers(1)], dtype=np.int64)
        else:
            which, count = _distinct_rank(times)
            made = self._queue.new_numbers(count) + which
        self._queue.push(when, made, rows, mids, action)
        if not self._in_events:  # (a row's events in progress update this when they are done)
            np.minimum.at(self._next_event, rows, when)

    def _keeps(self, event: EventType) -> bool:
        return event in OUTCOME_EVENTS

    def _log(self, event: EventType, t: float | NDArray[np.float64], rows: NDArray[np.int64], **columns: Any) -> None:
        if event in OUTCOME_EVENTS and len(rows):
            self.outcome_events.append((event, np.asarray(rows), columns))


class _EventQueue:
    """Pending events of all rows as columns, one entry per message of an event.

    An event is the entries of one row with the same time and creation number; a row's events run in SimPy's
    order (time, then creation), and an event's messages in the order they were scheduled. New entries are
    buffered and joined to the columns when the queue is next read (scheduling costs a list append).
    """

    def __init__(self) -> None:
        self.time = np.zeros(0)
        self.made = np.zeros(0, dtype=np.int64)
        self.row = np.zeros(0, dtype=np.int64)
        self.mid = np.zeros(0, dtype=np.int64)
        self.kind = np.zeros(0, dtype=np.int64)
        #: The actions, indexed by :attr:`kind`.
        self.actions: list[Action] = []
        self._kind_of: dict[Action, int] = {}
        self._made = 0
        self._new: list[tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], int]] = []

    def new_numbers(self, k: int) -> int:
        """Reserve ``k`` consecutive creation numbers; returns the first."""
        first = self._made
        self._made += k
        return first

    def push(
        self,
        when: NDArray[np.float64],
        made: NDArray[np.int64],
        rows: NDArray[np.int64],
        mids: NDArray[np.int64],
        action: Action,
    ) -> None:
        """Schedule ``action`` on each message ``mids[i]`` of row ``rows[i]`` at ``when[i]``."""
        kind = self._kind_of.get(action)
        if kind is None:
            kind = self._kind_of[action] = len(self.actions)
            self.actions.append(action)
        self._new.append((when, made, rows, mids, kind))

    def _join(self) -> None:
        if not self._new:
            return
        new, self._new = self._new, []
        self.time = np.concatenate([self.time, *(p[0] for p in new)])
        self.made = np.concatenate([self.made, *(p[1] for p in new)])
        self.row = np.concatenate([self.row, *(p[2] for p in new)])
        self.mid = np.concatenate([self.mid, *(p[3] for p in new)])
        kinds = np.repeat([p[4] for p in new], [len(p[3]) for p in new])
        self.kind = np.concatenate([self.kind, kinds.astype(np.int64)])

    def heads(
        self, active: NDArray[np.bool_], rank: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]] | None:
        """The next event of each ``active`` row that has one, rows ordered by ``rank``.

        Returns:
            ``None`` when no active row has an event, else ``(rows, times, creation numbers, entries, group)``:
            per row its next event's time and creation number; ``entries`` the positions of all the active
            rows' entries, sorted by (rank, time, creation, scheduling order); ``group[i]`` the index of the
            row of ``entries[i]`` in ``rows``.
        """
        self._join()
        entries = np.flatnonzero(active[self.row])
        if not len(entries):
            return None
        rank_of = rank[self.row[entries]]
        # A stable sort keeps the scheduling order among an event's messages.
        entries = entries[np.lexsort((self.made[entries], self.time[entries], rank_of))]
        rows = self.row[entries]
        head = np.empty(len(entries), dtype=bool)
        head[0] = True
        np.not_equal(rows[1:], rows[:-1], out=head[1:])
        group = np.cumsum(head) - 1
        first = entries[head]
        return self.row[first], self.time[first], self.made[first], entries, group

    def remove(self, positions: NDArray[np.int64]) -> None:
        """Forget the entries at these positions (their events ran)."""
        keep = np.ones(len(self.time), dtype=bool)
        keep[positions] = False
        self._keep(keep)

    def drop_rows(self, gone: NDArray[np.bool_]) -> None:
        """Forget every event of the rows marked in ``gone``."""
        self._join()
        self._keep(~gone[self.row])

    def _keep(self, keep: NDArray[np.bool_]) -> None:
        self.time, self.made, self.row = self.time[keep], self.made[keep], self.row[keep]
        self.mid, self.kind = self.mid[keep], self.kind[keep]

    def messages(self) -> NDArray[np.int64]:
        """The messages of all pending events."""
        self._join()
        return self.mid

    def renumber(self, new_id: NDArray[np.int64]) -> None:
        """Renumber the messages (``new_id[old]``), after the message store was compacted."""
        self._join()
        self.mid = new_id[self.mid]
