"""Drawing the debtor population: hidden types, income schedules, channel affinities, debts and history.

Every attribute of debtor ``i`` is a function of (run seed, ``i``) only (see :mod:`regsim.random`), so debtor
``i`` is the same person whatever the population size or the policy. The population is a struct of arrays,
one entry per arrangement (one arrangement per debtor).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray
from scipy.stats import binom, poisson

from regsim.calendar import Calendar
from regsim.config import CHANNELS, DEBTOR_TYPES, INCOME_SCHEDULES, WorldConfig
from regsim.random import Purpose, Streams

__all__ = ["HOUR_PROFILES", "Population", "draw_population", "hour_availability"]

#: Daily rhythms that set when a debtor answers calls and reads texts.
HOUR_PROFILES: tuple[str, ...] = ("early", "office", "evening")

#: Prior late-payment probability per type (share of earlier bills paid late). Assumption.
_PRIOR_LATE = {"reliable": 0.05, "forgetful": 0.45, "liquidity_constrained": 0.5, "shock_prone": 0.3, "unwilling": 0.7}
#: P(the usual payment day of earlier bills is income-driven rather than random). Assumption.
_PRIOR_DOM_SIGNAL = 0.75


def _availability_table() -> NDArray[np.float64]:
    """P(free to answer a call / read a text at once), shape ``(profiles, 24)``. Assumption (mechanism 3)."""
    table = np.full((len(HOUR_PROFILES), 24), 0.05)
    early = [0.05] * 6 + [
        0.6,
        0.8,
        0.85,
        0.8,
        0.7,
        0.6,
        0.6,
        0.5,
        0.5,
        0.5,
        0.5,
        0.55,
        0.5,
        0.4,
        0.25,
        0.15,
        0.05,
        0.05,
    ]
    office = [0.05] * 7 + [0.5, 0.35, 0.25, 0.25, 0.3, 0.5, 0.3, 0.25, 0.25, 0.3, 0.5, 0.8, 0.85, 0.8, 0.6, 0.3, 0.1]
    evening = [0.05] * 8 + [0.15, 0.3, 0.45, 0.5, 0.55, 0.5, 0.5, 0.5, 0.55, 0.65, 0.75, 0.85, 0.85, 0.8, 0.6, 0.3]
    table[0], table[1], table[2] = early, office, evening
    return table


_AVAILABILITY = _availability_table()
# Channel option indexes (0 = no contact) of the channels whose notice depends on the hour.
_SMS, _ROBOCALL, _COLLECTOR = (1 + CHANNELS.index(c) for c in ("sms", "robocall", "collector"))


def hour_availability(
    profile: NDArray[np.integer], hour: NDArray[np.floating], channel: NDArray[np.integer]
) -> NDArray[np.float64]:
    """Multiplier of the notice probability for a message arriving at ``hour`` (channel option index).

    Calls (robocall, collector) need the debtor free at that hour; an SMS is read at once when free and
    otherwise mostly a little later; email and letters are read when the debtor gets to them.
    """
    h = np.minimum(np.maximum(np.asarray(hour, dtype=np.int64), 0), 23)
    avail = _AVAILABILITY[np.asarray(profile, dtype=np.int64), h]
    ch = np.asarray(channel)
    return np.where((ch == _ROBOCALL) | (ch == _COLLECTOR), avail, 1.0)


@dataclass
class Population:
    """One row per debtor (and arrangement). All money in EUR, rates per day unless stated."""

    type: NDArray[np.int8]
    schedule: NDArray[np.int8]
    pay_day: NDArray[np.int16]
    """Monthly and benefits: day of the month; four-weekly: phase in 0..27; weekly: phase in 0..6."""
    income_per_pay: NDArray[np.float64]
    free_cash_share: NDArray[np.float64]
    spend_rate: NDArray[np.float64]
    attention: NDArray[np.float64]
    willingness: NDArray[np.float64]
    reminder_effect: NDArray[np.float64]
    memory_days: NDArray[np.float64]
    fatigue_sensitivity: NDArray[np.float64]
    shock_rate: NDArray[np.float64]
    habit_gain: NDArray[np.float64]
    notice: NDArray[np.float64]
    """Shape ``(N, len(CHANNELS))``."""
    hour_profile: NDArray[np.int8]
    arrival_day: NDArray[np.int32]
    debt_eur: NDArray[np.float64]
    n_installments: NDArray[np.int16]
    prior_payments: NDArray[np.int16]
    prior_late_share: NDArray[np.float64]
    prior_pay_dom: NDArray[np.int8]

    def __len__(self) -> int:
        return len(self.type)

    def take(self, rows: NDArray[np.integer]) -> Population:
        """The sub-population of the given rows."""
        return Population(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def income_today(
        self, day: int | NDArray[np.int64], calendar: Calendar, ids: NDArray[np.integer]
    ) -> NDArray[np.bool_]:
        """Whether each debtor in ``ids`` is paid today (``day``: the day, or each debtor's own, aligned)."""
        dom = int(calendar.day_of_month[day]) if np.ndim(day) == 0 else calendar.day_of_month[day].astype(np.int64)
        sched = self.schedule[ids]
        pay = self.pay_day[ids].astype(np.int64)
        monthly = (sched == 0) | (sched == 3)
        return np.where(
            monthly,
            pay == dom,
            np.where(sched == 1, (day - pay) % 28 == 0, (day - pay) % 7 == 0),
        )

    def next_payday(self, day: NDArray[np.int64], calendar: Calendar, ids: NDArray[np.integer]) -> NDArray[np.int64]:
        """Each debtor's first payday on or after its ``day`` (aligned with ``ids``): the first day on which
        :meth:`income_today` holds, or a day no later than it (``calendar.days`` when a monthly payday falls
        past the calendar)."""
        sched = self.schedule[ids]
        pay = self.pay_day[ids].astype(np.int64)
        monthly = (sched == 0) | (sched == 3)
        period = np.where(sched == 1, 28, 7)
        return np.where(monthly, calendar.next_day_of_month(pay, day), day + (pay - day) % period)


def _lognormal(
    streams: Streams,
    purpose: Purpose,
    ids: NDArray[np.int64],
    median: NDArray[np.float64] | float,
    sigma: float,
    index: int = 0,
) -> NDArray[np.float64]:
    return np.asarray(median * np.exp(sigma * streams.normal(purpose, ids, 0, index)))


def draw_population(config: WorldConfig, ids: NDArray[np.int64], streams: Streams) -> Population:
    """Draw the debtors with the given ids.

    Args:
        config: The world.
        ids: Debtor ids (``arange(n)`` for a run of ``n`` arrangements).
        streams: The run's random streams.
    """
    pop = config.population
    arr = config.arrangements
    types = [pop.types[t] for t in DEBTOR_TYPES]
    t = streams.categorical(Purpose.TYPE, ids, [ty.share for ty in types]).astype(np.int8)

    def per_type(attr: str) -> NDArray[np.float64]:
        return np.array([getattr(ty, attr) for ty in types], dtype=np.float64)[t]

    sched = streams.categorical(
        Purpose.INCOME_SCHEDULE, ids, [pop.income.schedule_shares.get(s, 0.0) for s in INCOME_SCHEDULES]
    ).astype(np.int8)
    days = np.array(sorted(pop.income.monthly_pay_days), dtype=np.int64)
    probs = [pop.income.monthly_pay_days[d] for d in days]
    monthly_day = days[streams.categorical(Purpose.INCOME_DAY, ids, probs)]
    u_phase = streams.uniform(Purpose.INCOME_DAY, ids, 0, 1)
    pay_day = np.select(
        [sched == 0, sched == 1, sched == 2],
        [monthly_day, np.floor(u_phase * 28), np.floor(u_phase * 7)],
        default=pop.income.benefits_pay_day,
    ).astype(np.int16)
    # Wages and benefits have their own log-normal distributions (benefits: statutory, lower and narrower); the
    # same normal draw places a debtor in either.
    income = pop.income
    z = streams.normal(Purpose.INCOME_AMOUNT, ids, 0, 0)
    is_benefit = sched == INCOME_SCHEDULES.index("benefits")
    median = np.where(is_benefit, income.benefits_income_median_eur, income.monthly_income_median_eur)
    sigma = np.where(is_benefit, income.benefits_income_sigma, income.monthly_income_sigma)
    monthly_income = median * np.exp(sigma * z)
    per_pay = np.select(
        [sched == 1, sched == 2], [monthly_income * 12 / 13, monthly_income * 12 / 52], default=monthly_income
    )

    # A debtor's own channel affinities scatter around the type's (mechanism 3).
    type_notice = np.array([ty.notice.as_tuple() for ty in types])[t]
    logit = np.log(type_notice.clip(1e-4, 1 - 1e-4) / (1 - type_notice.clip(1e-4, 1 - 1e-4)))
    spread = per_type("notice_spread")[:, None]
    noise = streams.normal(Purpose.NOTICE_SPREAD, ids[:, None], 0, np.arange(len(CHANNELS))[None, :])
    notice = 1.0 / (1.0 + np.exp(-(logit + spread * noise)))

    debt = _lognormal(streams, Purpose.DEBT, ids, arr.debt_median_eur * per_type("debt_factor"), arr.debt_sigma).round(
        2
    )
    n_inst = np.clip(np.ceil(debt / arr.target_installment_eur), arr.min_installments, arr.max_installments)

    prior_n = poisson.ppf(streams.uniform(Purpose.PRIOR_HISTORY, ids, 0, 0), pop.prior_payments_mean)
    prior_n = np.nan_to_num(prior_n).astype(np.int16)
    late_p = np.array([_PRIOR_LATE[name] for name in DEBTOR_TYPES])[t]
    prior_late = binom.ppf(streams.uniform(Purpose.PRIOR_HISTORY, ids, 0, 1), prior_n, late_p)
    prior_late_share = np.where(prior_n > 0, np.nan_to_num(prior_late) / np.maximum(prior_n, 1), 0.0)
    # The usual day of earlier payments follows the income for most debtors (that is what payday-aligned
    # policies exploit); for the rest, and for non-monthly earners, it carries no information.
    lag = np.floor(streams.uniform(Purpose.PRIOR_DAY, ids, 0, 0) * 4)
    income_dom = np.where((sched == 0) | (sched == 3), pay_day, 0)
    informative = (streams.uniform(Purpose.PRIOR_DAY, ids, 0, 1) < _PRIOR_DOM_SIGNAL) & (income_dom > 0)
    random_dom = 1 + np.floor(streams.uniform(Purpose.PRIOR_DAY, ids, 0, 2) * 28)
    prior_dom = np.where(informative, (income_dom + lag - 1) % 28 + 1, random_dom)
    prior_dom = np.where(prior_n > 0, prior_dom, -1).astype(np.int8)

    arrival = np.floor(streams.uniform(Purpose.ARRIVAL, ids) * arr.arrival_days).astype(np.int32)
    attention = per_type("attention") * np.exp(0.3 * streams.normal(Purpose.WILLING, ids, 0, 1))
    return Population(
        type=t,
        schedule=sched,
        pay_day=pay_day,
        income_per_pay=per_pay,
        free_cash_share=per_type("free_cash_share") * np.exp(0.25 * streams.normal(Purpose.INCOME_AMOUNT, ids, 0, 1)),
        spend_rate=per_type("spend_rate"),
        attention=attention,
        willingness=per_type("willingness"),
        reminder_effect=per_type("reminder_effect"),
        memory_days=per_type("memory_days"),
        fatigue_sensitivity=per_type("fatigue_sensitivity"),
        shock_rate=per_type("shocks_per_year") / 365.0,
        habit_gain=per_type("habit_gain"),
        notice=notice,
        hour_profile=streams.categorical(
            Purpose.HOUR_PROFILE, ids, [pop.hour_profiles[p] for p in HOUR_PROFILES]
        ).astype(np.int8),
        arrival_day=arrival,
        debt_eur=debt,
        n_installments=n_inst.astype(np.int16),
        prior_payments=prior_n,
        prior_late_share=prior_late_share,
        prior_pay_dom=prior_dom,
    )
