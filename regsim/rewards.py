"""Rewards: functions of what happened after decisions, as outcome columns; one module for every learner.

An :class:`Outcomes` holds, column-wise, what the event log recorded for each of a set of decisions over some
span: the step from one decision point to the next (the Gymnasium envs), or a decision's feedback window (the
contextual bandits, :mod:`regsim.feedback`). A reward is a function of those columns and of the creditor's
costs (:class:`RewardCosts`, read from the world config), returning one reward per row; :data:`REWARDS` names
them. :func:`tally` turns events (as the world logs them) into outcome columns, so the envs and the feedback
matcher count what happened the same way.

The rewards, with ``scale = 0.01`` (a reward of 1 is EUR 100):

* ``collected``: ``scale * (collected - contact_cost - breakdown_cost * broken)``;
* ``completion``: ``completed - broken``;
* ``burden``: ``collected`` minus ``per_contact`` per contact and ``scale`` times the collection costs charged
  to the debtor;
* ``holding``: ``collected`` minus the creditor's cost of waiting, ``scale * balance * annual_rate / 365 * days``;
* ``completion_value``: ``scale * (collected - cost_weight * contact_cost - breakdown_cost * broken)`` plus
  ``completion_bonus`` for a completed plan minus the waiting charge (``annual_rate`` 100% a year).
* ``runoff_value`` (the envs' default): ``scale * (collected - contact_cost - staff_cost)`` plus
  ``completion_bonus`` (3.0 = EUR 300) for a completed plan: summed over an episode that runs from the
  arrangement's creation to its end, it is ``scale`` times :func:`regsim.metrics.runoff_value`, the objective of
  a run-off verdict (net recovery plus EUR 300 per completion).

Self-service (mechanism 10, off by default) adds two outcome columns: ``concessions_eur`` (discounts and waived
collection costs granted on the page, the ``concession`` events' amounts) and ``staff_cost_eur`` (custom-solution
cases resolved by staff, at a collector call's cost: the ``case_resolved`` events' amounts). As
:func:`regsim.metrics.arrangement_outcomes` does, a staff case costs what a contact costs (every reward that
charges contact costs charges it). A concession comes off the debtor's balance, so what is collected is net of
it already: ``runoff_value`` does not subtract it a second time (nor does the verdict's net recovery). Without
self-service both columns are 0 and every reward is what it was, bit for bit (``x - 0.0 == x``).

The default reward puts no price on time, so deferring a payment is free to a learner while a breakdown is
dear; a learner then defers everything and completes little within any horizon. ``holding`` and
``completion_value`` give every deferral its price; their rates, the completion bonus and the tenfold weight
of contact costs are assumptions to agree with the creditor.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from regsim.config import WorldConfig
from regsim.eventlog import EventType

__all__ = [
    "REWARDS",
    "Outcomes",
    "Reward",
    "RewardCosts",
    "burden",
    "collected",
    "net_collected_eur",
    "completion",
    "completion_value",
    "holding",
    "resolve_reward",
    "runoff_value",
    "tally",
]

#: Events that enter an outcome (and the only ones :func:`tally` reads).
OUTCOME_EVENTS = frozenset(
    {
        EventType.PAYMENT,
        EventType.MESSAGE_SENT,
        EventType.INSTALLMENT_PAID,
        EventType.INSTALLMENT_MISSED,
        EventType.COMPLETED,
        EventType.BROKEN,
        EventType.REFERRED,
        EventType.CONCESSION,
        EventType.CASE_RESOLVED,
    }
)


@dataclass(frozen=True)
class Outcomes:
    """What happened after each of ``B`` decisions, column-wise (every column has length ``B``).

    Attributes:
        collected_eur: Euros paid.
        contact_cost_eur: Cost of the messages sent.
        contacts: Messages sent.
        completed: The arrangement completed.
        broken: The arrangement broke (back to collection).
        referred: The arrangement was referred to debt counselling.
        collection_costs_eur: Statutory collection costs charged to the debtor at a breakdown.
        on_time_installments: Installments paid by their due date.
        missed_installments: Installments missed.
        days: Length of the span (days).
        balance_eur: What the debtor owed at the decision.
        concessions_eur: Discounts and waived collection costs granted on the self-service page (0 without it).
        staff_cost_eur: Cost of the custom-solution cases staff resolved (a collector call's each; 0 without
            self-service).
    """

    collected_eur: NDArray[np.float64]
    contact_cost_eur: NDArray[np.float64]
    contacts: NDArray[np.int64]
    completed: NDArray[np.bool_]
    broken: NDArray[np.bool_]
    referred: NDArray[np.bool_]
    collection_costs_eur: NDArray[np.float64]
    on_time_installments: NDArray[np.int64]
    missed_installments: NDArray[np.int64]
    days: NDArray[np.float64]
    balance_eur: NDArray[np.float64]
    concessions_eur: NDArray[np.float64]
    staff_cost_eur: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.days)

    def take(self, rows: NDArray[np.integer]) -> Outcomes:
        """The outcomes of some rows."""
        return Outcomes(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def row(self, i: int) -> dict[str, float | int | bool]:
        """Row ``i`` as plain Python values (for an info dict)."""
        return {f.name: getattr(self, f.name)[i].item() for f in fields(self)}


@dataclass(frozen=True)
class RewardCosts:
    """The creditor's costs that rewards charge, from the world config.

    Attributes:
        breakdown_cost_eur: Cost of a breakdown to the creditor (``arrangements.breakdown_cost_eur``).
    """

    breakdown_cost_eur: float

    @classmethod
    def of(cls, config: WorldConfig) -> RewardCosts:
        """The costs of a world."""
        return cls(breakdown_cost_eur=float(config.arrangements.breakdown_cost_eur))


class Reward(Protocol):
    """A reward: outcomes and the creditor's costs to one reward per row."""

    def __call__(self, outcomes: Outcomes, costs: RewardCosts, /) -> NDArray[np.float64]: ...


def net_collected_eur(
    collected_eur: ArrayLike, contact_cost_eur: ArrayLike, breakdowns: ArrayLike, costs: RewardCosts
) -> NDArray[np.float64]:
    """Euros collected minus contact costs minus the creditor's cost of each breakdown (per row, or totals)."""
    return (
        np.asarray(collected_eur, dtype=np.float64)
        - np.asarray(contact_cost_eur, dtype=np.float64)
        - costs.breakdown_cost_eur * np.asarray(breakdowns, dtype=np.float64)
    )


def collected(outcomes: Outcomes, costs: RewardCosts, scale: float = 0.01) -> NDArray[np.float64]:
    """:func:`net_collected_eur` of each decision's outcomes, times ``scale``."""
    o = outcomes
    return scale * net_collected_eur(o.collected_eur, _contact_and_staff(o), o.broken, costs)


def completion(outcomes: Outcomes, costs: RewardCosts) -> NDArray[np.float64]:
    """+1 when the arrangement completes, -1 when it breaks, 0 otherwise."""
    return np.asarray(outcomes.completed, dtype=np.float64) - np.asarray(outcomes.broken, dtype=np.float64)


def burden(
    outcomes: Outcomes, costs: RewardCosts, scale: float = 0.01, per_contact: float = 0.5
) -> NDArray[np.float64]:
    """``collected`` minus the debtor's burden: ``per_contact`` per contact and the collection costs charged."""
    o = outcomes
    return collected(o, costs, scale) - per_contact * o.contacts - scale * o.collection_costs_eur


def holding(
    outcomes: Outcomes, costs: RewardCosts, scale: float = 0.01, annual_rate: float = 0.10
) -> NDArray[np.float64]:
    """``collected`` minus the cost of waiting: the balance times ``annual_rate`` (10% a year) for the days."""
    waiting = outcomes.balance_eur * annual_rate / 365.0 * outcomes.days
    return collected(outcomes, costs, scale) - scale * waiting


def completion_value(
    outcomes: Outcomes,
    costs: RewardCosts,
    scale: float = 0.01,
    completion_bonus: float = 3.0,
    annual_rate: float = 1.0,
    cost_weight: float = 10.0,
) -> NDArray[np.float64]:
    """What the KPIs value: euros, contact costs (weighted), a completed arrangement, and time.

    The bonus (3.0 = EUR 300 at the default scale) makes finishing a plan worth more than merely avoiding its
    breakdown, the waiting charge (100% a year: a strong preference for finishing soon) makes deferrals and
    reductions cost what they delay, and contact costs count tenfold so that a learner reaches debtors through
    cheap channels first. With these defaults MaskablePPO beat static dunning on completion and on cost per
    euro collected (README, "Agents").
    """
    o = outcomes
    money = o.collected_eur - cost_weight * _contact_and_staff(o) - costs.breakdown_cost_eur * o.broken
    waiting = o.balance_eur * annual_rate / 365.0 * o.days
    return scale * (money - waiting) + completion_bonus * o.completed


def runoff_value(
    outcomes: Outcomes, costs: RewardCosts, scale: float = 0.01, completion_bonus: float = 3.0
) -> NDArray[np.float64]:
    """The run-off verdict's objective, per step: net recovery (euros collected minus contact and staff costs;
    net of concessions, which lower what can be collected) times ``scale`` (a reward of 1 is EUR 100), plus
    ``completion_bonus`` when the plan completes.

    Over an episode from an arrangement's creation to its end the rewards add up to ``scale`` times
    :func:`regsim.metrics.runoff_value` of that arrangement (its bonus, EUR 300, is ``completion_bonus / scale``);
    nothing is charged for time or a breakdown beyond the money they do not bring. Net recovery is the verdict's,
    ``collected - contact_cost`` of :func:`regsim.metrics.arrangement_outcomes`, whose contact cost includes staff
    cases.
    """
    o = outcomes
    net = np.asarray(o.collected_eur, dtype=np.float64) - _contact_and_staff(o)
    return scale * net + completion_bonus * np.asarray(o.completed, dtype=np.float64)


def _contact_and_staff(o: Outcomes) -> NDArray[np.float64]:
    """Contact costs plus staff's custom cases (the verdict counts a case as a contact); exactly the contact
    costs without self-service (``x + 0.0 == x``)."""
    return np.asarray(o.contact_cost_eur, dtype=np.float64) + np.asarray(o.staff_cost_eur, dtype=np.float64)


#: The named rewards.
REWARDS: dict[str, Reward] = {
    "collected": collected,
    "completion": completion,
    "burden": burden,
    "holding": holding,
    "completion_value": completion_value,
    "runoff_value": runoff_value,
}


def reward_parameters(reward: str | Reward) -> list[str]:
    """The keyword parameters a reward (a name in :data:`REWARDS`, or a function) accepts: those after its two
    positional ones (``outcomes``, ``costs``). A name not in :data:`REWARDS` raises ``KeyError``."""
    import inspect

    fn = REWARDS[reward] if isinstance(reward, str) else reward
    return [p for p in inspect.signature(fn).parameters][2:]


def resolve_reward(reward: str | Reward, kwargs: Mapping[str, float] | None = None) -> Reward:
    """A reward given by name (one of :data:`REWARDS`) or as a function, with keyword arguments bound.

    Raises:
        ValueError: An unknown name (the message lists the allowed ones), or arguments the reward does not take.
        TypeError: Neither a name nor a callable.
    """
    if isinstance(reward, str):
        if reward not in REWARDS:
            raise ValueError(f"reward: unknown reward {reward!r}; allowed: {sorted(REWARDS)} or a callable")
        fn: Reward = REWARDS[reward]
    elif callable(reward):
        fn = reward
    else:
        raise TypeError(f"reward: expected a name in {sorted(REWARDS)} or a callable, got {type(reward)}")
    if not kwargs:
        return fn
    allowed = reward_parameters(fn)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"reward_kwargs: {unknown} not taken by reward {reward!r}; allowed: {allowed}")
    return functools.partial(fn, **kwargs)


EventChunk = tuple[EventType, NDArray[np.int64], Mapping[str, Any]]
"""Events of one type as the world logs them: (type, the row of each event, the logged columns)."""
_NONE = np.zeros(0, dtype=np.int64)


def tally(
    chunks: Sequence[EventChunk],
    n: int,
    days: NDArray[np.float64],
    balance_eur: NDArray[np.float64],
    rows: NDArray[np.int64] | None = None,
) -> Outcomes:
    """Outcome columns of the events in ``chunks``, per row ``< n`` (then taken at ``rows``, if given).

    Sums of euros are each chunk's sum per row, added in the order of the chunks from 0.0, so a row's outcome
    does not depend on which other rows are tallied with it (bit for bit).

    Args:
        chunks: The events (their rows below ``n``); types outside :data:`OUTCOME_EVENTS` are passed over.
        n: Number of rows.
        days: The span of each outcome (aligned with ``rows``, or with the ``n`` rows).
        balance_eur: What each row owed at its decision (aligned likewise).
        rows: The rows to return (default: all ``n``).
    """
    money: dict[EventType, list[tuple[NDArray[np.int64], Any]]] = {
        EventType.PAYMENT: [],
        EventType.MESSAGE_SENT: [],
        EventType.BROKEN: [],
        EventType.CONCESSION: [],
        EventType.CASE_RESOLVED: [],
    }
    flags: dict[str, list[NDArray[np.int64]]] = {k: [] for k in ("on_time", "missed", "completed", "referred")}
    broken: list[NDArray[np.int64]] = []
    for event, r, cols in chunks:
        if event in (EventType.PAYMENT, EventType.MESSAGE_SENT, EventType.CONCESSION, EventType.CASE_RESOLVED):
            money[event].append((r, cols["amount_eur"]))
        elif event is EventType.INSTALLMENT_PAID:
            flags["on_time"].append(r[np.asarray(cols["deferral_days"]) <= 0])
        elif event is EventType.INSTALLMENT_MISSED:
            flags["missed"].append(r)
        elif event is EventType.COMPLETED:
            flags["completed"].append(r)
        elif event is EventType.BROKEN:
            broken.append(r)
            if "collection_costs_eur" in cols:
                money[EventType.BROKEN].append((r, cols["collection_costs_eur"]))
        elif event is EventType.REFERRED:
            flags["referred"].append(r)
    paid, cost, charged = (
        _sum_by_chunk(money[e], n) for e in (EventType.PAYMENT, EventType.MESSAGE_SENT, EventType.BROKEN)
    )
    conceded, staff = (_sum_by_chunk(money[e], n) for e in (EventType.CONCESSION, EventType.CASE_RESOLVED))
    contacts = np.bincount(np.concatenate([r for r, _ in money[EventType.MESSAGE_SENT]] or [_NONE]), minlength=n)
    on_time, missed = (np.bincount(np.concatenate(flags[k] or [_NONE]), minlength=n) for k in ("on_time", "missed"))
    completed, was_broken, referred = (
        np.bincount(np.concatenate(v or [_NONE]), minlength=n) > 0
        for v in (flags["completed"], broken, flags["referred"])
    )
    at: NDArray[np.int64] | slice = slice(None) if rows is None else rows
    return Outcomes(
        collected_eur=paid[at],
        contact_cost_eur=cost[at],
        contacts=contacts[at],
        completed=completed[at],
        broken=was_broken[at],
        referred=referred[at],
        collection_costs_eur=charged[at],
        on_time_installments=on_time[at],
        missed_installments=missed[at],
        days=np.asarray(days, dtype=np.float64),
        balance_eur=np.asarray(balance_eur, dtype=np.float64),
        concessions_eur=conceded[at],
        staff_cost_eur=staff[at],
    )


def _sum_by_chunk(parts: list[tuple[NDArray[np.int64], Any]], n: int) -> NDArray[np.float64]:
    """Per row (``< n``), the amounts of these chunks (rows, amounts): each chunk's sum per row, then those sums
    added in the order of the chunks, from 0.0."""
    if not parts:
        return np.zeros(n)
    rows = np.concatenate([r for r, _ in parts])
    amounts = np.concatenate([np.broadcast_to(np.asarray(a, dtype=np.float64), r.shape) for r, a in parts])
    chunk = np.repeat(np.arange(len(parts), dtype=np.int64), [len(r) for r, _ in parts])
    # One key per (chunk, row), ascending in chunk order; bincount adds in input order within each key.
    keys, which = np.unique(chunk * n + rows, return_inverse=True)
    sums = np.bincount(which, weights=amounts)
    return np.asarray(np.bincount(keys % n, weights=sums, minlength=n), dtype=np.float64)
