"""Benchmark of ``regsim/Arrangement-v0``, ``regsim/ArrangementVec-v0`` and the self-service menu envs: steps/s, shares.

Run from the repository root (one core)::

    python -m benchmarks.bench_env [--seconds 20] [--train-steps 8192] [--vec-envs 64 256 1024 2048 4096] \
        [--vec-seconds 20] [--vec-train-envs 2048 4096] [--vec-n-steps 16] [--vec-train-steps 65536] \
        [--menu-envs 1 64 256] [--menus-only]

1. Steps per second of a single env under random *masked* actions (``env.action_space.sample()`` draws among
   the allowed options), episodes reset as they end.
2. A ``MaskablePPO`` run of ``--train-steps`` steps on one env, with a wrapper timing every ``reset``/``step``:
   the share of the run's wall time spent inside the env.
3. What quiet-day skipping buys (:mod:`regsim.quiet_days`): the vector env at the training path's number of
   slots (``--quiet-envs``) with ``skip_quiet_days`` on (the default) and off, steps per second of each and
   their ratio, measured in the same run.
4. The vector env ``regsim/ArrangementVec-v0`` for each ``--vec-envs`` N: env steps per second summed over the
   slots under random masked actions (the ratio to step 1, measured in the same run, is what to compare across
   machines), and the env's share of a ``MaskablePPO`` run on the SB3 adapter (:mod:`envs.sb3_vec`) for each
   ``--vec-train-envs`` N.
5. The training path of the experiments: ``agents.train.train_policy`` training an experiment config's agent
   exactly as ``regsim run`` does (``--path-config``, default the quickstart's MaskablePPO: 2,048 vector-env
   slots x 8 steps, minibatches of 512, 5 epochs) for ``--path-steps`` decisions: the share of the training's
   wall time inside the env (the SB3 adapter's ``reset``/``step_wait``), the rest being SB3's rollout loop, the
   policy's forward passes and the updates.

6. The SB3 adapter with its slots split over worker processes (:class:`envs.shards.SlotShards`) for each
   ``--worker-envs`` N and ``--workers`` count: steps per second of wall time under random masked actions, with
   the ratio to one process (``workers`` 1, measured in the same run) and the workers' start-up time. Every
   worker needs a core of its own: run it on a quiet machine.

7. The self-service menu envs (issue 18): ``regsim/SelfService-v0`` (one menu point per step) under random
   masked menus for ``--seconds``, and ``regsim/SelfServiceVec-v0`` for each ``--menu-envs`` N for
   ``--vec-seconds``, each with its ratio to the arrangement env's steps per second measured in the same run
   (``Arrangement-v0`` for the single env; ``ArrangementVec-v0`` at the same N, measured for these N). A menu
   step costs more than a decision step: between two menu points the world answers several of the
   arrangement's own decision points, and a reset runs debtors until one reaches a menu point.
   ``--menus-only`` runs 1., the arrangement vector env at the ``--menu-envs`` N and 7. alone (results to
   ``benchmarks/results/env_menus.json``).

Steps per second are given per second of wall time and per second of this process's CPU time
(``time.process_time``): on a machine shared with other work the wall-clock rate understates what one core
does, the CPU rate does not.

Targets: >= 10,000 steps/s; < 25% of training time inside the env. Results go to
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
        return self.env.unwrapped.action_masks()  # type: ignore[attr-defined]


def random_masked_steps(seconds: float) -> dict[str, float]:
    env = envs.ArrangementEnv()
    env.action_space.seed(0)
    env.reset(seed=0)
    return _timed_steps(env, env.action_space.sample, seconds)


def _timed_steps(env: Any, action: Any, seconds: float, at_least_one: bool = False) -> dict[str, float]:
    """Step a reset single env with ``action()`` for ``seconds`` (resetting at each episode's end): its rates."""
    steps = episodes = 0
    start, cpu = time.perf_counter(), time.process_time()
    while (at_least_one and steps == 0) or time.perf_counter() - start < seconds:
        *_, terminated, truncated, _ = env.step(action())
        steps += 1
        if terminated or truncated:
            env.reset()
            episodes += 1
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "steps": steps,
        "episodes": episodes,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "steps_per_second": steps / elapsed,
        "cpu_steps_per_second": steps / cpu,
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


def random_masked_masks(masks: np.ndarray, offsets: tuple[int, ...], nvec: tuple[int, ...], rng: Any) -> np.ndarray:
    """A uniformly random allowed option per part and slot, vectorised over the slots."""
    actions = np.zeros((len(masks), len(nvec)), dtype=np.int64)
    for part, (off, n) in enumerate(zip(offsets, nvec, strict=True)):
        allowed = masks[:, off : off + n]
        actions[:, part] = np.argmax(rng.random(allowed.shape) * allowed, axis=1)
    return actions


def vector_random_masked_steps(num_envs: int, seconds: float, skip_quiet_days: bool = True) -> dict[str, float]:
    """Steps per second summed over the slots of the vector env (reset time reported apart)."""
    vec = envs.ArrangementVecEnv(num_envs, skip_quiet_days=skip_quiet_days)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    vec.reset(seed=0)
    reset_seconds = time.perf_counter() - t
    offsets, nvec = tuple(vec.space.offsets), tuple(vec.space.nvec)
    vector_steps = episodes = 0
    start, cpu = time.perf_counter(), time.process_time()
    while vector_steps == 0 or time.perf_counter() - start < seconds:
        *_, terminated, truncated, _ = vec.step(random_masked_masks(vec.action_masks(), offsets, nvec, rng))
        vector_steps += 1
        episodes += int(np.sum(terminated | truncated))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "num_envs": num_envs,
        "vector_steps": vector_steps,
        "steps": vector_steps * num_envs,
        "episodes": episodes,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "reset_seconds": reset_seconds,
        "steps_per_second": vector_steps * num_envs / elapsed,
        "cpu_steps_per_second": vector_steps * num_envs / cpu,
        "skip_quiet_days": skip_quiet_days,
    }


def menu_random_masked_steps(seconds: float) -> dict[str, float]:
    """Steps (menu points) per second of ``regsim/SelfService-v0`` under random masked menus."""
    env = envs.SelfServiceEnv()
    rng = np.random.default_rng(0)
    space = env.menu_space
    t = time.perf_counter()
    env.reset(seed=0)
    reset_seconds = time.perf_counter() - t

    def menu() -> np.ndarray:
        return random_masked_masks(env.action_masks()[None, :], space.offsets, space.nvec, rng)[0]

    return {**_timed_steps(env, menu, seconds, at_least_one=True), "first_reset_seconds": reset_seconds}


def menu_vector_random_masked_steps(num_envs: int, seconds: float) -> dict[str, float]:
    """Steps (menu points) per second summed over the slots of ``regsim/SelfServiceVec-v0``."""
    vec = envs.SelfServiceVecEnv(num_envs)
    rng = np.random.default_rng(0)
    space = vec.menu_space
    t = time.perf_counter()
    vec.reset(seed=0)
    reset_seconds = time.perf_counter() - t
    vector_steps = episodes = 0
    start, cpu = time.perf_counter(), time.process_time()
    while vector_steps == 0 or time.perf_counter() - start < seconds:
        menus = random_masked_masks(vec.action_masks(), space.offsets, space.nvec, rng)
        *_, terminated, truncated, _ = vec.step(menus)
        vector_steps += 1
        episodes += int(np.sum(terminated | truncated))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "num_envs": num_envs,
        "steps": vector_steps * num_envs,
        "episodes": episodes,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "reset_seconds": reset_seconds,
        "steps_per_second": vector_steps * num_envs / elapsed,
        "cpu_steps_per_second": vector_steps * num_envs / cpu,
    }


def menu_section(args: argparse.Namespace, rand: dict[str, float], vector: list[dict[str, Any]]) -> dict[str, Any]:
    """7.: the menu envs, printed beside the arrangement envs' rates of the same run (their ratios)."""
    single = menu_random_masked_steps(args.seconds)
    single["ratio_to_arrangement"] = single["steps_per_second"] / rand["steps_per_second"]
    single["cpu_ratio_to_arrangement"] = single["cpu_steps_per_second"] / rand["cpu_steps_per_second"]
    print("self-service menus (issue 18) on one core, beside the arrangement env of this run")
    print(
        f"  regsim/SelfService-v0       {single['steps_per_second']:>10,.1f} menu steps/s "
        f"({single['cpu_steps_per_second']:,.1f} per CPU second)   x{single['ratio_to_arrangement']:.3f} "
        f"Arrangement-v0's {rand['steps_per_second']:,.0f}   ({single['steps_per_episode']:.1f} steps/episode)"
    )
    by_n = {v["num_envs"]: v for v in vector}
    menus = []
    for n in args.menu_envs:
        m = menu_vector_random_masked_steps(n, args.vec_seconds)
        ref = by_n.get(n)
        m["ratio_to_single_menu_env"] = m["steps_per_second"] / single["steps_per_second"]
        line = (
            f"  regsim/SelfServiceVec-v0 N = {n:>5} {m['steps_per_second']:>10,.1f} menu steps/s "
            f"({m['cpu_steps_per_second']:,.1f} per CPU second)   x{m['ratio_to_single_menu_env']:.1f} SelfService-v0"
        )
        if ref is not None:
            m["ratio_to_arrangement_vec"] = m["cpu_steps_per_second"] / ref["cpu_steps_per_second"]
            line += f"   x{m['ratio_to_arrangement_vec']:.3f} ArrangementVec-v0 at N = {n} (CPU time)"
        print(line)
        menus.append(m)
    return {"single": single, "vector": menus}


def worker_random_masked_steps(num_envs: int, workers: int, seconds: float) -> dict[str, float]:
    """Steps per second of wall time of the SB3 adapter with ``workers`` processes (start-up reported apart)."""
    from envs.sb3_vec import ArrangementSB3VecEnv

    t = time.perf_counter()
    vec = ArrangementSB3VecEnv(num_envs, workers=workers)
    vec.seed(0)
    vec.reset()
    startup = time.perf_counter() - t
    rng = np.random.default_rng(0)
    offsets, nvec = tuple(vec.space.offsets), tuple(vec.space.nvec)
    vector_steps = 0
    start = time.perf_counter()
    try:
        while vector_steps == 0 or time.perf_counter() - start < seconds:
            vec.step_async(random_masked_masks(vec.action_masks(), offsets, nvec, rng))
            vec.step_wait()
            vector_steps += 1
    finally:
        elapsed = time.perf_counter() - start
        vec.close()
    return {
        "num_envs": num_envs,
        "workers": workers,
        "vector_steps": vector_steps,
        "seconds": elapsed,
        "startup_seconds": startup,
        "steps_per_second": vector_steps * num_envs / elapsed,
    }


def vector_training_share(train_steps: int, num_envs: int, n_steps: int) -> dict[str, float]:
    """MaskablePPO on the SB3 adapter of the vector env: share of the wall time inside the env.

    The learner is the single-env run's (default network, minibatches of 256, 4 epochs) with ``n_steps`` steps
    per slot and rollout: enough for the advantage estimates to look ahead within an episode (a rollout of one
    step per slot, which a fixed rollout of 1,024 samples would give at N = 1,024, bootstraps every sample).
    """
    import torch
    from sb3_contrib import MaskablePPO

    from envs.sb3_vec import ArrangementSB3VecEnv

    torch.set_num_threads(1)
    vec = ArrangementSB3VecEnv(num_envs)
    timer = {"env": 0.0}
    reset, step_wait, env_method = vec.reset, vec.step_wait, vec.env_method

    def timed_reset() -> Any:
        t = time.perf_counter()
        out = reset()
        timer["env"] += time.perf_counter() - t
        return out

    def timed_step_wait() -> Any:
        t = time.perf_counter()
        out = step_wait()
        timer["env"] += time.perf_counter() - t
        return out

    def timed_env_method(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()  # the action masks, asked for before every step
        out = env_method(*args, **kwargs)
        timer["env"] += time.perf_counter() - t
        return out

    vec.reset, vec.step_wait, vec.env_method = timed_reset, timed_step_wait, timed_env_method  # type: ignore[method-assign]
    model = MaskablePPO("MlpPolicy", vec, n_steps=n_steps, batch_size=256, n_epochs=4, seed=0, verbose=0, device="cpu")
    start = time.perf_counter()
    model.learn(total_timesteps=train_steps)
    total = time.perf_counter() - start
    return {
        "num_envs": num_envs,
        "n_steps": n_steps,
        "train_steps": float(model.num_timesteps),
        "seconds": total,
        "env_seconds": timer["env"],
        "env_share": timer["env"] / total,
        "learner_steps_per_second": model.num_timesteps / (total - timer["env"]),
    }


def training_path_share(config_path: Path, agent_name: str, steps: int) -> dict[str, Any]:
    """The env's share of ``train_policy`` training an experiment config's agent as ``regsim run`` does."""
    import tempfile

    from agents.train import train_policy
    from envs.sb3_vec import ArrangementSB3VecEnv
    from experiments.config import load_experiment_config

    config = load_experiment_config(config_path)
    agent = next((a for a in config.agents if a.name == agent_name), None)
    if agent is None:
        raise SystemExit(
            f"--path-agent: {config_path} has no agent {agent_name!r}; it has {[a.name for a in config.agents]}"
        )
    timer = {"env": 0.0}
    reset, step_wait, env_method = (
        ArrangementSB3VecEnv.reset,
        ArrangementSB3VecEnv.step_wait,
        ArrangementSB3VecEnv.env_method,
    )

    def timed_reset(self: ArrangementSB3VecEnv) -> Any:
        t = time.perf_counter()
        out = reset(self)
        timer["env"] += time.perf_counter() - t
        return out

    def timed_step_wait(self: ArrangementSB3VecEnv) -> Any:
        t = time.perf_counter()
        out = step_wait(self)
        timer["env"] += time.perf_counter() - t
        return out

    def timed_env_method(self: ArrangementSB3VecEnv, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()  # the action masks, asked for before every step
        out = env_method(self, *args, **kwargs)
        timer["env"] += time.perf_counter() - t
        return out

    cls = ArrangementSB3VecEnv
    cls.reset, cls.step_wait, cls.env_method = timed_reset, timed_step_wait, timed_env_method  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            folder = train_policy(
                agent.kind,
                config=config.population.world(),
                steps=steps,
                seed=config.seed,
                out=Path(tmp),
                env_kwargs={"reward": config.env.reward, "months": config.env.months},
                reward_kwargs=dict(config.env.reward_kwargs),
                algo_kwargs=dict(agent.hyperparameters),
                n_envs=agent.train.n_envs,
                progress=False,
                tensorboard=False,
                eval_arrangements=0,
            )
            total = time.perf_counter() - start  # includes writing the artifact (milliseconds)
            manifest = json.loads((folder / "manifest.json").read_text())
            trained, workers = manifest["metrics"]["trained_steps"], manifest["training"]["workers"]
    finally:
        cls.reset, cls.step_wait, cls.env_method = reset, step_wait, env_method  # type: ignore[method-assign]
    return {
        "config": str(config_path),
        "agent": agent_name,
        "kind": agent.kind,
        "n_envs": agent.train.n_envs,
        "workers": workers,
        "hyperparameters": dict(agent.hyperparameters),
        "train_steps": float(trained),
        "seconds": total,
        "env_seconds": timer["env"],
        "env_share": timer["env"] / total,
        "env_steps_per_second": trained / timer["env"] if timer["env"] else float("nan"),
        "rest_steps_per_second": trained / (total - timer["env"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the random-action run")
    parser.add_argument("--train-steps", type=int, default=8192, help="MaskablePPO steps for the share")
    parser.add_argument(
        "--quiet-envs", type=int, default=2048, help="slots of the quiet-day runs (3.; the training default)"
    )
    parser.add_argument(
        "--vec-envs", type=int, nargs="*", default=[64, 256, 1024, 2048, 4096], help="vector env sizes N"
    )
    parser.add_argument("--vec-seconds", type=float, default=20.0, help="duration of each vector-env run")
    parser.add_argument(
        "--vec-train-envs", type=int, nargs="*", default=[2048, 4096], help="slots of the vector-env training runs"
    )
    parser.add_argument("--vec-n-steps", type=int, default=16, help="steps per slot and rollout of those runs")
    parser.add_argument(
        "--vec-train-steps",
        type=int,
        default=65_536,
        help="MaskablePPO steps of each vector-env training run (many per slot, so that the first reset is amortised)",
    )
    parser.add_argument(
        "--path-config",
        type=Path,
        default=Path("configs/experiments/quickstart.yaml"),
        help="experiment config whose agent's training is measured (5.)",
    )
    parser.add_argument("--path-agent", default="mppo", help="that agent's name in the config")
    parser.add_argument("--path-steps", type=int, default=131_072, help="decisions of that training (the quickstart's)")
    parser.add_argument(
        "--worker-envs", type=int, nargs="*", default=[2048, 4096], help="slots of the worker-process runs (6.)"
    )
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="worker counts of those runs")
    parser.add_argument("--worker-seconds", type=float, default=10.0, help="duration of each worker-process run")
    parser.add_argument(
        "--menu-envs", type=int, nargs="*", default=[1, 64, 256], help="slots of the menu vector-env runs (7.)"
    )
    parser.add_argument("--menus-only", action="store_true", help="run 1., the vector env at --menu-envs and 7.")
    parser.add_argument("--out", type=Path, default=None, help="where to write the results (JSON)")
    args = parser.parse_args()
    rand = random_masked_steps(args.seconds)
    if args.menus_only:
        print(f"regsim/Arrangement-v0 on one core: {rand['steps_per_second']:,.0f} steps/s (random masked actions)")
        vector = [vector_random_masked_steps(n, args.vec_seconds) for n in args.menu_envs]
        for v in vector:
            print(f"  regsim/ArrangementVec-v0 N = {v['num_envs']:>5} {v['cpu_steps_per_second']:>10,.0f} steps/CPU s")
        menus = menu_section(args, rand, vector)
        menus_out: Path = args.out or RESULTS.with_name("env_menus.json")
        menus_out.parent.mkdir(parents=True, exist_ok=True)
        body = {"random_masked": rand, "vector_random_masked": vector, "menus": menus}
        menus_out.write_text(json.dumps(body, indent=2) + "\n")
        print(f"wrote {menus_out}")
        return
    train = training_share(args.train_steps)
    quiet = [vector_random_masked_steps(args.quiet_envs, args.vec_seconds, skip) for skip in (True, False)]
    vector = [vector_random_masked_steps(n, args.vec_seconds) for n in args.vec_envs]
    vector_train = [vector_training_share(args.vec_train_steps, n, args.vec_n_steps) for n in args.vec_train_envs]
    path = training_path_share(args.path_config, args.path_agent, args.path_steps)
    counts = sorted({1, *args.workers})
    sharded = [worker_random_masked_steps(n, w, args.worker_seconds) for n in args.worker_envs for w in counts]
    print("regsim/Arrangement-v0 on one core")
    print(
        f"  random masked actions   {rand['steps_per_second']:>10,.0f} steps/s "
        f"({rand['cpu_steps_per_second']:,.0f} per CPU second)   target >= 10,000   "
        f"({rand['steps_per_episode']:.1f} steps/episode)"
    )
    print(
        f"  MaskablePPO, {train['train_steps']:,} steps  {train['seconds']:>6.1f} s total, "
        f"{train['env_seconds']:.1f} s in env = {train['env_share']:.0%}   target < 25%"
    )
    print(f"  learner alone           {train['learner_steps_per_second']:>10,.0f} steps/s")
    skipping = {
        "num_envs": args.quiet_envs,
        "with": quiet[0],
        "without": quiet[1],
        "speedup": quiet[0]["cpu_steps_per_second"] / quiet[1]["cpu_steps_per_second"],
    }
    print(f"quiet-day skipping, regsim/ArrangementVec-v0 N = {args.quiet_envs} (per CPU second)")
    print(
        f"  on  {quiet[0]['cpu_steps_per_second']:>10,.0f} steps/s   off {quiet[1]['cpu_steps_per_second']:>10,.0f} "
        f"steps/s   skipping buys x{skipping['speedup']:.2f}"
    )
    print("regsim/ArrangementVec-v0 on one core (steps summed over the slots)")
    for v in vector:
        v["ratio_to_single"] = v["steps_per_second"] / rand["steps_per_second"]
        v["cpu_ratio_to_single"] = v["cpu_steps_per_second"] / rand["cpu_steps_per_second"]
        print(
            f"  N = {v['num_envs']:>5}  random masked actions {v['steps_per_second']:>10,.0f} steps/s "
            f"({v['cpu_steps_per_second']:,.0f} per CPU second)   x{v['ratio_to_single']:.0f} Arrangement-v0 "
            f"(x{v['cpu_ratio_to_single']:.0f} in CPU time)   target >= 10,000"
        )
    for t in vector_train:
        print(
            f"  MaskablePPO on the SB3 adapter, N = {t['num_envs']} x {t['n_steps']} steps per rollout, "
            f"{t['train_steps']:,.0f} steps  "
            f"{t['seconds']:>6.1f} s total, {t['env_seconds']:.1f} s in env = {t['env_share']:.0%}   target < 25%"
        )
    print(f"train_policy as `regsim run` trains {path['agent']} of {path['config']} ({path['kind']})")
    print(
        f"  N = {path['n_envs']}, workers = {path['workers']}, {path['hyperparameters']}, "
        f"{path['train_steps']:,.0f} decisions  "
        f"{path['seconds']:>6.1f} s total, {path['env_seconds']:.1f} s in env = {path['env_share']:.0%}   target < 25%"
    )
    print(
        f"  env {path['env_steps_per_second']:,.0f} steps/s inside training; "
        f"the rest (rollout loop, forward passes, updates) {path['rest_steps_per_second']:,.0f} steps/s"
    )
    menus = menu_section(args, rand, vector)
    print("the SB3 adapter with its slots split over worker processes (wall clock; one core per worker)")
    for r in sharded:
        alone = next(x for x in sharded if x["num_envs"] == r["num_envs"] and x["workers"] == 1)
        r["ratio_to_one_process"] = r["steps_per_second"] / alone["steps_per_second"]
        print(
            f"  N = {r['num_envs']:>5}, workers = {r['workers']}  {r['steps_per_second']:>10,.0f} steps/s   "
            f"x{r['ratio_to_one_process']:.2f} one process   (start-up {r['startup_seconds']:.1f} s)"
        )
    out: Path = args.out or RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "random_masked": rand,
                "maskable_ppo": train,
                "quiet_day_skipping": skipping,
                "vector_random_masked": vector,
                "vector_maskable_ppo": vector_train,
                "training_path": path,
                "worker_processes": sharded,
                "menus": menus,
                "targets": {"steps_per_second": 10_000, "env_share": 0.25},
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
