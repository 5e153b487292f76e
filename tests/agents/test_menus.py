"""The self-service menu policies (issue 18, item 3): rule-based menu, no menu, and the learning menu ``menu-ts``.

What must hold: the rule-based menu is today's default and the imposed plan shows nothing; the arrangement's own
decisions are the base policy's; ``menu-ts`` shows only allowed levels, logs the whole menu's propensity as the
product of its slots' probabilities, learns from a menu's delayed outcome (its run-off value to go, read from the
log), and saves and loads bit for bit. With the ownership effect off, no gain is credited to choice as such: what
a menu policy changes does not depend on the ownership parameter at all.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import agents
import agents.menus as menus_module
from agents.artifact import load_policy
from agents.menus import MenuThompson, menu_rewards
from regsim import WorldConfig, simulate
from regsim.eventlog import EventType, event_codes
from regsim.menu import SLOT_NAMES, MenuBatch, MenuDecisionBatch, default_menu
from regsim.metrics import arrangement_outcomes, runoff_value
from regsim.rewards import RewardCosts

COSTS = RewardCosts(breakdown_cost_eur=150.0)


def world(**self_service: Any) -> WorldConfig:
    return WorldConfig().with_overrides(self_service={"enabled": True, "visit": {"follow_prob": 1.0}, **self_service})


class Recorder:
    """A rule-based menu that keeps every menu batch it was asked for."""

    def __init__(self) -> None:
        self.inner = agents.make("rule-based-menu")
        self.batches: list[MenuBatch] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def decide_menu(self, menus: MenuBatch) -> MenuDecisionBatch:
        self.batches.append(menus)
        return default_menu(menus)


@pytest.fixture(scope="module")
def menu_batches() -> list[MenuBatch]:
    rec = Recorder()
    simulate(world(), rec, arrangements=150, months=6, seed=4)
    assert sum(len(b) for b in rec.batches) > 30
    return rec.batches


def _kpis(config: WorldConfig, policy: str, **kwargs: Any) -> pd.DataFrame:
    result = simulate(config, agents.make(policy, **kwargs), arrangements=150, months=6, seed=9)
    return arrangement_outcomes(result.events)


# ------------------------------------------------------------------------------------------------------------
# Rule-based menu and no menu
# ------------------------------------------------------------------------------------------------------------
def test_rule_based_menu_is_the_default_and_no_menu_shows_nothing(menu_batches: list[MenuBatch]) -> None:
    rule, none = agents.make("rule-based-menu"), agents.make("no-menu")
    for b in menu_batches:
        np.testing.assert_array_equal(rule.decide_menu(b).levels, default_menu(b).levels)  # type: ignore[attr-defined]
        assert not none.decide_menu(b).levels.any()  # type: ignore[attr-defined]
    # A policy without decide_menu gets the same menus: the outcomes are static dunning's.
    config = world()
    pd.testing.assert_frame_equal(_kpis(config, "rule-based-menu"), _kpis(config, "static-dunning"))


def test_a_menu_policy_is_not_its_own_base() -> None:
    with pytest.raises(ValueError, match="base"):
        agents.make("menu-ts", base="no-menu")


# ------------------------------------------------------------------------------------------------------------
# menu-ts: deciding
# ------------------------------------------------------------------------------------------------------------
def test_menu_ts_shows_only_allowed_levels_with_the_product_of_the_slots_probabilities(
    menu_batches: list[MenuBatch],
) -> None:
    policy = MenuThompson(seed=3, propensity_samples=4096)
    for b in menu_batches:
        out = policy.decide_menu(b)
        for slot in range(len(SLOT_NAMES)):
            assert b.slot_mask(slot)[np.arange(len(b)), out.levels[:, slot]].all()
        # Untrained, every head's allowed levels tie in distribution: each slot's probability is 1 / allowed.
        allowed = np.stack([b.slot_mask(s).sum(axis=1) for s in range(len(SLOT_NAMES))], axis=1)
        exact = 1.0 / allowed.prod(axis=1)
        np.testing.assert_allclose(np.log(out.propensity), np.log(exact), atol=0.25)
        assert (out.propensity[allowed.max(axis=1) == 1] == 1.0).all()


def test_menu_ts_learns_which_levels_pay(monkeypatch: pytest.MonkeyPatch, menu_batches: list[MenuBatch]) -> None:
    policy = MenuThompson(seed=5)
    for b in menu_batches:
        policy.decide_menu(b)
    levels = np.concatenate([p[2] for p in policy._pending])
    balance = np.concatenate([p[3] for p in policy._pending])
    # A made-up outcome: a discount costs, no deferral costs; learning must find both.
    reward = (np.maximum(balance / 100.0, 1.0)) * (1.0 - 2.0 * (levels[:, 3] > 0) - 1.0 * (levels[:, 0] == 0))
    monkeypatch.setattr(menus_module, "menu_rewards", lambda events, ids, costs: reward)
    for _ in range(4):
        assert policy.learn_from_log(pa.table({}), COSTS) == len(reward)
        for b in menu_batches:
            policy.decide_menu(b)
        levels = np.concatenate([p[2] for p in policy._pending])
        balance = np.concatenate([p[3] for p in policy._pending])
        reward = (np.maximum(balance / 100.0, 1.0)) * (1.0 - 2.0 * (levels[:, 3] > 0) - 1.0 * (levels[:, 0] == 0))
    greedy = MenuThompson(deterministic=True)
    greedy.load_state_dict(policy.state_dict())
    shown = [(b, greedy.decide_menu(b)) for b in menu_batches]
    assert all((out.propensity == 1.0).all() for _, out in shown)
    discount = np.concatenate([out.levels[:, 3] for _, out in shown])
    could = np.concatenate([b.slot_mask(3)[:, 1:].any(axis=1) for b, _ in shown])
    deferral = np.concatenate([out.levels[:, 0] for _, out in shown])
    can_defer = np.concatenate([b.slot_mask(0)[:, 1:].any(axis=1) for b, _ in shown])
    assert could.any() and not discount.any()
    assert can_defer.sum() > 10 and (deferral[can_defer] > 0).mean() > 0.9


# ------------------------------------------------------------------------------------------------------------
# menu-ts: the delayed outcome from the log
# ------------------------------------------------------------------------------------------------------------
def test_a_menus_reward_is_its_arrangements_runoff_value_from_the_menu_on() -> None:
    config = world(ownership={"enabled": True})
    policy = MenuThompson(seed=2)
    result = simulate(config, policy, arrangements=120, months=12, seed=6)
    events = result.events
    codes = event_codes(events)
    shown = np.flatnonzero(codes == EventType.MENU_SHOWN)
    ids = events.column("decision_id").to_numpy(zero_copy_only=False)[shown].astype(np.int64)
    got = menu_rewards(events, ids, COSTS)
    arr = events.column("arrangement_id").to_numpy()[shown]
    times = events.column("time").to_numpy()[shown]
    total = runoff_value(arrangement_outcomes(events))
    for k in range(0, len(ids), max(1, len(ids) // 15)):
        before = pc.and_(pc.equal(events["arrangement_id"], int(arr[k])), pc.less(events["time"], float(times[k])))
        value_before = runoff_value(arrangement_outcomes(events.filter(before))).iloc[0]
        assert got[k] == pytest.approx(0.01 * (total.loc[arr[k]] - value_before), abs=1e-9)
    assert np.isnan(menu_rewards(events, np.array([10**12]), COSTS)).all()
    assert policy.learn_from_run(result) == len(ids) and policy.learned == len(ids)


# ------------------------------------------------------------------------------------------------------------
# menu-ts: state and artifact
# ------------------------------------------------------------------------------------------------------------
def test_menu_ts_saves_and_loads_bit_for_bit(tmp_path: Path, menu_batches: list[MenuBatch]) -> None:
    policy = MenuThompson(seed=7, noise_variance=0.5)
    result = simulate(world(), policy, arrangements=100, months=6, seed=1)
    policy.learn_from_run(result)
    folder = policy.save(tmp_path / "policy")
    loaded = load_policy(folder)
    assert isinstance(loaded, MenuThompson) and loaded.config == policy.config
    for b in menu_batches[:5]:
        a, c = policy.decide_menu(b), loaded.decide_menu(b)
        np.testing.assert_array_equal(a.levels, c.levels)
        np.testing.assert_array_equal(a.propensity, c.propensity)
    greedy = load_policy(folder, deterministic=True)
    assert isinstance(greedy, MenuThompson) and greedy.config.deterministic
    with pytest.raises(TypeError, match="deterministic"):
        load_policy(folder, temperature=1.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("prior_variance", 0.0), ("noise_variance", -1.0), ("propensity_samples", 0), ("feature_set", "x"), ("seed", -1)],
)
def test_menu_ts_refuses_bad_hyperparameters_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        agents.make("menu-ts", **{field: value})


# ------------------------------------------------------------------------------------------------------------
# Ownership off: no gain credited to choice as such
# ------------------------------------------------------------------------------------------------------------
@functools.cache
def _imposed(enabled: bool, theta: float) -> pd.DataFrame:
    """The imposed plan's outcomes (no menu), once per ownership setting."""
    return _kpis(world(ownership={"enabled": enabled, "theta": theta}), "no-menu")


@pytest.mark.parametrize("policy", ["menu-ts", "rule-based-menu"])
def test_with_ownership_off_what_a_menu_changes_owes_nothing_to_choice_as_such(policy: str) -> None:
    """Off, the menu policy's difference to the imposed plan is the same whatever the ownership parameter; on,
    the parameter moves it (so the check can tell): a gain with ownership off comes from the options' terms."""

    def gain(enabled: bool, theta: float) -> pd.Series:
        config = world(ownership={"enabled": enabled, "theta": theta})
        kwargs = {"seed": 1} if policy == "menu-ts" else {}
        cols = ["net_recovery_eur", "completed"]
        return (_kpis(config, policy, **kwargs)[cols] - _imposed(enabled, theta)[cols]).sum()

    pd.testing.assert_series_equal(gain(False, 0.3), gain(False, 0.9))
    on = gain(True, 0.3) - gain(True, 0.9)
    assert on.abs().sum() > 0


def test_online_training_learns_the_menus_from_each_runs_log(tmp_path: Path) -> None:
    from agents.online import train_online

    policy = MenuThompson(seed=4)
    training = train_online(policy, world(), steps=600, seed=2, months=6, checkpoint_dir=tmp_path)
    assert len(training.runs) >= 2 and policy.learned == policy.decisions > 0
    assert sum(int(a.n.sum()) for a in policy.arms.values()) == len(SLOT_NAMES) * policy.learned
