"""MaskablePPO on the menu decision through the one training loop, and the menu network as a policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.artifact import load_policy
from agents.sb3_menu import SB3MenuPolicy
from agents.train import train_policy
from envs.self_service_vec import SelfServiceVecEnv
from regsim import WorldConfig
from regsim.menu import MenuBatch

MONTHS = 6
CONFIG = WorldConfig().with_overrides(self_service={"enabled": True})


def _train(out: Path, seed: int = 1) -> Path:
    return train_policy(
        "maskable-ppo",
        config=CONFIG,
        steps=128,
        seed=seed,
        out=out,
        decision="menu",
        n_envs=8,
        env_kwargs={"months": MONTHS},
        algo_kwargs={"n_steps": 8, "batch_size": 32, "n_epochs": 2},
        eval_arrangements=0,
        tensorboard=False,
        progress=False,
        checkpoint_dir=out / "checkpoints",
        checkpoint_every=64,
    )


def _menus(seed: int = 2) -> MenuBatch:
    vec = SelfServiceVecEnv(12, months=MONTHS, search=2)
    vec.reset(seed=seed)
    points = vec.world.menu_points()
    assert points is not None
    return points[1]


def test_training_on_menus_is_reproducible_and_writes_a_menu_artifact(tmp_path: Path) -> None:
    folder = _train(tmp_path / "a")
    again = _train(tmp_path / "b")
    policy, twin = load_policy(folder), load_policy(again)
    assert isinstance(policy, SB3MenuPolicy) and isinstance(twin, SB3MenuPolicy)
    assert policy.version == twin.version  # the same seed, the same weights
    assert policy.base_name == "static-dunning" and policy.name == "sb3-menu-maskable-ppo"
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir()) == ["vec-128", "vec-64"]
    menus = _menus()
    chosen = policy.decide_menu(menus)
    offsets = np.asarray(menus.space.offsets)
    assert np.take_along_axis(menus.mask, chosen.levels + offsets, axis=1).all()  # only allowed levels
    np.testing.assert_array_equal(chosen.propensity, 1.0)
    np.testing.assert_array_equal(chosen.levels, twin.decide_menu(menus).levels)


def test_sampled_menus_are_allowed_and_their_propensity_is_the_product_of_the_slots(tmp_path: Path) -> None:
    folder = _train(tmp_path / "a")
    sampled = load_policy(folder, deterministic=False, seed=4)
    assert isinstance(sampled, SB3MenuPolicy)
    menus = _menus()
    chosen = sampled.decide_menu(menus)
    z = sampled.logits(menus)
    expected = np.ones(len(menus))
    for slot, (off, k) in enumerate(zip(menus.space.offsets, menus.space.nvec, strict=True)):
        allowed = menus.mask[:, off : off + k]
        assert allowed[np.arange(len(menus)), chosen.levels[:, slot]].all()
        p = np.where(allowed, np.exp(z[:, off : off + k] - z[:, off : off + k].max(axis=1, keepdims=True)), 0.0)
        p /= p.sum(axis=1, keepdims=True)
        expected *= p[np.arange(len(menus)), chosen.levels[:, slot]]
    np.testing.assert_allclose(chosen.propensity, expected, rtol=1e-12)
    assert (chosen.propensity < 1).any()  # it did draw


def test_the_menu_decision_is_refused_where_it_cannot_be_learned(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'maskable-ppo' only"):
        train_policy("ppo", config=CONFIG, steps=8, seed=0, out=tmp_path / "p", decision="menu")
    with pytest.raises(ValueError, match=r"self_service\.enabled"):
        train_policy("maskable-ppo", config=WorldConfig(), steps=8, seed=0, out=tmp_path / "q", decision="menu")
    with pytest.raises(ValueError, match="decision: unknown"):
        train_policy("maskable-ppo", config=CONFIG, steps=8, seed=0, out=tmp_path / "r", decision="menus")
    with pytest.raises(ValueError, match="a menu step takes one of"):
        train_policy(
            "maskable-ppo", config=CONFIG, steps=8, seed=0, out=tmp_path / "s", decision="menu",
            env_kwargs={"reward": "holding"},
        )  # fmt: skip


def test_an_experiment_config_refuses_the_menu_decision_for_other_kinds() -> None:
    from experiments.config_agents import AgentConfig

    ok = AgentConfig(name="m", kind="maskable-ppo", train={"steps": 10, "decision": "menu"})
    assert ok.train.decision == "menu"
    with pytest.raises(ValueError, match="'maskable-ppo' only"):
        AgentConfig(name="m", kind="ppo", train={"steps": 10, "decision": "menu"})
    with pytest.raises(ValueError, match="one process"):
        AgentConfig(name="m", kind="maskable-ppo", train={"steps": 10, "decision": "menu", "workers": 2})


def test_an_agents_deterministic_switch_decides_how_its_artifact_is_evaluated(tmp_path: Path) -> None:
    """``deterministic`` of an agent is the artifact's loading option: greedy menus (propensity 1) or draws."""
    from agents.menus import MenuThompson
    from agents.online import train_bandit
    from experiments.config_agents import AgentConfig
    from experiments.runner import _evaluated

    folder, _ = train_bandit(
        "menu-ts", CONFIG, steps=300, seed=1, world_seed=2, months=MONTHS, out=tmp_path / "ts", progress=False
    )
    menus = _menus()

    def evaluated(deterministic: bool | None) -> MenuThompson:
        agent = AgentConfig(name="ts", kind="menu-ts", train={"steps": 300}, deterministic=deterministic)
        made = _evaluated(agent, folder, CONFIG)
        policy = load_policy(made) if isinstance(made, str) else made()
        assert isinstance(policy, MenuThompson)
        return policy

    assert evaluated(None).config.deterministic is False  # the artifact's own: as trained, drawing
    assert (evaluated(None).decide_menu(menus).propensity < 1).any()
    greedy = evaluated(True)
    assert greedy.config.deterministic is True
    np.testing.assert_array_equal(greedy.decide_menu(menus).propensity, 1.0)
    with pytest.raises(ValueError, match="deterministic: applies to"):
        AgentConfig(name="b", kind="linucb", train={"steps": 10}, deterministic=True)


def test_regsim_train_learns_the_menu_on_a_population_without_self_service(tmp_path: Path) -> None:
    """``regsim train --decision menu`` switches self-service on (the menu exists only then) and writes a menu
    artifact; another algorithm is refused with the allowed one named."""
    from tests.experiments.conftest import regsim

    out = tmp_path / "m"
    done = regsim(
        "train", "--policy", "maskable-ppo", "--decision", "menu", "--steps", "64", "--n-envs", "8",
        "--algo-kwargs", '{"n_steps": 8, "batch_size": 32, "n_epochs": 1}', "--out", str(out), "--quiet",
        "--no-tensorboard",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert isinstance(load_policy(out / "policy"), SB3MenuPolicy)
    refused = regsim("train", "--policy", "ppo", "--decision", "menu", "--steps", "8", "--out", str(tmp_path / "p"))
    assert refused.returncode == 2 and "'maskable-ppo' only" in refused.stderr


def test_a_menu_training_resumed_from_its_checkpoint_ends_with_the_same_weights(tmp_path: Path) -> None:
    import shutil

    whole = load_policy(_train(tmp_path / "whole"))
    resumed_out = tmp_path / "resumed"
    (resumed_out / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "whole" / "checkpoints" / "vec-64", resumed_out / "checkpoints" / "vec-64")
    resumed = load_policy(_train(resumed_out))
    assert isinstance(whole, SB3MenuPolicy) and isinstance(resumed, SB3MenuPolicy)
    assert resumed.version == whole.version  # weights bit for bit (the version is their digest)
