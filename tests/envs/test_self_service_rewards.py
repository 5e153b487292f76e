"""The menu env's reward is that of the one reward module: an episode's rewards add up to what its world logged.

The world's outcome events of an episode's arrangement, from its first menu on, are read as they are recorded
and summed by hand as the run-off verdict counts them (payments in, messages and staff cases out, a concession
not charged again since it came off the balance, EUR 300 per completion); the episode's return is that x 0.01.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from envs.self_service import SelfServiceEnv
from envs.self_service_vec import SelfServiceVecEnv
from regsim import WorldConfig
from regsim.eventlog import EventType
from regsim.vector_world import VectorWorld

MONTHS = 8


def _widest_menu(env: SelfServiceEnv) -> np.ndarray:
    """Every slot at the highest level the rules allow (the rule-based menu)."""
    mask, space = env.action_masks(), env.menu_space
    return np.array(
        [int(np.flatnonzero(mask[o : o + n]).max()) for o, n in zip(space.offsets, space.nvec, strict=True)]
    )


def _by_hand(events: list[tuple[EventType, float]]) -> float:
    euros = 0.0
    for event, amount in events:
        if event is EventType.PAYMENT:
            euros += amount
        elif event in (EventType.MESSAGE_SENT, EventType.CASE_RESOLVED):
            euros -= amount
    completed = any(e is EventType.COMPLETED for e, _ in events)
    return 0.01 * euros + 3.0 * completed


def test_an_episodes_rewards_add_up_to_its_logged_events(monkeypatch: pytest.MonkeyPatch) -> None:
    config = WorldConfig().with_overrides(self_service={"visit": {"follow_prob": 0.9}})
    env = SelfServiceEnv(config=config, months=MONTHS, search=4)
    watch: dict[str, Any] = {"gid": None, "events": []}
    record = VectorWorld.record

    def logged(world: VectorWorld, event: EventType, t: Any, rows: np.ndarray, **columns: Any) -> None:
        record(world, event, t, rows, **columns)
        if watch["gid"] is None or not world.keeps(event):
            return
        amount = np.broadcast_to(np.asarray(columns.get("amount_eur", 0.0), dtype=np.float64), np.shape(rows))
        for k in np.flatnonzero(world.gid[rows] == watch["gid"]):
            watch["events"].append((event, float(amount[k])))

    monkeypatch.setattr(VectorWorld, "record", logged)
    kinds: set[EventType] = set()
    _, info = env.reset(seed=4)
    for _ in range(12):
        watch["gid"], watch["events"] = info["arrangement_id"], []
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, info = env.step(_widest_menu(env))
            total += reward
            done = terminated or truncated
        watch["gid"] = None
        kinds |= {e for e, _ in watch["events"]}
        assert total == pytest.approx(_by_hand(watch["events"]), abs=1e-9)
        _, info = env.reset()
    # The episodes held what the reward must get right: concessions (not charged again), payments, messages.
    assert {EventType.CONCESSION, EventType.PAYMENT, EventType.MESSAGE_SENT} <= kinds


def test_only_rewards_that_sum_over_events_are_taken() -> None:
    with pytest.raises(ValueError, match=r"reward: 'holding'.*allowed"):
        SelfServiceVecEnv(2, months=MONTHS, reward="holding")
    with pytest.raises(ValueError, match="reward_kwargs"):
        SelfServiceVecEnv(2, months=MONTHS, reward_kwargs={"nope": 1.0})
