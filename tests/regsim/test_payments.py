"""How debtors pay: the chance ``q`` of paying part when short of the full amount is charged once.

A debtor short of the full amount sets out to pay with ``q`` already in their chance (mechanism 1,
docs/mechanisms.md); one who sets out must then be allowed to pay part. Only a debtor who could pay in full in
the morning is left to the "may pay part" draw, for the case that they are short by the payment hour.
"""

from __future__ import annotations

import numpy as np
import pytest

import agents
from regsim import WorldConfig
from regsim.payments import PAY_TOLERANCE_EUR
from regsim.world import World


@pytest.mark.parametrize("seed", [1, 2])
def test_a_debtor_short_in_the_morning_who_sets_out_to_pay_may_pay_part(seed: int) -> None:
    config = WorldConfig()
    world = World(config, agents.make("static-dunning"), arrangements=1500, months=4, seed=seed)
    arr = config.arrangements
    short_goers, full_goers = [], []
    draw = world._draw_payments

    def spy(among: np.ndarray | None = None) -> None:
        before = np.isfinite(world.pay_time)
        draw(among)
        went = np.flatnonzero(np.isfinite(world.pay_time) & ~before)
        owed = world.ledger.sched.owed_now(went, world._day_of(went), arr.pay_window_days)
        short = world.state.cash[went] < owed - PAY_TOLERANCE_EUR
        short_goers.append(world.pay_partial[went[short]])
        full_goers.append(world.pay_partial[went[~short]])

    world._draw_payments = spy  # type: ignore[method-assign]
    world.run()
    short_may, full_may = np.concatenate(short_goers), np.concatenate(full_goers)
    assert len(short_may) > 100 and len(full_may) > 1000
    assert short_may.all()  # q is in their chance to set out already
    # The others draw it: a binomial share of q (0.3), within 4 standard errors.
    q, n = arr.partial_payment_prob, len(full_may)
    assert abs(full_may.mean() - q) < 4 * np.sqrt(q * (1 - q) / n)
