"""Quiet days: the days on which a row of a vector world can do nothing but its morning, found from the bounds
of the behaviour model, so that a stretch of them runs in one call.

On most days an arrangement does nothing observable: no installment falls due unpaid, no decision point comes,
and the day's payment draw fails. Such a day changes only the debtor's liquidity and memory (the morning,
:func:`regsim.behaviour.advance_day`) and bookkeeping nobody reads before the next decision point. A vector
world (:class:`regsim.vector_world.VectorWorld`) runs a stretch of such days of a row at once
(:func:`regsim.behaviour.advance_days`: the same arithmetic and draws as day by day) and books the stretch at
its end. Whether a day is quiet is decided from bounds that are exact or early, never late:

* the days of the plan: the next pre-due and follow-up decision points, the next installment falling due after
  the one due next, and the next unpaid installment's miss;
* the payment draw: on a day of the pay window (or while overdue) the debtor sets out to pay when the day's
  uniform is below :func:`regsim.behaviour.pay_intent_probability`, which until the stretch's end is at most
  :func:`regsim.behaviour.pay_intent_upper_bound` (memory and annoyance only decay on quiet days; the bound
  takes the least annoyance the stretch reaches); and a debtor whose cash is below what they owe and below a
  partial payment's minimum pays nothing before the next payday (what is owed only grows while nothing is
  paid, and until a payday a morning only shrinks cash); with self-service's ownership effect on, the bound of
  an arrangement on a solution its debtor chose is raised as the probability is (``p + theta (1 - p)``,
  increasing in ``p``: mechanism 10);
* referrals: an overdue row in a shock is drawn a referral each day of it, and a new shock may start: days
  whose uniforms can do neither are quiet;
* anything pending for the row (a thank-you point, a planned payment, annoyance above the disengagement
  threshold, the horizon's last day, an event in the queue) makes its day eventful. A self-service menu point
  comes up only inside an event (a reminder taken in), and a custom case's resolution is one: neither falls on
  a quiet day.

``VectorWorld(skip_quiet_days=False)`` runs every day in full instead; tests compare the two, and
``benchmarks/bench_env.py`` measures what the skipping buys.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from regsim import behaviour, engine
from regsim.arrangement import ArrangementStatus
from regsim.behaviour import DebtorState
from regsim.calendar import Calendar
from regsim.config import WorldConfig
from regsim.ledger import Ledger
from regsim.payments import PAY_TOLERANCE_EUR
from regsim.population import Population
from regsim.random import Purpose, Streams

__all__ = ["RowClocks", "evening_after", "first_eventful_day", "quiet_days", "skip_quiet_days"]


class RowClocks(Protocol):
    """What quiet-day skipping reads and advances of a world whose rows keep their own clocks
    (:class:`regsim.vector_world.VectorWorld` is one)."""

    config: WorldConfig
    calendar: Calendar
    streams: Streams
    ledger: Ledger
    pop: Population
    state: DebtorState
    gid: NDArray[np.int64]
    days: int
    local_day: NDArray[np.int64]
    clock: NDArray[np.float64]
    next_event: NDArray[np.float64]
    pay_time: NDArray[np.float64]
    thank: NDArray[np.bool_]


_PENDING, _ACTIVE = int(ArrangementStatus.PENDING), int(ArrangementStatus.ACTIVE)  # (plain ints: regsim.ledger)
_FAR = np.iinfo(np.int64).max // 4  # a day no row reaches (no installment left to fall due or be missed)
_LOOK_AHEAD = 16  # most days of a pay window looked at at once for draws that cannot succeed
_LOOK_STAGES = (4, _LOOK_AHEAD)  # days looked at first, then for the rows with no eventful day among them
# A day's payment draw, and the draws that may refer an overdue row.
_DAY_DRAWS = (Purpose.ATTEND, Purpose.SHOCK_START, Purpose.REFERRAL)
_DRAW_MARGIN = 1e-9  # a uniform this close below the bound of the payment probability counts as a payment
_ROUNDING = 1.0 - 1e-12  # repeated products of the decay may round up: the least annoyance is taken a bit lower


def evening_after(clock: NDArray[np.float64], first: NDArray[np.int64], last: NDArray[np.int64]) -> NDArray[np.float64]:
    """The day process's clock at the evening of day ``last`` after full days ``first..last`` from ``clock``.

    Each day the process wakes at :func:`regsim.engine.after` ``(clock, until_morning(clock, day))`` (when not
    already there) and ends the day at ``after(wake, until_evening(wake, day))``. From a previous evening
    (just under ``day``) both differences are exact (Sterbenz), so the wake is exactly ``day`` and the evening
    exactly :func:`regsim.engine.evening_of` ``(day)``: the clock after a run of days depends on the clock before it
    only through the first day (a test checks the identity over every day of a horizon).
    """
    before = np.where(last > first, engine.evening_of(last - 1), clock)  # the evening before ``last``
    wake = np.where(before < last, engine.after(before, engine.until_morning(before, last)), before)
    return engine.after(wake, engine.until_evening(wake, last))


def quiet_days(world: RowClocks, rows: NDArray[np.int64]) -> NDArray[np.int64]:
    """How many days, from each row's local day on, are quiet (see the module docstring)."""
    s, cfg, ledger = world.ledger.sched, world.config, world.ledger
    day = world.local_day[rows]
    status = ledger.status[rows]
    first = np.full(len(rows), world.days - 1, dtype=np.int64)  # the last day always runs in full
    pending = status == _PENDING
    first[pending] = np.minimum(first[pending], world.pop.arrival_day[rows[pending]])
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
        busy = world.thank[a] | (
            (world.state.annoyance[a] > cfg.population.fatigue.disengage_threshold) & ~world.state.disengaged[a]
        )
        open_due = s.open_due(a)
        if overdue.any():  # follow-up decision points of the oldest overdue installment
            follow = open_due[:, None] + np.asarray(cfg.decisions.follow_up_days, dtype=np.int64)[None, :]
            follow_next = np.where(follow >= d[:, None], follow, _FAR).min(axis=1, initial=_FAR)
            too_late = open_due + cfg.arrangements.breakdown_after_overdue_days + 1  # the plan breaks then
            bound = np.where(overdue, np.minimum.reduce([bound, follow_next, too_late]), bound)
        # Something owed from the pay window on: a payment is drawn each day, and may succeed; an overdue
        # row may also be referred on each day of a shock (the one on now, or one that starts).
        window = np.maximum(open_due - cfg.arrangements.pay_window_days, d)
        drawn = ~busy & (window < bound)
        if drawn.any():
            bound[drawn] = first_eventful_day(
                world, a[drawn], window[drawn], bound[drawn], open_due[drawn], overdue[drawn]
            )
        first[active] = np.where(busy, d, bound)
    first = np.where(pending | active, first, day)  # offered: its decision point is today
    first = np.where(np.isfinite(world.pay_time[rows]), day, first)
    return np.maximum(first - day, 0)


def first_eventful_day(
    world: RowClocks,
    rows: NDArray[np.int64],
    start: NDArray[np.int64],
    end: NDArray[np.int64],
    open_due: NDArray[np.int64],
    overdue: NDArray[np.bool_],
) -> NDArray[np.int64]:
    """Each row's first day in ``[start, end)`` on which its draws might do something (``end`` if none).

    For active rows with nothing else to do until ``end`` (see :func:`quiet_days`), owing something from
    ``start`` on. At most :data:`_LOOK_AHEAD` days are looked at (the day after is then taken as eventful:
    early, never late). The uniforms are the draws' own (keyed by row and day), so nothing is drawn
    differently.
    """
    cfg, state, pop = world.config, world.state, world.pop
    span = np.minimum(end - start, _LOOK_AHEAD)
    first = start + span
    broke_until = start.copy()
    # (What is owed is looked up only for the rows below the partial payment's minimum.)
    short = np.flatnonzero(state.cash[rows] < cfg.arrangements.min_partial_payment_eur)
    owed = world.ledger.sched.owed_now(rows[short], start[short], cfg.arrangements.pay_window_days)
    floor = owed - PAY_TOLERANCE_EUR
    broke = short[(state.cash[rows[short]] < floor) & (floor > 0)]  # (a negative cash rises to 0)
    if len(broke):
        broke_until[broke] = pop.next_payday(world.local_day[rows[broke]], world.calendar, rows[broke])
    decay = np.exp(-1.0 / cfg.population.fatigue.decay_days)  # a morning's factor of annoyance
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
        gid = np.repeat(world.gid[r], hi - lo).reshape(days.shape)
        late = overdue[todo]
        if late.any():  # all of a day's draws at once (the same uniforms as one purpose at a time)
            u, u_start, u_refer = world.streams.uniforms(_DAY_DRAWS, gid, days)
        else:
            u = world.streams.uniform(Purpose.ATTEND, gid, days)
        # Annoyance only decays until then: after the mornings up to this stage's last day it is at least
        # today's times the decay to that power.
        mornings = d0 - world.local_day[r] + hi
        lowest = state.annoyance[r] * (decay**mornings * _ROUNDING)
        bound = behaviour.pay_intent_upper_bound(
            state,
            pop,
            cfg.population,
            cfg.arrangements,
            r[:, None],
            open_due[todo][:, None] - days,
            lowest_annoyance=lowest[:, None],
        )
        ss = cfg.self_service
        if ss.enabled and ss.ownership.enabled:  # mechanism 10: a chosen solution is kept more often
            owned = world.ledger.chosen[r]
            if owned.any():
                theta = ss.ownership.theta
                bound = np.where(owned[:, None], bound + theta * (1.0 - bound), bound)
        eventful = (u < bound + _DRAW_MARGIN) & (days >= broke_until[todo][:, None])
        if late.any():
            shock_until = state.shock_until[r][:, None]
            referral = (days < shock_until) & (u_refer < cfg.population.shocks.referral_per_day)
            shock = (days >= shock_until) & (u_start < pop.shock_rate[r][:, None])
            eventful |= late[:, None] & (shock | referral)
        eventful &= offsets[None, :] < span[todo][:, None]
        found = eventful.any(axis=1)
        first[todo[found]] = d0[found] + lo + np.argmax(eventful[found], axis=1)
        todo = todo[~found & (span[todo] > hi)]
        if not len(todo):
            break
        lo = hi
    return first


def skip_quiet_days(world: RowClocks, rows: NDArray[np.int64]) -> None:
    """Run the quiet days of these running rows at once: only their mornings' liquidity, then the bookkeeping.

    Referrals and disengagement, the rest of a morning, cannot happen on a quiet day. A row stops at least a
    day before the day on which its next pending event would run, so no event is skipped. The day process's
    clock ends where day by day would leave it: the evening of the last quiet day (:func:`evening_after`).
    The bookkeeping of the stretch (installments falling due, miss tests of paid installments) is made as of
    its last day: the same state as day by day, and nothing read it in between.
    """
    left = quiet_days(world, rows)
    # An event at time t runs on day floor(t) at the earliest (the day before's evening bound is below t).
    left = np.minimum(left, np.floor(world.next_event[rows]) - world.local_day[rows]).astype(np.int64)
    quiet = left > 0
    if not quiet.any():
        return
    sub, left = rows[quiet], left[quiet]
    first = world.local_day[sub]
    behaviour.advance_days(
        world.state, world.pop, world.config.population, world.streams, world.gid, first, left, world.calendar, sub
    )
    world.clock[sub] = evening_after(world.clock[sub], first, first + left - 1)
    world.local_day[sub] = first + left
    active = sub[world.ledger.status[sub] == _ACTIVE]
    if len(active):
        world.ledger.book(active, world.local_day[active] - 1)  # (nothing it logs is kept, nothing breaks)
