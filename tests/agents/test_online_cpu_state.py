"""The bandits' small state, which a server takes on every transaction, written from kept JSON.

:meth:`agents.bandits.base.LinearBandit.state_dict` keeps the JSON of the action space and of the exploration
generator's state with what it encodes and writes it again only when that changes. Whatever the bandit does in
between (deciding, drawing, learning, loading a state, meeting an equal or another space), the state must be
what encoding everything afresh gives.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest

import agents
from agents.bandits.base import LinearBandit, _space_to_json
from regsim import WorldConfig
from regsim.decision import ActionSpace, Feedback
from tests.regsim.test_rules import make_batch, random_rows


def _assert_fresh(policy: LinearBandit) -> None:
    """The small state equals the one encoded afresh from the bandit's space, generator and counters."""
    state = policy.state_dict(arrays=False)
    assert state["rng"] == json.dumps(policy.rng.bit_generator.state)
    assert state["space"] == ("" if policy.space is None else json.dumps(_space_to_json(policy.space)))
    assert (state["decisions"], state["learned"], state["dropped"]) == (
        policy.decisions,
        policy.learned,
        policy.dropped,
    )
    full = policy.state_dict()
    assert {k: v for k, v in full.items() if np.ndim(v) == 0}.keys() == state.keys()
    for name, arms in policy.arms.items():
        assert state[f"{name}.reward_sum"] == arms.reward_sum


@pytest.mark.parametrize("name", ["epsilon-greedy", "linear-ts", "linucb"])
def test_the_small_state_follows_every_draw_and_space(name: str) -> None:
    policy: Any = agents.make(name, seed=2)
    _assert_fresh(policy)  # (no space yet)
    batch, _ = make_batch(random_rows(40, seed=1))
    rng = np.random.default_rng(0)
    for step in range(6):
        decided = policy.decide_batch(batch.take(np.arange(step, 40, 3)))
        _assert_fresh(policy)
        rows = np.arange(step, 40, 3)
        policy.update(
            Feedback(
                decision_ids=np.arange(len(rows)),
                contexts=batch.take(rows),
                actions=decided.actions,
                propensity=decided.propensity,
                rewards=rng.normal(size=len(rows)),
                censored=np.zeros(len(rows), dtype=bool),
            )
        )
        _assert_fresh(policy)
    # Another generator state loaded, then an equal space object (as a world's after loading), then a new space.
    other: Any = agents.make(name, seed=9)
    other.decide_batch(batch)
    policy.load_state_dict(other.state_dict())
    _assert_fresh(policy)
    assert policy.state_dict(arrays=False)["rng"] == other.state_dict(arrays=False)["rng"]
    equal = ActionSpace.from_config(WorldConfig().decisions)
    assert equal == batch.space and equal is not batch.space
    policy._ensure_space(equal)
    assert policy.space is equal
    _assert_fresh(policy)
    policy.space = dataclasses.replace(equal, deferral_days=equal.deferral_days[:-1])  # (only its JSON read here)
    _assert_fresh(policy)
