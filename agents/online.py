"""Online training of a learning policy (a contextual bandit) on the population simulator, with checkpoints.

An online learner learns while it decides: the world calls ``policy.update(feedback)`` every evening with the
decisions whose outcome window has closed. :func:`train_online` runs successive whole-population simulations
(fresh debtors each time, each run seeded by ``(seed, run index)`` through :func:`training_seed`) with the same
policy object until ``steps`` decisions have been made. The first run is sized for half the budget from a
guessed rate of decisions per arrangement; later runs use the observed rate, so that training stops at most one
run's worth past ``steps``.

Checkpoints. The policy's whole state changes only inside a run, and a run depends only on the policy's state
and the run's seed, so the boundary between two runs is a point from which training continues identically:
a checkpoint there holds the policy's :meth:`state_dict` (statistics, counters, the exploration generator's
state; written with ``numpy.savez``, no pickle) and the list of runs made so far (their seeds, sizes and
decisions, which fix the next run's size and seed). Checkpoints are written atomically (a temporary folder
renamed into place: :mod:`agents.checkpoints`) to ``checkpoint_dir/online-<decisions>/`` whenever at least
``checkpoint_every`` decisions were made since the last one; :func:`train_online` resumes from the newest complete
one it finds there.

:func:`train_bandit` is the one way a bandit is trained, by ``regsim train`` and ``regsim run`` alike: it makes the
policy, trains it online, and writes its learning curve (and TensorBoard scalars) and its artifact.

What a bandit optimises. A bandit is fed back, per decision, the reward ``feedback_reward`` (``"collected"``:
0.01 x (euros paid - contact cost - EUR 150 per breakdown)) of what happened to its arrangement within
``feedback_window_days`` (14 days by default) after the decision, or until the arrangement ended if sooner
(:mod:`regsim.feedback`). It therefore optimises each decision's *short-term* net money: payments and breakdowns
in the next two weeks, not the arrangement's run-off value (net recovery plus EUR 300 per completion,
:func:`regsim.metrics.runoff_value`, the verdict's objective and the envs' default reward). A completion counts
only through the last payments inside a window, and an effect that shows after the window (a deferral that
later completes, a reminder that prevents a breakdown a month on) is not credited at all, so a bandit can look
good on 14-day money and worse at run-off; widen ``feedback_window_days`` (at the cost of slower, more censored
feedback) to bring the two closer. Online runs last ``months`` (default: :func:`regsim.runoff.covering_months`
in ``regsim run`` without ``env.months``), and decisions still open at a run's end are censored
(``BanditConfig.censored``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from agents.checkpoints import latest_checkpoint, write_checkpoint_folder
from regsim.config import WorldConfig
from regsim.decision import LearningPolicy
from regsim.eventlog import EventType, event_codes
from regsim.rewards import RewardCosts, net_collected_eur
from regsim.simulate import SimulationResult, simulate

__all__ = [
    "CURVE_COLUMNS",
    "DECISIONS_PER_ARRANGEMENT",
    "OnlineRun",
    "OnlineTraining",
    "read_curve",
    "train_bandit",
    "train_online",
    "training_seed",
    "write_curve",
]

#: A first guess of decisions per arrangement over a horizon of m months, ``a + b * m``, to size the first
#: online run (the rule-based policies on the default world make 6 to 7.5 in 3 months and 14 to 18 in 12).
DECISIONS_PER_ARRANGEMENT = (3.5, 1.0)

_PREFIX = "online-"
_STATE, _META = "state.npz", "training.json"


@dataclass(frozen=True)
class OnlineRun:
    """One online population run: its world seed, size, horizon, and what happened in it."""

    seed: int
    arrangements: int
    months: int
    decisions: int
    reward_per_decision: float
    """The run's ``collected`` reward (:mod:`regsim.rewards`: euros collected less contact and breakdown costs,
    x0.01) per decision, the quantity the bandits' default feedback reward credits."""
    completion_rate: float
    collected_eur_per_arrangement: float


@dataclass
class OnlineTraining:
    """Progress of an online training: the runs so far (all that is needed besides the policy's state)."""

    steps: int
    seed: int
    months: int
    runs: list[OnlineRun] = field(default_factory=list)

    @property
    def decisions(self) -> int:
        """Decisions made so far."""
        return sum(r.decisions for r in self.runs)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (read back by :meth:`from_json`)."""
        return {"steps": self.steps, "seed": self.seed, "months": self.months, "runs": [asdict(r) for r in self.runs]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OnlineTraining:
        """Read what :meth:`to_json` wrote."""
        return cls(int(data["steps"]), int(data["seed"]), int(data["months"]), [OnlineRun(**r) for r in data["runs"]])


#: Columns of a learning curve (``learning_curve.parquet``): one row per (step, metric).
CURVE_COLUMNS = ("step", "metric", "value")
_CURVE_SCHEMA = pa.schema([("step", pa.int64()), ("metric", pa.string()), ("value", pa.float64())])


def write_curve(rows: Sequence[tuple[int, str, float]], path: Path) -> Path:
    """Write learning-curve rows ``(step, metric, value)`` to Parquet (columns :data:`CURVE_COLUMNS`: ``step``
    int64, decisions trained on so far; ``metric`` string; ``value`` float64), in the order given."""
    steps, metrics, values = (list(c) for c in zip(*rows, strict=True)) if rows else ([], [], [])
    table = pa.Table.from_arrays(
        [pa.array(steps, pa.int64()), pa.array(metrics, pa.string()), pa.array(values, pa.float64())],
        schema=_CURVE_SCHEMA,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def read_curve(path: Path) -> pd.DataFrame:
    """A learning curve written by :func:`write_curve`."""
    return pq.read_table(path).to_pandas()


def training_seed(seed: int, run: int) -> int:
    """The world seed of online run ``run``: drawn from (seed, run) so that it never coincides with the small
    seeds 0..K-1 that ``regsim evaluate`` uses."""
    return int(np.random.SeedSequence([seed, run, 0x545241494E]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _save(folder: Path, policy: LearningPolicy, training: OnlineTraining) -> Path:
    def write(tmp: Path) -> None:
        arrays = {k: np.asarray(v) for k, v in policy.state_dict().items()}
        np.savez(tmp / _STATE, allow_pickle=False, **arrays)
        (tmp / _META).write_text(json.dumps(training.to_json(), indent=2) + "\n", encoding="utf-8")

    return write_checkpoint_folder(folder, f"{_PREFIX}{training.decisions}", write)


def _load(path: Path, policy: LearningPolicy) -> OnlineTraining:
    with np.load(path / _STATE, allow_pickle=False) as data:
        policy.load_state_dict({k: data[k] for k in data.files})
    return OnlineTraining.from_json(json.loads((path / _META).read_text(encoding="utf-8")))


def _summarise(result: SimulationResult, config: WorldConfig, seed: int, n: int, months: int) -> OnlineRun:
    made = int((event_codes(result.events) == EventType.DECISION).sum())
    k = result.kpis
    broken = k["breakdown_rate"] * n
    # The run's total of the bandits' reward (``collected``), per decision below.
    net = 0.01 * float(net_collected_eur(k["collected_eur"], k["contact_cost_eur"], broken, RewardCosts.of(config)))
    return OnlineRun(
        seed=seed,
        arrangements=n,
        months=months,
        decisions=made,
        reward_per_decision=net / made if made else math.nan,
        completion_rate=float(k["completion_rate"]),
        collected_eur_per_arrangement=float(k["collected_eur_per_arrangement"]),
    )


def train_online(
    policy: LearningPolicy,
    config: WorldConfig,
    *,
    steps: int,
    seed: int,
    months: int,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int | None = None,
    progress: Callable[[int], object] | None = None,
) -> OnlineTraining:
    """Train ``policy`` online on successive population runs until ``steps`` decisions were made.

    Args:
        policy: The learner (updated in place); it must learn through ``update`` (positive
            ``feedback_window_days``) and expose ``state_dict``/``load_state_dict``.
        config: The world.
        steps: Decisions to train on (> 0).
        seed: Seeds the runs' worlds (run k uses :func:`training_seed` ``(seed, k)``); the policy's own
            exploration seed is its own argument.
        months: Horizon of each run.
        checkpoint_dir: Where checkpoints go; when it holds one, training resumes from the newest (its
            ``steps``, ``seed`` and ``months`` must match). None: no checkpoints.
        checkpoint_every: Write a checkpoint after a run once this many decisions were made since the last one
            (and after the last run). None: after the last run only.
        progress: Called with the decisions made so far after each run.

    Returns:
        The runs made (including those restored from a checkpoint).

    Raises:
        ValueError: Bad arguments, a checkpoint of another training, or a run without decisions.
    """
    if steps < 1:
        raise ValueError(f"steps: must be >= 1, got {steps}")
    if months < 1:
        raise ValueError(f"months: must be >= 1, got {months}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every: must be >= 1, got {checkpoint_every}")
    if not policy.feedback_window_days:
        raise ValueError(f"policy {policy.name!r} does not learn online (no feedback window)")
    training = OnlineTraining(steps, seed, months)
    latest = latest_checkpoint(checkpoint_dir, _PREFIX) if checkpoint_dir is not None else None
    if latest is not None:
        restored = _load(latest, policy)
        if (restored.steps, restored.seed, restored.months) != (steps, seed, months):
            raise ValueError(
                f"checkpoint {latest} is of another training (steps, seed, months) = "
                f"{(restored.steps, restored.seed, restored.months)}, not {(steps, seed, months)}"
            )
        training = restored
    a, b = DECISIONS_PER_ARRANGEMENT
    rate = training.runs[-1].decisions / training.runs[-1].arrangements if training.runs else a + b * months
    since = 0
    if progress is not None and training.runs:
        progress(training.decisions)
    while training.decisions < steps:
        share = 0.5 if not training.runs else 1.0  # a first, smaller run measures the rate
        n = max(50, math.ceil(share * (steps - training.decisions) / rate))
        world_seed = training_seed(seed, len(training.runs))
        result = simulate(config, policy, arrangements=n, months=months, seed=world_seed)
        learn_from_run = getattr(policy, "learn_from_run", None)
        if callable(learn_from_run):  # a learner of what only the run's log shows (the menus of agents.menus)
            learn_from_run(result)
        run = _summarise(result, config, world_seed, n, months)
        if run.decisions == 0:
            raise ValueError(f"online run {len(training.runs)} (seed {world_seed}, {n} arrangements) made no decisions")
        training.runs.append(run)
        rate = run.decisions / n
        since += run.decisions
        if progress is not None:
            progress(training.decisions)
        done = training.decisions >= steps
        if checkpoint_dir is not None and (done or (checkpoint_every is not None and since >= checkpoint_every)):
            _save(checkpoint_dir, policy, training)
            since = 0
    return training


def train_bandit(
    kind: str,
    config: WorldConfig,
    *,
    steps: int,
    seed: int,
    world_seed: int,
    months: int,
    out: Path,
    hyperparameters: Mapping[str, Any] | None = None,
    checkpoint_every: int | None = None,
    tensorboard_dir: Path | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> tuple[Path, OnlineTraining]:
    """Make a registered bandit, train it online, and write what its training produced.

    Layout of ``out``: ``policy/`` (the artifact), ``learning_curve.parquet`` (per run: ``reward_per_decision``,
    ``online/completion_rate``, ``online/collected_eur_per_arrangement``, by decisions trained on) and
    ``checkpoints/`` (resumable: training run again into the same ``out`` continues from the newest). With
    ``tensorboard_dir`` the curve also goes to TensorBoard, written once training is over so that a resumed
    training leaves the same scalars as an uninterrupted one.

    Args:
        kind: A registered bandit policy (``agents.available()``), e.g. ``"linucb"``.
        config: The world.
        steps: Decisions to train on.
        seed: The bandit's exploration seed.
        world_seed: Seeds the training populations (:func:`training_seed`).
        months: Horizon of each online run.
        out: The output folder; ``out/policy`` must not exist yet.
        hyperparameters: Keyword arguments of the policy (validated by the registry).
        checkpoint_every: Decisions between checkpoints (default: after the last run only).
        tensorboard_dir: Where TensorBoard scalars go (None: none).
        progress: Show a progress bar.
        desc: The progress bar's label (default: ``kind``).

    Returns:
        The artifact folder and the training's runs.

    Raises:
        ValueError: Not a learning policy, bad arguments, or ``out/policy`` exists.
    """
    from tqdm.auto import tqdm

    import agents

    folder = Path(out) / "policy"
    if folder.exists():
        raise ValueError(f"out: {folder} exists; train into a new out folder")
    hyper = dict(hyperparameters or {})
    spec = agents.available().get(kind)
    if spec is None:
        raise ValueError(f"kind: unknown policy {kind!r}; registered: {sorted(agents.available())}")
    policy = agents.make(kind, **({"seed": seed} if "seed" in spec.arguments else {}), **hyper)
    if not isinstance(policy, LearningPolicy) or not policy.feedback_window_days:
        raise ValueError(f"kind: policy {kind!r} does not learn online; it cannot be trained here")
    with tqdm(total=steps, unit="decision", desc=desc or kind, disable=not progress) as bar:
        training = train_online(
            policy,
            config,
            steps=steps,
            seed=world_seed,
            months=months,
            checkpoint_dir=Path(out) / "checkpoints",
            checkpoint_every=checkpoint_every,
            progress=lambda done: bar.update(min(done, steps) - bar.n),
        )
    rows: list[tuple[int, str, float]] = []
    done = 0
    for run in training.runs:
        done += run.decisions
        rows += [
            (done, "reward_per_decision", run.reward_per_decision),
            (done, "online/completion_rate", run.completion_rate),
            (done, "online/collected_eur_per_arrangement", run.collected_eur_per_arrangement),
        ]
    write_curve(rows, Path(out) / "learning_curve.parquet")
    if tensorboard_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(tensorboard_dir))
        try:
            for step, metric, value in rows:
                writer.add_scalar(metric if "/" in metric else f"train/{metric}", value, global_step=step)
        finally:
            writer.close()
    save = getattr(policy, "save", None)
    if not callable(save):
        raise ValueError(f"kind: policy {kind!r} has no save(folder); it cannot be written as an artifact")
    saved = save(
        folder,
        rules_version=config.rules.version,
        training={
            "policy": kind,
            "hyperparameters": hyper,
            "seed": seed,
            "world_seed": world_seed,
            "steps": steps,
            "decisions": training.decisions,
            "months": months,
            "runs": [asdict(r) for r in training.runs],
        },
        metrics={"train_runs": len(training.runs), "decisions": training.decisions},
    )
    return Path(saved), training
