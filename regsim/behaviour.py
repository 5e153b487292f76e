"""Debtor behaviour: the nine mechanisms of docs/mechanisms.md as vectorised equations over debtor arrays.

Latent state per debtor (:class:`DebtorState`): free cash, shock end, reminder memory ("boost"), annoyance,
on-time streak, disengagement. Each day, for every debtor with an open installment due within the pay window
(or overdue), the probability of setting out to pay is

.. math::

    h = a_i \\, c(\\Delta) + b_i + g_i \\min(s_i, S), \\qquad
    p = \\bigl(1 - e^{-h f_i}\\bigr) \\, w_i, \\qquad f_i = e^{-\\phi_i A_i}

with attention hazard :math:`a_i` (type), due-date cue :math:`c(\\Delta)` rising linearly over the pay
window to 1 at the due date (times ``overdue_attention`` after it), reminder memory :math:`b_i` (each noticed
reminder adds ``reminder_effect * channel impact``, decaying with ``memory_days``; mechanism 2), habit
:math:`g_i \\min(s_i, S)` from the on-time streak (mechanism 6), fatigue factor :math:`f_i` from annoyance
:math:`A_i` (mechanism 4) and willingness :math:`w_i` (mechanism 7; reduced for disengaged debtors). The
debtor pays in full when free cash covers what is owed (mechanism 1), else possibly part of it; a shock
(mechanism 5) empties free cash and cuts income for its duration. Messages add the immediate path of paying
through their link, and shared capacity and breakdown (mechanisms 8, 9) live in the world.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from regsim.calendar import Calendar
from regsim.clock import at
from regsim.config import ArrangementConfig, FatigueConfig, PopulationConfig
from regsim.population import Population
from regsim.random import Purpose, Streams

__all__ = [
    "DebtorState",
    "advance_day",
    "advance_days",
    "disengagement",
    "effective_willingness",
    "pay_intent_probability",
    "pay_intent_upper_bound",
]

_NO_DRAWS = np.zeros(0)


@dataclass
class DebtorState:
    """Latent, changing state of each debtor (never observable)."""

    cash: NDArray[np.float64]
    """Free cash available for the debt (EUR)."""
    shock_until: NDArray[np.int64]
    """Day on which the current shock ends (a shock is on while ``day < shock_until``)."""
    boost: NDArray[np.float64]
    """Attention hazard from remembered reminders (1/day)."""
    annoyance: NDArray[np.float64]
    """Accumulated, decaying contact annoyance (contacts)."""
    streak: NDArray[np.float64]
    """On-time streak plus thank-you credit (installments)."""
    disengaged: NDArray[np.bool_]
    shocks: NDArray[np.int64]
    shock_days: NDArray[np.int64]
    noticed_messages: NDArray[np.int64]
    noticed_by_channel: NDArray[np.int64]
    """Messages noticed (read, answered) per channel, shape ``(N, len(CHANNELS))`` (F6's read rates)."""
    letters_delivered: NDArray[np.int64]
    """Letters that reached the debtor (F7)."""
    letter_days_in_post: NDArray[np.int64]
    """Days from posting to delivery, summed over the debtor's letters (F7)."""
    letters_on_closed_days: NDArray[np.int64]
    """Letters delivered on a Sunday or a Monday, when PostNL delivers no letters (to be none)."""

    @classmethod
    def initial(cls, pop: Population, streams: Streams, gid: NDArray[np.int64]) -> DebtorState:
        """State on day 0: each debtor somewhere in their income cycle, no shock, no memory."""
        n = len(pop)
        fill = streams.uniform(Purpose.INCOME_NOISE, gid, 0, 1)
        return cls(
            cash=pop.income_per_pay * pop.free_cash_share * fill,
            shock_until=np.zeros(n, dtype=np.int64),
            boost=np.zeros(n),
            annoyance=np.zeros(n),
            streak=np.zeros(n),
            disengaged=np.zeros(n, dtype=bool),
            shocks=np.zeros(n, dtype=np.int64),
            shock_days=np.zeros(n, dtype=np.int64),
            noticed_messages=np.zeros(n, dtype=np.int64),
            noticed_by_channel=np.zeros((n, pop.notice.shape[1]), dtype=np.int64),
            letters_delivered=np.zeros(n, dtype=np.int64),
            letter_days_in_post=np.zeros(n, dtype=np.int64),
            letters_on_closed_days=np.zeros(n, dtype=np.int64),
        )


def advance_day(
    state: DebtorState,
    pop: Population,
    config: PopulationConfig,
    streams: Streams,
    gid: NDArray[np.int64],
    day: int | NDArray[np.int64],
    calendar: Calendar,
    rows: NDArray[np.int64] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """One morning for every debtor (or for ``rows``): spending, shocks, income, decay of memory and annoyance.

    Args:
        state: The debtors' latent state, updated in place.
        pop: The population.
        config: The population section of the world config.
        streams: The run's random streams.
        gid: Every row's arrangement id.
        day: The day, or, when rows keep their own clocks, each of ``rows``' own day (aligned with ``rows``).
        calendar: The run's calendar.
        rows: The rows whose morning it is (sorted); ``None`` for every row.

    Returns:
        Rows whose shock started today, and rows paid today.
    """
    # A slice keeps the whole-population case in place; a subset does the same arithmetic element by element.
    r: slice | NDArray[np.int64] = slice(None) if rows is None else rows
    idx = np.arange(len(pop)) if rows is None else rows
    return _morning(
        state,
        pop,
        config,
        r,
        idx,
        day,
        decay=(np.exp(-pop.spend_rate[r]), np.exp(-1.0 / pop.memory_days[r])),
        u_start=streams.uniform(Purpose.SHOCK_START, gid[r], day),
        length=lambda at_: streams.exponential(Purpose.SHOCK_LENGTH, gid[idx[at_]], at(day, at_)),
        paid_at=np.flatnonzero(pop.income_today(day, calendar, idx)),
        noise=lambda at_: streams.normal(Purpose.INCOME_NOISE, gid[idx[at_]], at(day, at_)),
    )


def advance_days(
    state: DebtorState,
    pop: Population,
    config: PopulationConfig,
    streams: Streams,
    gid: NDArray[np.int64],
    first_day: NDArray[np.int64],
    count: NDArray[np.int64],
    calendar: Calendar,
    rows: NDArray[np.int64],
) -> None:
    """Consecutive mornings of each row: days ``first_day[i], ..., first_day[i] + count[i] - 1`` of ``rows[i]``.

    The same as calling :func:`advance_day` once per day on the rows whose days they are (bit for bit: the
    same arithmetic in the same order for every element, and every draw a pure function of the row and its
    day), but the draws of all the days are made at once and a day costs a few array operations: the decays
    of the rows still running, then the rare shock starts and the paydays, each on just the rows they concern.
    The shock days are counted per shock rather than per day (shocks never overlap: one starts only outside
    a shock). For rows that keep their own clocks (:class:`regsim.vector_world.VectorWorld`).

    Args:
        state: The debtors' latent state, updated in place.
        pop: The population.
        config: The population section of the world config.
        streams: The run's random streams.
        gid: Every row's arrangement id.
        first_day: Each row's first day (aligned with ``rows``).
        count: Each row's number of days (aligned with ``rows``; 0 for none).
        calendar: The run's calendar.
        rows: The rows (sorted, unique).
    """
    count = np.asarray(count, dtype=np.int64)
    if not len(rows) or count.max(initial=0) <= 0:
        return
    # The rows in decreasing order of their number of days, so that the rows with more than j days are a prefix
    # (0..m_j) of them: the loop below then works on a compact copy of their state through slices (views)
    # rather than gathering and scattering every day. The arithmetic is element by element, so the order of
    # the rows changes nothing.
    by_count = np.argsort(-count, kind="stable")
    rows, first_day, count = rows[by_count], np.asarray(first_day)[by_count], count[by_count]
    # One entry per (row, day), grouped by day number j: group j holds the rows with more than j days (the first
    # ``size[j]`` rows), in row order.
    days = int(count[0])
    size = np.searchsorted(-count, -np.arange(days), side="left")
    bounds = np.zeros(days + 1, dtype=np.int64)
    np.cumsum(size, out=bounds[1:])
    pos = np.arange(bounds[-1]) - np.repeat(bounds[:-1], size)
    j = np.repeat(np.arange(days), size)
    prow, pday = rows[pos], first_day[pos] + j
    # Shock starts are possible only where the day's uniform is below the rate (and no shock is on then);
    # income arrives on paydays. Both are a few pairs: their draws are made here, their days found by search.
    u_all = streams.uniform(Purpose.SHOCK_START, gid[prow], pday)
    maybe = np.flatnonzero(u_all < pop.shock_rate[prow])
    length = streams.exponential(Purpose.SHOCK_LENGTH, gid[prow[maybe]], pday[maybe]) if len(maybe) else _NO_DRAWS
    paid = np.flatnonzero(pop.income_today(pday, calendar, prow))
    noise = streams.normal(Purpose.INCOME_NOISE, gid[prow[paid]], pday[paid]) if len(paid) else _NO_DRAWS
    noise_factor = np.maximum(0.0, 1.0 + config.income.income_noise * noise)
    income = pop.income_per_pay[prow[paid]] * pop.free_cash_share[prow[paid]] * noise_factor
    # Python integers for the loop's bookkeeping (cheaper than NumPy scalars, one day at a time).
    maybe_at, paid_at = np.searchsorted(maybe, bounds).tolist(), np.searchsorted(paid, bounds).tolist()
    block = size.tolist()
    shocks = config.shocks
    cash, boost, annoyance = state.cash[rows], state.boost[rows], state.annoyance[rows]
    shock_until = state.shock_until[rows]
    cash_decay, memory_decay = np.exp(-pop.spend_rate[rows]), np.exp(-1.0 / pop.memory_days[rows])
    annoyance_decay = np.exp(-1.0 / config.fatigue.decay_days)
    end = first_day + count
    # The days of the shock already on, within the stretch (each new shock adds its own below).
    shock_days = np.minimum(np.maximum(shock_until - first_day, 0), count)
    started = np.zeros(len(rows), dtype=np.int64)
    for k, m in enumerate(block):
        cash[:m] *= cash_decay[:m]
        boost[:m] *= memory_decay[:m]
        annoyance[:m] *= annoyance_decay
        if maybe_at[k + 1] > maybe_at[k]:
            s = slice(maybe_at[k], maybe_at[k + 1])
            p, d = pos[maybe[s]], pday[maybe[s]]
            go = shock_until[p] <= d
            if go.any():
                p, d = p[go], d[go]
                shock_until[p] = d + np.ceil(shocks.mean_duration_days * length[s][go]).astype(np.int64)
                cash[p] = 0.0  # the unexpected expense or lost income eats the buffer
                started[p] += 1
                shock_days[p] += np.maximum(np.minimum(shock_until[p], end[p]) - d, 0)
        if paid_at[k + 1] > paid_at[k]:
            s = slice(paid_at[k], paid_at[k + 1])
            p, d = pos[paid[s]], pday[paid[s]]
            cash[p] += income[s] * np.where(shock_until[p] > d, shocks.income_factor, 1.0)
    state.cash[rows], state.boost[rows], state.annoyance[rows] = cash, boost, annoyance
    state.shock_until[rows] = shock_until
    state.shocks[rows] += started
    state.shock_days[rows] += shock_days


def _morning(
    state: DebtorState,
    pop: Population,
    config: PopulationConfig,
    r: slice | NDArray[np.int64],
    idx: NDArray[np.int64],
    day: int | NDArray[np.int64],
    *,
    decay: tuple[NDArray[np.float64], NDArray[np.float64]],
    u_start: NDArray[np.float64],
    length: Callable[[NDArray[np.int64]], NDArray[np.float64]],
    paid_at: NDArray[np.int64],
    noise: Callable[[NDArray[np.int64]], NDArray[np.float64]],
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The arithmetic of one morning of rows ``r`` (``idx``: their numbers), given their draws.

    ``decay``: the daily cash and memory factors of the rows; ``u_start``: their shock-start uniforms;
    ``length(at)`` and ``noise(at)``: the exponential shock lengths and normal income noise of the rows at
    positions ``at`` (drawn only for the rows that need them); ``paid_at``: the positions of the rows paid
    today.
    """
    state.cash[r] *= decay[0]
    state.boost[r] *= decay[1]
    state.annoyance[r] *= np.exp(-1.0 / config.fatigue.decay_days)

    in_shock = state.shock_until[r] > day
    start = ~in_shock & (u_start < pop.shock_rate[r])
    started_at = np.flatnonzero(start)
    started = idx[started_at]
    if len(started):
        day_s = at(day, started_at)
        shock_length = np.ceil(config.shocks.mean_duration_days * length(started_at))
        state.shock_until[started] = day_s + shock_length.astype(np.int64)
        state.cash[started] = 0.0  # the unexpected expense or lost income eats the buffer
        state.shocks[started] += 1
    in_shock = state.shock_until[r] > day
    state.shock_days[r] += in_shock

    paid = idx[paid_at]
    if len(paid):
        factor = np.where(in_shock[paid_at], config.shocks.income_factor, 1.0)
        noise_factor = np.maximum(0.0, 1.0 + config.income.income_noise * noise(paid_at))
        state.cash[paid] += pop.income_per_pay[paid] * pop.free_cash_share[paid] * noise_factor * factor
    return started, paid


def due_cue(days_to_due: NDArray[np.integer], window: int, overdue_attention: float) -> NDArray[np.float64]:
    """Salience of the due date: 0 before the pay window, rising to 1 on the due day, then constant."""
    d = np.asarray(days_to_due, dtype=np.float64)
    ramp = np.minimum(np.maximum(1.0 - d / (window + 1.0), 0.0), 1.0)  # np.clip's values, at less overhead
    return np.where(d <= 0, overdue_attention * (d < 0) + 1.0 * (d == 0), ramp)


def effective_willingness(
    state: DebtorState, pop: Population, config: FatigueConfig, ids: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Willingness to pay, lowered by annoyance and by disengagement (mechanisms 4 and 7)."""
    fatigue = np.exp(-pop.fatigue_sensitivity[ids] * state.annoyance[ids])
    return pop.willingness[ids] * fatigue * np.where(state.disengaged[ids], config.disengaged_willingness, 1.0)


def pay_intent_probability(
    state: DebtorState,
    pop: Population,
    config: PopulationConfig,
    arrangements: ArrangementConfig,
    ids: NDArray[np.int64],
    days_to_due: NDArray[np.integer],
) -> NDArray[np.float64]:
    """P(the debtor sets out to pay today), before checking whether the money is there (module docstring)."""
    fatigue = np.exp(-pop.fatigue_sensitivity[ids] * state.annoyance[ids])
    return _pay_intent(state, pop, config, arrangements, ids, days_to_due, fatigue)


def pay_intent_upper_bound(
    state: DebtorState,
    pop: Population,
    config: PopulationConfig,
    arrangements: ArrangementConfig,
    ids: NDArray[np.int64],
    days_to_due: NDArray[np.integer],
    lowest_annoyance: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """An upper bound of :func:`pay_intent_probability` on the coming days of a quiet stretch.

    Valid on any later day on which, until then, the state changed only by mornings (:func:`advance_day`) and
    the streak and disengagement stayed as they are: memory (boost) and annoyance only decay then, so the bound
    takes today's boost, and the fatigue of ``lowest_annoyance`` (a lower bound of the annoyance on those days;
    ``None``: no fatigue at all); the due-date cue is the day's own (``days_to_due``). The arithmetic is
    :func:`pay_intent_probability`'s with those operands, so the bound holds in floating point too (each
    operation is monotone in the operands that grow); callers add a margin for ``exp``'s last bit.
    ``ids``, ``days_to_due`` and ``lowest_annoyance`` broadcast (e.g. ``(k, 1)`` rows against ``(k, days)``).
    """
    if lowest_annoyance is None:
        return _pay_intent(state, pop, config, arrangements, ids, days_to_due, 1.0)  # (x * 1.0 is x exactly)
    fatigue = np.exp(-pop.fatigue_sensitivity[ids] * lowest_annoyance)
    return _pay_intent(state, pop, config, arrangements, ids, days_to_due, fatigue)


def _pay_intent(
    state: DebtorState,
    pop: Population,
    config: PopulationConfig,
    arrangements: ArrangementConfig,
    ids: NDArray[np.int64],
    days_to_due: NDArray[np.integer],
    fatigue: NDArray[np.float64] | float,
) -> NDArray[np.float64]:
    cue = due_cue(days_to_due, arrangements.pay_window_days, arrangements.overdue_attention)
    habit = pop.habit_gain[ids] * np.minimum(state.streak[ids], config.habit.max_streak)
    hazard = pop.attention[ids] * cue + state.boost[ids] + habit
    attend = 1.0 - np.exp(-hazard * fatigue)
    disengaged = config.fatigue.disengaged_willingness
    return attend * pop.willingness[ids] * np.where(state.disengaged[ids], disengaged, 1.0)


def disengagement(
    state: DebtorState,
    config: FatigueConfig,
    streams: Streams,
    gid: NDArray[np.int64],
    rows: NDArray[np.int64],
    day: int | NDArray[np.int64],
) -> NDArray[np.int64]:
    """Rows (among ``rows``) that disengage today: annoyance above the threshold makes it likelier.

    ``day`` is the day, or each row's own day (aligned with ``rows``).
    """
    excess = np.maximum(0.0, state.annoyance[rows] - config.disengage_threshold)
    candidates = rows[(excess > 0) & ~state.disengaged[rows]]
    if not len(candidates):
        return candidates
    p = config.disengage_per_day * excess[(excess > 0) & ~state.disengaged[rows]]
    day_c = at(day, (excess > 0) & ~state.disengaged[rows])
    return candidates[streams.uniform(Purpose.DISENGAGE, gid[candidates], day_c) < p]
