"""Benchmark of ``regsim/Arrangement-v0``: env steps per second, and the env's share of a training run.

Run from the repository root (one core)::

    python -m benchmarks.bench_env [--seconds 20] [--train-steps 8192]

1. Steps per second of a single env under random *masked* actions (``env.action_space.sample()`` draws among
   the allowed options), episodes reset as they end.
2. A ``MaskablePPO`` run of ``--train-steps`` steps on one env, with a wrapper timing every ``reset``/``step``:
   the share of the run's wall time spent inside the env.
3. The same algorithm trained on population rollouts (:mod:`agents.population_rollouts`): the share of the
   wall time spent simulating (rollout time minus the policy's forward passes).

Targets (issue 4): >= 10,000 steps/s; < 25% of training time inside the env. Results go to
``benchmarks/results/env.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import envs  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "env.json"


class TimedEnv(gym.Wrapper[Any, Any, Any, Any]):
    """Accumulates the wall time spent in ``reset`` and ``step`` of the wrapped env."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.seconds = 0.0
        self.steps = 0

    def reset(self, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = self.env.reset(**kwargs)
        self.seconds += time.perf_counter() - t
        return out

    def step(self, action: Any) -> Any:
        t = time.perf_counter()
        out = self.env.step(action)
        self.seconds += time.perf_counter() - t
        self.steps += 1
        return out

    def action_masks(self) -> np.ndarray:
        return self.env.unwrapped.action_masks()  # type: ignore[attr-defined, no-any-return]


def random_masked_steps(seconds: float) -> dict[str, float]:
    env = envs.ArrangementEnv()
    env.action_space.seed(0)
    env.reset(seed=0)
    steps = episodes = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            env.reset()
            episodes += 1
    elapsed = time.perf_counter() - start
    return {
        "steps": steps,
        "episodes": episodes,
        "seconds": elapsed,
        "steps_per_second": steps / elapsed,
        "steps_per_episode": steps / max(episodes, 1),
    }


def training_share(train_steps: int) -> dict[str, float]:
    import torch
    from sb3_contrib import MaskablePPO

    torch.set_num_threads(1)
    env = TimedEnv(envs.ArrangementEnv())
    model = MaskablePPO("MlpPolicy", env, n_steps=1024, batch_size=256, n_epochs=4, seed=0, verbose=0, device="cpu")
    start = time.perf_counter()
    model.learn(total_timesteps=train_steps)
    total = time.perf_counter() - start
    return {
        "train_steps": train_steps,
        "seconds": total,
        "env_seconds": env.seconds,
        "env_share": env.seconds / total,
        "learner_steps_per_second": train_steps / (total - env.seconds),
    }


def population_training_share(decisions: int, arrangements: int) -> dict[str, float]:
    """MaskablePPO trained on population rollouts: share of the wall time spent simulating.

    The simulator's time is the rollouts' time minus the policy's forward passes inside them.
    """
    import torch
    from sb3_contrib import MaskablePPO

    from agents import population_rollouts as pr
    from regsim import WorldConfig

    torch.set_num_threads(1)
    timers = {"collect": 0.0, "policy": 0.0}
    collect, decide = pr.collect_rollout, pr._Recorder.decide_batch

    def timed_collect(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = collect(*args, **kwargs)
        timers["collect"] += time.perf_counter() - t
        return out

    def timed_decide(self: Any, contexts: Any) -> Any:
        t = time.perf_counter()
        out = decide(self, contexts)
        timers["policy"] += time.perf_counter() - t
        return out

    pr.collect_rollout, pr._Recorder.decide_batch = timed_collect, timed_decide  # type: ignore[method-assign]
    try:
        config = WorldConfig()
        model = MaskablePPO(
            "MlpPolicy", envs.ArrangementEnv(config=config), batch_size=256, n_epochs=4, seed=0, verbose=0, device="cpu"
        )
        start = time.perf_counter()
        pr.learn_on_population(model, config, total_decisions=decisions, arrangements_per_rollout=arrangements)
        total = time.perf_counter() - start
    finally:
        pr.collect_rollout, pr._Recorder.decide_batch = collect, decide  # type: ignore[method-assign]
    simulator = timers["collect"] - timers["policy"]
    return {
        "decisions": float(model.num_timesteps),
        "seconds": total,
        "simulator_seconds": simulator,
        "policy_seconds": timers["policy"],
        "simulator_share": simulator / total,
        "decisions_per_second": model.num_timesteps / total,
        "simulated_decisions_per_second": model.num_timesteps / simulator,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the random-action run")
    parser.add_argument("--train-steps", type=int, default=8192, help="MaskablePPO steps for the share")
    parser.add_argument(
        "--population-decisions", type=int, default=60_000, help="decisions for the population-rollout training run"
    )
    parser.add_argument("--population-arrangements", type=int, default=2_000, help="arrangements per rollout")
    args = parser.parse_args()
    rand = random_masked_steps(args.seconds)
    train = training_share(args.train_steps)
    population = population_training_share(args.population_decisions, args.population_arrangements)
    print("regsim/Arrangement-v0 on one core")
    print(
        f"  random masked actions   {rand['steps_per_second']:>10,.0f} steps/s   target >= 10,000   "
        f"ratio {rand['steps_per_second'] / 10_000:.3f}  ({rand['steps_per_episode']:.1f} steps/episode)"
    )
    print(
        f"  MaskablePPO, {train['train_steps']:,} steps  {train['seconds']:>6.1f} s total, "
        f"{train['env_seconds']:.1f} s in env = {train['env_share']:.0%}   target < 25%"
    )
    print(f"  learner alone           {train['learner_steps_per_second']:>10,.0f} steps/s")
    print(
        f"  MaskablePPO on population rollouts, {population['decisions']:,.0f} decisions: "
        f"{population['seconds']:.1f} s total, simulator {population['simulator_share']:.0%} of it "
        f"({population['simulated_decisions_per_second']:,.0f} decisions/s simulated)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "random_masked": rand,
                "maskable_ppo": train,
                "population_rollouts": population,
                "targets": {"steps_per_second": 10_000, "env_share": 0.25},
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
