"""Rewards for the Gymnasium envs: functions of what happened to the arrangement during one step.

A reward function takes a :class:`StepOutcome` (what the event log recorded between two decision points) and
returns a float. The env accepts one of the names in :data:`REWARDS` or any such callable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from regsim.eventlog import EventType

__all__ = [
    "REWARDS",
    "RewardFn",
    "StepOutcome",
    "burden_reward",
    "collected_reward",
    "completion_reward",
    "completion_value_reward",
    "holding_reward",
    "outcome_from_chunks",
    "resolve_reward",
]


@dataclass(frozen=True)
class StepOutcome:
    """What happened to one arrangement between two decision points (from the event log)."""

    collected_eur: float = 0.0
    contact_cost_eur: float = 0.0
    contacts: int = 0
    completed: bool = False
    broken: bool = False
    referred: bool = False
    collection_costs_eur: float = 0.0
    on_time_installments: int = 0
    missed_installments: int = 0
    breakdown_cost_eur: float = 0.0
    """The creditor's cost of a breakdown (config), charged when ``broken``."""
    days: float = 0.0
    """Days from the decision to the next decision point (or to the arrangement's end, or the horizon)."""
    balance_eur: float = 0.0
    """What the debtor still owed at the decision."""


RewardFn = Callable[[StepOutcome], float]


def outcome_from_chunks(
    chunks: list[tuple[EventType, int, dict[str, Any]]],
    breakdown_cost_eur: float,
    days: float = 0.0,
    balance_eur: float = 0.0,
) -> StepOutcome:
    """Summarise event-log appends (see :meth:`regsim.eventlog.EventLog.chunks_since`) of one arrangement."""
    collected = cost = collection = 0.0
    contacts = on_time = missed = 0
    completed = broken = referred = False
    for event, n, cols in chunks:
        if event == EventType.PAYMENT:
            collected += float(np.sum(cols["amount_eur"]))
        elif event == EventType.MESSAGE_SENT:
            cost += float(np.sum(cols["amount_eur"]))
            contacts += n
        elif event == EventType.INSTALLMENT_PAID:
            on_time += int(np.sum(np.asarray(cols["deferral_days"]) <= 0))
        elif event == EventType.INSTALLMENT_MISSED:
            missed += n
        elif event == EventType.COMPLETED:
            completed = True
        elif event == EventType.BROKEN:
            broken = True
            collection += float(np.sum(cols.get("collection_costs_eur", 0.0)))
        elif event == EventType.REFERRED:
            referred = True
    return StepOutcome(
        collected,
        cost,
        contacts,
        completed,
        broken,
        referred,
        collection,
        on_time,
        missed,
        breakdown_cost_eur,
        days,
        balance_eur,
    )


def collected_reward(outcome: StepOutcome, scale: float = 0.01) -> float:
    """Default: euros collected minus contact costs minus the creditor's cost of a breakdown, times ``scale``."""
    return scale * (outcome.collected_eur - outcome.contact_cost_eur - outcome.breakdown_cost_eur * outcome.broken)


def completion_reward(outcome: StepOutcome) -> float:
    """Completion only: +1 when the arrangement completes, -1 when it breaks, 0 otherwise."""
    return float(outcome.completed) - float(outcome.broken)


def burden_reward(outcome: StepOutcome, scale: float = 0.01, per_contact: float = 0.5) -> float:
    """Collected reward minus the debtor's burden: ``per_contact`` per contact and the collection costs charged."""
    return collected_reward(outcome, scale) - per_contact * outcome.contacts - scale * outcome.collection_costs_eur


def holding_reward(outcome: StepOutcome, scale: float = 0.01, annual_rate: float = 0.10) -> float:
    """The default reward minus the creditor's cost of waiting: ``balance * annual_rate / 365 * days``.

    The default reward puts no price on time, so deferring a payment is free to a learner while a breakdown is
    dear; a learner then defers everything and completes little within any horizon. Charging the outstanding
    balance for the days it stays outstanding (10% a year by default: cost of capital and administration; an
    assumption) gives every deferral its price.
    """
    waiting = outcome.balance_eur * annual_rate / 365.0 * outcome.days
    return collected_reward(outcome, scale) - scale * waiting


def completion_value_reward(
    outcome: StepOutcome,
    scale: float = 0.01,
    completion_bonus: float = 3.0,
    annual_rate: float = 1.0,
    cost_weight: float = 10.0,
) -> float:
    """What the KPIs value: euros, contact costs (weighted), a completed arrangement, and time.

    ``scale * (collected - cost_weight * contact_cost - breakdown_cost * broken)`` plus ``completion_bonus`` when
    the arrangement completes, minus the waiting charge ``scale * balance * annual_rate / 365 * days``. The
    bonus (3.0 = EUR 300 at the default scale) makes finishing a plan worth more than merely avoiding its
    breakdown, the waiting charge (100% a year by default: a strong preference for finishing soon) makes
    deferrals and reductions cost what they delay, and contact costs count tenfold (``cost_weight``) so that
    a learner reaches debtors through cheap channels first; all three are assumptions to tune with the
    creditor. With these defaults MaskablePPO beat static dunning on completion and on cost per euro
    collected (issue 5's evaluation).
    """
    money = outcome.collected_eur - cost_weight * outcome.contact_cost_eur - outcome.breakdown_cost_eur * outcome.broken
    waiting = outcome.balance_eur * annual_rate / 365.0 * outcome.days
    return scale * (money - waiting) + completion_bonus * outcome.completed


#: Named rewards accepted by the envs.
REWARDS: dict[str, RewardFn] = {
    "collected": collected_reward,
    "completion": completion_reward,
    "burden": burden_reward,
    "holding": holding_reward,
    "completion_value": completion_value_reward,
}


def resolve_reward(reward: str | RewardFn) -> RewardFn:
    """The reward function an env was given: a name in :data:`REWARDS` or a callable.

    Raises:
        ValueError: An unknown name (the message lists the allowed ones).
        TypeError: Neither a name nor a callable.
    """
    if isinstance(reward, str):
        if reward not in REWARDS:
            raise ValueError(f"reward: unknown reward {reward!r}; allowed: {sorted(REWARDS)} or a callable")
        return REWARDS[reward]
    if callable(reward):
        return reward
    raise TypeError(f"reward: expected a name in {sorted(REWARDS)} or a callable, got {type(reward)}")
