"""Training on vector rollouts: the curve contract, the slots' state, and checkpoints that resume exactly."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sb3_contrib import MaskablePPO

from agents.train import train_policy
from agents.vector_training import CHECKPOINT_PREFIX, learn_on_vector
from envs.sb3_vec import ArrangementSB3VecEnv
from regsim import WorldConfig

#: 8 slots x 8 steps: 64 transitions per update, 4 updates.
TINY: dict[str, Any] = {
    "config": WorldConfig(),
    "steps": 256,
    "seed": 3,
    "env_kwargs": {"months": 2, "reward": "completion_value"},
    "algo_kwargs": {"n_steps": 8, "batch_size": 32, "n_epochs": 2},
    "tensorboard": False,
    "eval_arrangements": 0,
    "progress": False,
    "checkpoint_every": 64,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _random_allowed(masks: np.ndarray, vec: ArrangementSB3VecEnv, rng: np.random.Generator) -> np.ndarray:
    """A uniformly drawn allowed option per part and slot."""
    space = vec.venv.space
    parts = [masks[:, off : off + n] for off, n in zip(space.offsets, space.nvec, strict=True)]
    return np.stack([np.argmax(rng.random(p.shape) * p, axis=1) for p in parts], axis=1)


def _steps(vec: ArrangementSB3VecEnv, n: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        vec.step_async(_random_allowed(vec.action_masks(), vec, rng))
        obs, rewards, dones, _ = vec.step_wait()
        out.append((obs, rewards, dones, vec.action_masks()))
    return out


def test_the_slots_state_continues_mid_episode_exactly() -> None:
    vec = ArrangementSB3VecEnv(16, months=3)
    vec.seed(5)
    vec.reset()
    _steps(vec, 25, seed=0)  # every slot mid-episode, some in their second or third
    other = ArrangementSB3VecEnv(16, months=3)
    other.seed(99)
    other.reset()
    other.set_state(vec.get_state())
    for a, b in zip(_steps(vec, 30, seed=1), _steps(other, 30, seed=1), strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_set_state_refuses_another_shape() -> None:
    vec = ArrangementSB3VecEnv(4, months=2)
    vec.reset()
    with pytest.raises(ValueError, match="slots"):
        ArrangementSB3VecEnv(5, months=2).set_state(vec.get_state())
    with pytest.raises(ValueError, match="ArrangementVecEnv"):
        vec.set_state(pickle.dumps({"not": "an env"}))


def test_a_training_resumed_from_a_checkpoint_ends_exactly_as_the_uninterrupted_one(tmp_path: Path) -> None:
    full = train_policy("maskable-ppo", out=tmp_path / "a", checkpoint_dir=tmp_path / "a_ck", n_envs=8, **TINY)
    written = sorted((tmp_path / "a_ck").iterdir(), key=lambda p: int(p.name.split("-")[-1]))
    assert len(written) >= 3
    # Resume from the second checkpoint in a process whose global generators have moved on.
    middle = written[1]
    shutil.copytree(middle, tmp_path / "b_ck" / middle.name)
    torch.manual_seed(12345)
    np.random.seed(12345)  # noqa: NPY002 - SB3's global generator, which the checkpoint must restore
    resumed = train_policy("maskable-ppo", out=tmp_path / "b", checkpoint_dir=tmp_path / "b_ck", n_envs=8, **TINY)
    # It did resume (a fresh training would have written the first checkpoint again) ...
    assert written[0].name not in {p.name for p in (tmp_path / "b_ck").iterdir()}
    # ... and ends where the uninterrupted training ended: weights, curve, training metrics.
    assert (resumed / "weights.pt").read_bytes() == (full / "weights.pt").read_bytes()
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a" / "learning_curve.parquet"),
        pd.read_parquet(tmp_path / "b" / "learning_curve.parquet"),
        check_exact=True,
    )


def test_a_checkpoint_of_another_training_is_refused(tmp_path: Path) -> None:
    train_policy("maskable-ppo", out=tmp_path / "a", checkpoint_dir=tmp_path / "ck", n_envs=8, **TINY)
    with pytest.raises(ValueError, match="another training"):
        train_policy("maskable-ppo", out=tmp_path / "b", checkpoint_dir=tmp_path / "ck", n_envs=4, **TINY)


def test_the_curve_counts_every_transition_and_episode(tmp_path: Path) -> None:
    vec = ArrangementSB3VecEnv(8, months=2, reward="completion_value")
    model = MaskablePPO("MlpPolicy", vec, n_steps=8, batch_size=32, n_epochs=1, seed=0, device="cpu")
    # The same rewards and episode ends, seen from outside the training loop.
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    step_wait = vec.step_wait

    def recording() -> Any:
        obs, rewards, dones, infos = step_wait()
        seen.append((rewards.astype(np.float64), dones.copy()))
        return obs, rewards, dones, infos

    vec.step_wait = recording  # type: ignore[method-assign]
    training = learn_on_vector(model, total_steps=192, identity={}, checkpoint_dir=tmp_path, progress=False)
    rewards = np.array([r for r, _ in seen])
    dones = np.array([d for _, d in seen])
    assert rewards.shape == (24, 8)
    # Per rollout of 8 vector steps: the mean step reward.
    per_rollout = rewards.reshape(3, 64).mean(axis=1)
    curve = [(s, v) for s, m, v in training.curve if m == "reward_per_decision"]
    assert [s for s, _ in curve] == [64, 128, 192]
    np.testing.assert_allclose([v for _, v in curve], per_rollout, rtol=1e-12)
    # Episode returns: each slot's rewards summed between its episode ends.
    returns = []
    for slot in range(8):
        total = 0.0
        for r, d in zip(rewards[:, slot], dones[:, slot], strict=True):
            total += r
            if d:
                returns.append(total)
                total = 0.0
        assert training.slot_returns[slot] == pytest.approx(total, abs=1e-9)
    assert training.episodes == int(dones.sum()) == len(returns) > 0
    assert len(returns) <= 100 and sorted(training.last_returns) == pytest.approx(sorted(returns), abs=1e-9)
    assert [p.name for p in tmp_path.iterdir()] == [f"{CHECKPOINT_PREFIX}192"]


def test_training_on_slots_in_worker_processes_gives_the_same_policy(tmp_path: Path) -> None:
    """``workers`` changes where the slots run, not what is learned: the same weights and curve, bit for bit."""
    one = train_policy("maskable-ppo", out=tmp_path / "one", n_envs=8, workers=1, **TINY)
    two = train_policy("maskable-ppo", out=tmp_path / "two", n_envs=8, workers=2, **TINY)
    assert (one / "weights.pt").read_bytes() == (two / "weights.pt").read_bytes()
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "one" / "learning_curve.parquet"),
        pd.read_parquet(tmp_path / "two" / "learning_curve.parquet"),
        check_exact=True,
    )
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["training"]["workers"] == 2
