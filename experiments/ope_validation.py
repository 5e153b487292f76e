"""Off-policy evaluation checked against the simulator's truth: relative error and interval coverage.

The simulator is the one place where an off-policy estimate can be held against the value it estimates. For each
seed, a log is simulated under a known stochastic logging policy (exact propensities: ``epsilon-mixture``,
``epsilon-greedy``, ``random``), every candidate is estimated on it by every estimator
(:func:`agents.ope.estimators.estimate`, on :func:`agents.ope.feedback.build_feedback`), and each candidate is run
on-policy with the same seed (common random numbers: the same debtors and shocks). Every world here has
dedicated capacity (:func:`experiments.ope_truth.simulate_log`: each arrangement its own collectors), so that an
arrangement's life is a function of its own actions and a logged decision can be branched.

Two truths, each row of the table naming its own (``truth_kind``):

* ``branched`` (the per-decision estimand, under a fixed logger): the candidate's mean reward *on the logged
  contexts*, what IPS and DR estimate. Each logged decision of a sample of the largest log is branched
  (:func:`experiments.ope_truth.branched_truth`): the candidate's action there, the logger deciding after, on the
  same random numbers; the branched rewards are pooled over the seeds (its standard error is ``truth_se``).
* ``on-policy``: the candidate's own on-policy mean, pooled over the seeds: the run-off net recovery per arrangement
  for the per-arrangement estimators (``pdis``, ``pddr``), whose estimand it is; and the mean per-decision reward
  (``decision_value_eur`` of ``regsim simulate``) for the per-decision estimators under a learning logger, whose
  decisions cannot be branched (its distribution at a decision depends on the log's other outcomes). That on-policy
  mean is over the contexts the *candidate* leads to, not the per-decision estimand: a gap of the truth, not of
  the estimator.

Log sizes are nested: the log of ``n`` arrangements is the first ``n`` arrangements (by id) of the seed's largest
log, so one simulation and one replay per seed and logging policy serve every size, and one fit of the reward
models per size (:func:`agents.ope.feedback.fit_reward_models`) serves every candidate. The worlds are run off
(each arrangement to its end or its cap, ``simulation.runoff_months_after_plan``), so every arrangement counts.

:func:`run_validation` returns a :class:`ValidationResult`: the table (estimator x log size x candidate x logging
policy: relative error, relative bias, coverage) and, per estimator, the smallest log size at which it is within
10% and whether its coverage is near 95% (inside the central 95% of a binomial around 0.95 for the number of runs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from agents.ope.behaviour import logged_behaviour
from agents.ope.estimators import ESTIMATOR_NAMES, estimate
from agents.ope.feedback import build_feedback, fit_reward_models
from agents.ope.logged import DEFAULT_WINDOW_DAYS, arrangement_values, decision_rewards, logged_decisions
from experiments.ope_truth import branchable, branched_truth, simulate_log
from regsim.config import WorldConfig
from regsim.decision import Policy

__all__ = [
    "PolicyFactory",
    "ValidationResult",
    "ValidationRow",
    "ValidationSpec",
    "coverage_band",
    "run_validation",
]

#: A policy made fresh for a seed (the seed of its own exploration stream).
PolicyFactory = Callable[[int], Policy]
Estimand = Literal["per-decision", "per-arrangement"]


@dataclass(frozen=True)
class ValidationSpec:
    """What to validate.

    Attributes:
        behaviours: Logging policies by label, each made fresh per seed (exact propensities needed).
        candidates: Candidate policies by label, each made fresh per seed.
        sizes: Log sizes in arrangements (ascending).
        seeds: The seeds (world and policies); at least 2.
        n_bootstrap: Bootstrap resamples per estimate.
        level: Interval level.
        window_days: The per-decision feedback window (days).
        estimators: The per-decision estimators to run.
        interactions: The reward model's context x action interactions (slower; ``regsim ope``'s default).
        truth_sample: Logged decisions per seed branched for the per-decision truth (a uniform random sample of the
            largest log's counted decisions; ``None``: all of them).
    """

    behaviours: dict[str, PolicyFactory]
    candidates: dict[str, PolicyFactory]
    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    n_bootstrap: int = 200
    level: float = 0.95
    window_days: float = DEFAULT_WINDOW_DAYS
    estimators: tuple[str, ...] = ESTIMATOR_NAMES
    interactions: bool = True
    truth_sample: int | None = 3_000

    def __post_init__(self) -> None:
        if not self.behaviours or not self.candidates:
            raise ValueError("behaviours and candidates must each name at least one policy")
        if not self.sizes or any(s < 2 for s in self.sizes) or list(self.sizes) != sorted(set(self.sizes)):
            raise ValueError(f"sizes must be ascending distinct arrangement counts >= 2, got {self.sizes}")
        if len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be at least 2 distinct seeds, got {self.seeds}")
        unknown = [e for e in self.estimators if e not in ESTIMATOR_NAMES]
        if unknown:
            raise ValueError(f"estimators: unknown {unknown}; allowed: {list(ESTIMATOR_NAMES)}")
        if self.truth_sample is not None and self.truth_sample < 1:
            raise ValueError(f"truth_sample: expected a number of decisions >= 1 or None, got {self.truth_sample}")


@dataclass(frozen=True)
class ValidationRow:
    """One cell of the table: an estimator on logs of one size, for one candidate and logging policy.

    Attributes:
        behaviour: The logging policy.
        candidate: The candidate.
        arrangements: The log size (arrangements).
        estimand: ``per-decision`` or ``per-arrangement``.
        estimator: The estimator.
        truth: The true value (EUR per decision, or per arrangement), pooled over the seeds.
        truth_kind: Which truth: ``branched`` (the candidate on the logged contexts) or ``on-policy`` (see the
            module docstring).
        truth_se: The truth's standard error (branched: over the sampled decisions, clustered by arrangement;
            on-policy: over the arrangements).
        mean_estimate: The mean estimate over the runs that gave one.
        relative_error: Mean over those runs of ``|estimate - truth| / |truth|``.
        relative_bias: ``(mean_estimate - truth) / |truth|``.
        coverage: Share of those runs whose interval holds the truth.
        runs: Runs that gave an estimate.
        refused: Runs on which the estimator was refused.
    """

    behaviour: str
    candidate: str
    arrangements: int
    estimand: str
    estimator: str
    truth: float
    truth_kind: str
    truth_se: float
    mean_estimate: float
    relative_error: float
    relative_bias: float
    coverage: float
    runs: int
    refused: int


def coverage_band(runs: int, level: float = 0.95) -> tuple[float, float]:
    """The central 95% range of the coverage of ``runs`` intervals of true level ``level`` (binomial), as shares."""
    if runs < 1:
        return math.nan, math.nan
    lo, hi = stats.binom.ppf([0.025, 0.975], runs, level)
    return float(lo) / runs, float(hi) / runs


@dataclass(frozen=True)
class ValidationResult:
    """The validation table and what it says.

    Attributes:
        rows: The cells (:class:`ValidationRow`).
        seeds: The seeds.
        wall_s: Wall time of the whole validation (s).
        level: The intervals' level.
    """

    rows: tuple[ValidationRow, ...]
    seeds: tuple[int, ...]
    wall_s: float
    level: float

    def frame(self) -> pd.DataFrame:
        """The table as a frame, one row per cell."""
        return pd.DataFrame([asdict(r) for r in self.rows])

    def markdown(self, tolerance: float = 0.10) -> str:
        """The table in Markdown, one per logging policy: a row per estimator, a column per candidate and size
        (``relative error / coverage``), then per estimator and candidate the smallest size from which on every size is
        within ``tolerance``, and the sizes whose coverage is inside :func:`coverage_band`."""

        def near(r: ValidationRow) -> bool:
            lo, hi = coverage_band(r.runs, self.level)
            return r.runs > 0 and lo <= r.coverage <= hi

        out: list[str] = []
        for beh in dict.fromkeys(r.behaviour for r in self.rows):
            rows = [r for r in self.rows if r.behaviour == beh]
            candidates = list(dict.fromkeys(r.candidate for r in rows))
            sizes = sorted({r.arrangements for r in rows})
            cells = [(c, n) for c in candidates for n in sizes]
            by = {(r.estimator, r.candidate, r.arrangements): r for r in rows}
            out.append(f"Logged by `{beh}`:\n")
            out.append("| estimator | truth | " + " | ".join(f"{c} {n:,}" for c, n in cells) + " |")
            out.append("|---|---|" + "---|" * len(cells))
            summary: list[str] = []
            for est in dict.fromkeys(r.estimator for r in rows):
                text = []
                for c, n in cells:
                    r = by.get((est, c, n))
                    text.append(
                        "" if r is None else "refused" if r.runs == 0 else f"{r.relative_error:.0%} / {r.coverage:.0%}"
                    )
                kind = next(r.truth_kind for r in rows if r.estimator == est)
                out.append(f"| `{est}` | {kind} | " + " | ".join(text) + " |")
                for c in candidates:
                    mine = [by[est, c, n] for n in sizes if (est, c, n) in by and by[est, c, n].runs > 0]
                    # The smallest size from which on every larger one is within the tolerance too.
                    within = [
                        r.arrangements
                        for k, r in enumerate(mine)
                        if all(m.relative_error <= tolerance for m in mine[k:])
                    ]
                    covered = ", ".join(f"{r.arrangements:,}" for r in mine if near(r)) or "none"
                    size = f"from {within[0]:,}" if within else "never"
                    summary.append(f"| `{est}` | {c} | {size} | {covered} |")
            out.append("")
            out.append(f"| estimator | candidate | within {tolerance:.0%} | coverage near {self.level:.0%} at |")
            out.append("|---|---|---|---|")
            out.extend(summary)
            out.append("")
        return "\n".join(out)

    def statements(self, tolerance: float = 0.10) -> list[str]:
        """Per logging policy, candidate and estimator: the smallest log size from which on the relative error is
        within ``tolerance`` (at it and every larger size) and whether the coverage at the largest size is near the
        level (inside :func:`coverage_band`)."""
        out: list[str] = []
        frame = self.frame()
        if frame.empty:
            return out
        for (beh, cand, estimand, est), g in frame.groupby(
            ["behaviour", "candidate", "estimand", "estimator"], sort=False
        ):
            g = g.sort_values("arrangements")
            # The smallest size from which on every larger one is within the tolerance too.
            errors = g["relative_error"].to_numpy()
            within = g[[bool(np.all(errors[k:] <= tolerance)) for k in range(len(g))]]
            size = (
                f"within {tolerance:.0%} from {int(within['arrangements'].iloc[0]):,} arrangements"
                if len(within)
                else f"never within {tolerance:.0%} up to {int(g['arrangements'].iloc[-1]):,} arrangements"
            )
            last = g.iloc[-1]
            if int(last["runs"]) == 0:
                cover = f"refused on every run ({int(last['refused'])})"
            else:
                lo, hi = coverage_band(int(last["runs"]), self.level)
                near = lo <= float(last["coverage"]) <= hi
                cover = (
                    f"coverage {float(last['coverage']):.0%} over {int(last['runs'])} runs "
                    f"({'near' if near else 'not near'} {self.level:.0%}: band {lo:.0%}-{hi:.0%})"
                )
            out.append(f"{est} ({estimand}, {last['truth_kind']} truth), {cand} logged by {beh}: {size}; {cover}")
        return out

    def best(
        self,
        estimand: str = "per-decision",
        *,
        behaviours: Sequence[str] | None = None,
        candidates: Sequence[str] | None = None,
        arrangements: int | None = None,
    ) -> str | None:
        """The estimator with the smallest relative error at one log size, among those whose coverage is near the
        level there (else among all that gave estimates); ``None`` if every one was refused.

        Args:
            estimand: ``per-decision`` or ``per-arrangement``.
            behaviours: Only these logging policies' cells (default all), errors and coverages averaged over them.
            candidates: Only these candidates' cells (default all), averaged likewise.
            arrangements: The size: the largest validated one at most this (the smallest if all are larger);
                default the largest.
        """
        frame = self.frame()
        frame = frame[(frame["estimand"] == estimand) & (frame["runs"] > 0)]
        if behaviours is not None:
            frame = frame[frame["behaviour"].isin(list(behaviours))]
        if candidates is not None:
            frame = frame[frame["candidate"].isin(list(candidates))]
        if frame.empty:
            return None
        frame = frame[frame["arrangements"] == self.size_for(arrangements, frame)]
        scores = frame.groupby("estimator")[["relative_error", "coverage", "runs"]].mean()
        near = [
            name
            for name, row in scores.iterrows()
            if coverage_band(int(row["runs"]), self.level)[0]
            <= row["coverage"]
            <= coverage_band(int(row["runs"]), self.level)[1]
        ]
        pool = scores.loc[near] if near else scores
        return str(pool["relative_error"].idxmin())

    def size_for(self, arrangements: int | None, frame: pd.DataFrame | None = None) -> int:
        """The validated log size that stands for a log of ``arrangements``: the largest at most it (the smallest
        if every one is larger; the largest if ``None``)."""
        sizes = sorted(set((self.frame() if frame is None else frame)["arrangements"].astype(int)))
        if not sizes:
            raise ValueError("the validation has no rows")
        if arrangements is None:
            return sizes[-1]
        below = [s for s in sizes if s <= arrangements]
        return below[-1] if below else sizes[0]

    def to_json(self, **meta: object) -> dict[str, object]:
        """The result as the JSON object ``regsim ope-validate`` writes (``meta`` added at the top level)."""
        return {
            **meta,
            "seeds": list(self.seeds),
            "wall_s": self.wall_s,
            "level": self.level,
            "rows": self.frame().to_dict(orient="records"),
            "statements": self.statements(),
        }

    @classmethod
    def from_json(cls, payload: dict[str, object]) -> ValidationResult:
        """The result back from :meth:`to_json`'s object (``ope_validation.json``).

        Raises:
            ValueError: The object lacks ``rows`` or ``seeds``, or a row lacks a field (named).
        """
        rows, seeds = payload.get("rows"), payload.get("seeds")
        if not isinstance(rows, list) or not isinstance(seeds, list):
            raise ValueError("--validation: expected the ope_validation.json of regsim ope-validate (rows, seeds)")
        names = [f.name for f in fields(ValidationRow)]
        parsed = []
        for r in rows:
            missing = [n for n in names if n not in r]
            if missing:
                raise ValueError(f"--validation: a row lacks {missing}")
            parsed.append(ValidationRow(**{n: r[n] for n in names}))
        level = payload.get("level", 0.95)
        wall = payload.get("wall_s", math.nan)
        return cls(
            tuple(parsed),
            tuple(int(x) for x in seeds),
            float(wall) if isinstance(wall, int | float) else math.nan,
            float(level) if isinstance(level, int | float) else 0.95,
        )


_CONTINUATION = 1_000_003  # offset of the seed of the logger that goes on deciding in the branches
_TRUTH_TAG = 0x54525554  # ASCII "TRUT": the stream of the branched truth's sample of decisions


@dataclass
class _Pool:
    """Values pooled over the seeds with their clusters (arrangements of a seed), for a mean and its error."""

    values: list[np.ndarray] = field(default_factory=list)
    clusters: list[np.ndarray] = field(default_factory=list)

    def add(self, values: np.ndarray, arrangement_id: np.ndarray, seed: int) -> None:
        self.values.append(np.asarray(values, dtype=np.float64))
        self.clusters.append(np.asarray(arrangement_id, dtype=np.int64) + (seed << 32))

    def mean(self) -> tuple[float, float]:
        """The pooled mean and its standard error with arrangements as the units (``nan`` if empty)."""
        if not self.values:
            return math.nan, math.nan
        v, c = np.concatenate(self.values), np.concatenate(self.clusters)
        if not len(v):
            return math.nan, math.nan
        _, inverse = np.unique(c, return_inverse=True)
        g = int(inverse.max()) + 1
        resid = np.bincount(inverse, weights=v - v.mean(), minlength=g)
        se = math.sqrt(g / (g - 1) * float(np.sum(resid**2))) / len(v) if g > 1 else math.nan
        return float(v.mean()), se


@dataclass
class _Runs:
    """Estimates collected per cell: values, interval hits and refusals (truth applied at the end)."""

    values: list[tuple[float, float, float]]
    refused: int = 0


def _sequential(
    trajectory: object, level: float, n_bootstrap: int, seed: int
) -> dict[str, tuple[float, float, float] | None]:
    """The per-arrangement estimators of :mod:`agents.ope.sequential` on a trajectory feedback (``None``: refused)."""
    from experiments.ope import sequential_estimates

    return {
        name: None if r.refused is not None else (r.value, r.ci_low, r.ci_high)
        for name, r in sequential_estimates(trajectory, n_bootstrap=n_bootstrap, level=level, seed=seed).items()
    }


def _since(started: float) -> str:
    return f"{time.perf_counter() - started:.0f} s"


def run_validation(
    world: WorldConfig,
    spec: ValidationSpec,
    *,
    progress: Callable[[str], None] | None = None,
    on_seed: Callable[[ValidationResult], None] | None = None,
) -> ValidationResult:
    """Run the validation of the module docstring.

    Args:
        world: The world (run off with its ``simulation.runoff_months_after_plan`` cap).
        spec: Policies, sizes and seeds.
        progress: Called with a line after each step.
        on_seed: Called after each seed but the last with the table of the seeds done so far (a checkpoint).
    """
    started = time.perf_counter()
    say = progress or (lambda _: None)
    largest = spec.sizes[-1]
    on_policy_decisions = {c: _Pool() for c in spec.candidates}
    on_policy_arrangements = {c: _Pool() for c in spec.candidates}
    branched = {(b, c): _Pool() for b in spec.behaviours for c in spec.candidates}
    fixed = {b: branchable(make_beh(0)) for b, make_beh in spec.behaviours.items()}
    cells: dict[tuple[str, str, int, str, str], _Runs] = {}

    def table(seeds: tuple[int, ...]) -> ValidationResult:
        """The table of the runs so far (the seeds ``seeds``)."""
        rows = []
        for (beh, label, size, estimand, name), runs in cells.items():
            if estimand == "per-arrangement":
                pool, kind = on_policy_arrangements[label], "on-policy"
            elif fixed[beh]:
                pool, kind = branched[beh, label], "branched"
            else:
                pool, kind = on_policy_decisions[label], "on-policy"
            truth, truth_se = pool.mean()
            vals = np.array(runs.values, dtype=np.float64).reshape(-1, 3)
            n = len(vals)
            scale = abs(truth) if truth else math.nan
            rows.append(
                ValidationRow(
                    behaviour=beh,
                    candidate=label,
                    arrangements=size,
                    estimand=estimand,
                    estimator=name,
                    truth=truth,
                    truth_kind=kind,
                    truth_se=truth_se,
                    mean_estimate=float(vals[:, 0].mean()) if n else math.nan,
                    relative_error=float(np.mean(np.abs(vals[:, 0] - truth)) / scale) if n else math.nan,
                    relative_bias=float((vals[:, 0].mean() - truth) / scale) if n else math.nan,
                    coverage=float(np.mean((vals[:, 1] <= truth) & (truth <= vals[:, 2]))) if n else math.nan,
                    runs=n,
                    refused=runs.refused,
                )
            )
        return ValidationResult(tuple(rows), seeds, time.perf_counter() - started, spec.level)

    for done, seed in enumerate(spec.seeds, start=1):
        for label, make in spec.candidates.items():
            events = simulate_log(world, make(seed), arrangements=largest, seed=seed)
            rewards = decision_rewards(events, window_days=spec.window_days)
            closed = rewards.closed
            on_policy_decisions[label].add(rewards.reward[closed], rewards.arrangement_id[closed], seed)
            ids, values = arrangement_values(events, world)
            on_policy_arrangements[label].add(values, ids, seed)
        say(f"seed {seed}: on-policy truths of {len(spec.candidates)} candidates ({_since(started)})")
        for beh, make_beh in spec.behaviours.items():
            events = simulate_log(world, make_beh(seed), arrangements=largest, seed=seed)
            everything = logged_decisions(events, world, window_days=spec.window_days)
            behaviours = {lab: logged_behaviour(*lab.split(" ", 1)) for lab in np.unique(everything.policy).tolist()}
            arrangement_ids = np.unique(everything.rewards.arrangement_id)
            # Per size, the first arrangements' decisions and their reward models (shared by the candidates).
            per_size = {}
            for size in spec.sizes:
                logged = everything.take(everything.of_arrangements(arrangement_ids[:size]))
                models = fit_reward_models(events, logged, config=world, seed=seed, interactions=spec.interactions)
                per_size[size] = logged, models
            for label, make in spec.candidates.items():
                candidate = make(seed)
                if fixed[beh]:
                    branch = branched_truth(
                        world,
                        seed,
                        everything,
                        make(seed),
                        make_beh(_CONTINUATION + seed),
                        rng=np.random.default_rng(np.random.SeedSequence([seed, _TRUTH_TAG])),
                        sample=spec.truth_sample,
                        window_days=spec.window_days,
                    )
                    branched[beh, label].add(branch.rewards, everything.rewards.arrangement_id[branch.rows], seed)
                for size, (logged, models) in per_size.items():
                    fb = build_feedback(
                        events,
                        logged,
                        candidate,
                        config=world,
                        behaviours=behaviours,
                        reward_models=models,
                        seed=seed,
                        interactions=spec.interactions,
                    )
                    results = estimate(
                        fb.bandit, spec.estimators, seed=seed, n_bootstrap=spec.n_bootstrap, level=spec.level
                    )
                    for name, r in results.items():
                        cell = cells.setdefault((beh, label, size, "per-decision", name), _Runs([]))
                        if r.refused is not None:
                            cell.refused += 1
                        else:
                            cell.values.append((r.value, r.ci_low, r.ci_high))
                    if fb.trajectory is not None:
                        seq = _sequential(fb.trajectory, spec.level, spec.n_bootstrap, seed)
                        for name, v in seq.items():
                            seq_cell = cells.setdefault((beh, label, size, "per-arrangement", name), _Runs([]))
                            if v is None:
                                seq_cell.refused += 1
                            else:
                                seq_cell.values.append(v)
            say(f"seed {seed}: {beh} logged, {len(spec.candidates)} candidates estimated ({_since(started)})")
        if on_seed is not None and done < len(spec.seeds):
            on_seed(table(tuple(spec.seeds[:done])))
    return table(tuple(spec.seeds))


def parse_sizes(text: str, flag: str = "--sizes") -> tuple[int, ...]:
    """Comma-separated ascending arrangement counts (``"100,300,1000"``).

    Raises:
        ValueError: Naming ``flag`` and what is allowed.
    """
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated integers, e.g. 100,300,1000; got {text!r}") from None
    if not sizes or any(s < 2 for s in sizes) or list(sizes) != sorted(set(sizes)):
        raise ValueError(f"{flag}: expected ascending distinct arrangement counts >= 2, got {text!r}")
    return sizes


def seeds_from(first: int, count: int) -> tuple[int, ...]:
    """``count`` consecutive seeds from ``first``."""
    return tuple(range(first, first + count))
