"""``regsim ope``: off-policy evaluation of a candidate policy on an event log, with a deploy gate.

:func:`run_ope` reads ``LOG/events.parquet`` (a simulator's log or the server's ``regsim export-log``), rebuilds
every decision's context from the log (:mod:`agents.ope.logged`, :mod:`agents.ope.feedback`), runs every estimator of
:mod:`agents.ope.estimators` on the per-decision estimand (euros paid within the feedback window minus the
decision's contact cost) and the sequential ones of :mod:`agents.ope.sequential` on the per-arrangement estimand
(run-off net recovery), and decides the deploy gate (:func:`paired_gate`): the candidate's value minus the
baseline's, with a clustered bootstrap over the same arrangements for both. The baseline is the logging policy
itself by default (its value on its own log is the logged mean reward) or another policy (``--baseline``).

The estimator the gate uses is the one a validation recommends (:mod:`experiments.ope_recommend`): a small one
run now on the ``--population`` world with the log's size (capped) and its logging policy when that is a
registered one whose arguments the log records, or a saved larger one (``--validation``); otherwise ``dr``.

``--policy shadow`` evaluates the server's shadow policy from ``LOG/shadow_decisions.parquet`` (its stored action
at each decision: :func:`agents.ope.logged.shadow_candidate`).

The report (:class:`OpeReport`) is written as ``ope.json`` and ``ope.html`` (:mod:`experiments.ope_report`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from agents.ope.behaviour import logged_behaviour
from agents.ope.estimators import ESTIMATOR_NAMES, ESTIMATORS, EstimatorParams, estimate
from agents.ope.feedback import LoggedFeedback, LogSummary, RewardModels, build_feedback, fit_reward_models
from agents.ope.inputs import BanditFeedback, EstimatorResult, TrajectoryFeedback
from agents.ope.intervals import bootstrap_sums, cluster_codes, cluster_sums, percentile_interval
from agents.ope.logged import DEFAULT_WINDOW_DAYS, LoggedDecisions, logged_decisions, read_log, shadow_candidate
from experiments.ope_recommend import Recommendation, recommend_estimator, recommend_from_validation
from regsim.config import WorldConfig
from regsim.decision import Policy

__all__ = [
    "GATE_ORDER",
    "Gate",
    "OpeReport",
    "Recommendation",
    "make_policy",
    "paired_gate",
    "recommend_estimator",
    "recommend_from_validation",
    "run_ope",
    "sequential_estimates",
]

#: The estimators the gate falls back on, in order, when the recommended one is refused (or none was made).
GATE_ORDER: tuple[str, ...] = ("dr", "sndr", "dros", "switch-dr", "snips", "ips", "dm")
#: The name of ``--policy``/``--baseline`` that means the server's shadow policy.
SHADOW = "shadow"

Say = Callable[[str], None]
Verdict = Literal["better", "worse", "unclear", "refused"]


def make_policy(spec: str, flag: str) -> Policy:
    """The policy a ``NAME_OR_ARTIFACT`` names (:func:`agents.policy_reference`).

    Raises:
        ValueError: Neither a registered name nor a loadable artifact folder; the message names ``flag``.
    """
    import agents
    from agents.artifact import ArtifactError, load_policy

    try:
        ref = agents.policy_reference(spec)
        if ref.name is not None:
            return agents.make(ref.name)
        assert ref.folder is not None
        return load_policy(ref.folder)
    except (agents.UnknownPolicyError, ArtifactError, FileNotFoundError, ValueError) as exc:
        raise ValueError(
            f"{flag}: {exc} (allowed: a name of `regsim policies`, an artifact folder, or {SHADOW!r})"
        ) from None


def sequential_estimates(
    trajectory: object, *, n_bootstrap: int, level: float, seed: int
) -> dict[str, EstimatorResult]:
    """The per-arrangement estimators of :mod:`agents.ope.sequential` on a :class:`TrajectoryFeedback`."""
    from agents.ope.sequential import estimate_sequential

    assert isinstance(trajectory, TrajectoryFeedback)
    return dict(estimate_sequential(trajectory, seed=seed, n_bootstrap=n_bootstrap, level=level))


@dataclass(frozen=True)
class Gate:
    """The deploy gate: does the candidate beat the baseline on this log?

    Attributes:
        estimator: The estimator it rests on.
        baseline: The baseline (``"logging policy"`` when it is the log's own).
        candidate_value: The candidate's estimate (EUR per decision).
        baseline_value: The baseline's (the logged mean for the logging policy).
        difference: ``candidate_value - baseline_value``.
        ci_low: Lower end of the paired interval of the difference (clustered bootstrap, same resamples).
        ci_high: Its upper end.
        level: The interval's level.
        verdict: ``better`` (the interval lies above 0), ``worse`` (below), ``unclear``, or ``refused``.
        sentence: The verdict in words.
    """

    estimator: str
    baseline: str
    candidate_value: float
    baseline_value: float
    difference: float
    ci_low: float
    ci_high: float
    level: float
    verdict: Verdict
    sentence: str


def _columns(fb: BanditFeedback, name: str, params: EstimatorParams) -> tuple[np.ndarray, Callable[..., np.ndarray]]:
    spec = ESTIMATORS[name]
    return spec.columns(fb, params), spec.combine


def paired_gate(
    candidate: BanditFeedback,
    baseline: BanditFeedback | None,
    estimator: str,
    *,
    candidate_label: str,
    baseline_label: str,
    n_bootstrap: int = 200,
    level: float = 0.95,
    seed: int = 0,
    refused: str | None = None,
) -> Gate:
    """The candidate's estimate minus the baseline's, with a paired clustered-bootstrap interval.

    Both feedbacks hold the same decisions (the same log rows, so the same clusters); each bootstrap resample of
    arrangements is applied to both, so the interval is of the difference itself (the noise both share cancels).
    With ``baseline=None`` the baseline is the logging policy, whose value is the mean logged reward.

    Args:
        candidate: The candidate's feedback.
        baseline: The baseline's feedback on the same rows, or ``None`` for the logging policy.
        estimator: The estimator (a name of :data:`~agents.ope.estimators.ESTIMATOR_NAMES`).
        candidate_label: The candidate's name, for the sentence.
        baseline_label: The baseline's name, for the sentence.
        n_bootstrap: Resamples.
        level: Interval level.
        seed: Seed of the resamples.
        refused: Why the estimator is refused on the candidate or the baseline (then no gate), or ``None``.

    Raises:
        ValueError: The feedbacks hold different decisions.
    """
    if baseline is not None and not np.array_equal(candidate.cluster, baseline.cluster):
        raise ValueError("candidate and baseline feedback must hold the same decisions (the same clusters)")
    if refused is not None:
        sentence = f"No verdict: {estimator} is refused on this log ({refused})."
        return Gate(estimator, baseline_label, *(math.nan,) * 5, level, "refused", sentence)
    params = EstimatorParams()
    cand_cols, cand_combine = _columns(candidate, estimator, params)
    if baseline is None:
        base_cols = candidate.reward[:, None]

        def base_combine(s: np.ndarray, count: np.ndarray) -> np.ndarray:
            return np.asarray(s[..., 0] / count)

    else:
        base_cols, base_combine = _columns(baseline, estimator, params)
    k = cand_cols.shape[1]
    columns = np.concatenate([np.ones((candidate.n, 1)), cand_cols, base_cols], axis=1)
    codes, n_clusters = cluster_codes(candidate.cluster)
    sums = cluster_sums(codes, n_clusters, columns)
    full = sums.sum(axis=0)
    c_value = float(cand_combine(full[1 : 1 + k], np.asarray(full[0])))
    b_value = float(base_combine(full[1 + k :], np.asarray(full[0])))
    boot = bootstrap_sums(sums, n_bootstrap, np.random.default_rng(seed))
    diffs = cand_combine(boot[:, 1 : 1 + k], boot[:, 0]) - base_combine(boot[:, 1 + k :], boot[:, 0])
    lo, hi = percentile_interval(np.asarray(diffs, dtype=np.float64), level)
    diff = c_value - b_value
    verdict: Verdict = "better" if lo > 0 else "worse" if hi < 0 else "unclear"
    interval = f"{diff:+,.2f} EUR per decision ({level:.0%} interval {lo:+,.2f} to {hi:+,.2f}, {estimator})"
    sentence = {
        "better": f"Deploy: {candidate_label} beats {baseline_label} on this log by {interval}.",
        "worse": f"Do not deploy: {candidate_label} does worse than {baseline_label} on this log, {interval}.",
        "unclear": (
            f"Not shown: the log cannot tell {candidate_label} from {baseline_label}, {interval}; the interval holds 0."
        ),
    }[verdict]
    return Gate(estimator, baseline_label, c_value, b_value, diff, lo, hi, level, verdict, sentence)


@dataclass(frozen=True)
class OpeReport:
    """Everything ``regsim ope`` found on one log (written as ``ope.json`` and ``ope.html``).

    Attributes:
        log: The log folder.
        population: The world config's name.
        candidate: The candidate's label.
        baseline: The baseline's label.
        window_days: The per-decision feedback window (days).
        estimators: Per-decision estimates by estimator.
        per_arrangement: Per-arrangement estimates by estimator (empty if no arrangement is closed).
        logged_per_arrangement: The logging policy's mean run-off net recovery over the counted arrangements.
        summary: What the log held and what was counted.
        gate: The deploy gate.
        recommendation: The estimator choice, or ``None`` when skipped.
        warnings: Caveats and refusals, as sentences.
    """

    log: str
    population: str
    candidate: str
    baseline: str
    window_days: float
    estimators: dict[str, EstimatorResult]
    per_arrangement: dict[str, EstimatorResult]
    logged_per_arrangement: float
    summary: LogSummary
    gate: Gate
    recommendation: Recommendation | None
    warnings: tuple[str, ...]


def _feedback_for(
    spec: str,
    flag: str,
    log_dir: Path,
    events: pa.Table,
    logged: LoggedDecisions,
    *,
    config: WorldConfig,
    behaviours: dict[str, Policy | None],
    seed: int,
    interactions: bool,
    models: Callable[[], RewardModels],
) -> tuple[LoggedFeedback, str]:
    """The feedback of the policy a flag names (``shadow``: the server's stored shadow decisions; any other:
    with the log's reward models ``models()``, shared by the candidate and the baseline)."""
    if spec == SHADOW:
        path = log_dir / "shadow_decisions.parquet"
        if not path.is_file():
            raise FileNotFoundError(
                f"{flag} shadow: no {path}; the server stores its shadow decisions in the table shadow_decisions "
                "(decision_id, a_channel .. a_reduction, propensity), which `regsim export-log` writes there"
            )
        on_log, present = shadow_candidate(pq.read_table(path), logged)
        fb = build_feedback(
            events,
            logged,
            on_log,
            config=config,
            behaviours=behaviours,
            candidate_present=present,
            seed=seed,
            interactions=interactions,
        )
        return fb, "shadow policy (server)"
    policy = make_policy(spec, flag)
    fb = build_feedback(
        events,
        logged,
        policy,
        config=config,
        behaviours=behaviours,
        reward_models=models(),
        seed=seed,
        interactions=interactions,
    )
    return fb, spec


def run_ope(
    log: str | Path,
    policy: str,
    *,
    config: WorldConfig,
    baseline: str | None = None,
    window_days: float = DEFAULT_WINDOW_DAYS,
    n_bootstrap: int = 200,
    level: float = 0.95,
    seed: int = 0,
    recommend: bool = True,
    recommend_seeds: int = 3,
    interactions: bool = True,
    validation: str | Path | None = None,
    say: Say | None = None,
) -> OpeReport:
    """Evaluate ``policy`` on the log in ``log`` (see the module docstring).

    ``interactions`` chooses the reward model's context x action interactions (on: better DM/DR models, a
    ~2,000-coefficient solve per fold; off: the linear model) for the estimates and the recommendation alike.
    ``validation``, an ``ope_validation.json`` of ``regsim ope-validate``, makes the recommendation from that
    (larger) validation (:func:`recommend_from_validation`) instead of a small one run now.

    Raises:
        FileNotFoundError: No event log (or no shadow decisions for ``shadow``), naming the flag.
        ValueError: A bad policy name, or nothing to evaluate; the message names the flag.
    """
    tell = say or (lambda _: None)
    log_dir = Path(log)
    events = read_log(log_dir)
    tell(f"read {len(events):,} events from {log_dir}")
    logged = logged_decisions(events, config, window_days=window_days, progress=tell)
    labels = tuple(np.unique(logged.policy).tolist())
    behaviours = {lab: logged_behaviour(*lab.split(" ", 1)) for lab in labels}
    fitted: list[RewardModels] = []

    def models() -> RewardModels:
        """The log's reward models, fitted on first use (the same for every policy but the shadow)."""
        if not fitted:
            fitted.append(fit_reward_models(events, logged, config=config, seed=seed, interactions=interactions))
        return fitted[0]

    fb, cand_label = _feedback_for(
        policy,
        "--policy",
        log_dir,
        events,
        logged,
        config=config,
        behaviours=behaviours,
        seed=seed,
        interactions=interactions,
        models=models,
    )
    tell(f"{fb.summary.decisions_counted:,} decisions counted; estimating")
    results = estimate(fb.bandit, ESTIMATOR_NAMES, seed=seed, n_bootstrap=n_bootstrap, level=level)
    per_arrangement: dict[str, EstimatorResult] = {}
    logged_arr = math.nan
    warnings: list[str] = []
    if fb.trajectory is not None:
        per_arrangement = sequential_estimates(fb.trajectory, n_bootstrap=n_bootstrap, level=level, seed=seed)
        _, inverse = np.unique(fb.trajectory.trajectory, return_inverse=True)
        logged_arr = float(np.bincount(inverse, weights=fb.trajectory.reward).mean())
    else:
        warnings.append("no arrangement of the log has ended or passed its run-off cap: no per-arrangement estimate")
    if fb.trajectory is not None and fb.summary.arrangements_open:
        warnings.append(
            f"the per-arrangement estimates rest on the {fb.summary.arrangements_counted:,} arrangements that ended "
            f"or passed their cap ({fb.summary.arrangements_open:,} were still open): under another policy other "
            "arrangements would have ended, so they hold for a run-off log only"
        )
    recommendation = None
    if recommend and validation is not None:
        recommendation = recommend_from_validation(
            validation, logging_labels=labels, candidate=policy, arrangements=fb.summary.arrangements
        )
        tell(f"recommendation from {validation}: {recommendation.estimator}")
    elif recommend and policy != SHADOW:
        tell("recommending an estimator: a small validation on a world like the log's")
        recommendation = recommend_estimator(
            config,
            logging_labels=labels,
            candidate=lambda _seed: make_policy(policy, "--policy"),
            arrangements=fb.summary.arrangements,
            seeds=recommend_seeds,
            n_bootstrap=min(n_bootstrap, 100),
            window_days=window_days,
            interactions=interactions,
            say=tell,
        )
    chosen = [recommendation.estimator] if recommendation and recommendation.estimator else []
    order = [*chosen, *(e for e in GATE_ORDER if e not in chosen)]
    base_fb: BanditFeedback | None = None
    base_results: dict[str, EstimatorResult] = {}
    base_label = "the logging policy"
    if baseline is not None:
        bfb, base_label = _feedback_for(
            baseline,
            "--baseline",
            log_dir,
            events,
            logged,
            config=config,
            behaviours=behaviours,
            seed=seed,
            interactions=interactions,
            models=models,
        )
        common = np.intersect1d(fb.rows, bfb.rows)
        base_fb = bfb.bandit.take(np.flatnonzero(np.isin(bfb.rows, common)))
        keep = np.flatnonzero(np.isin(fb.rows, common))
        cand_fb = fb.bandit.take(keep)
        base_results = estimate(base_fb, ESTIMATOR_NAMES, seed=seed, n_bootstrap=0)
    else:
        cand_fb = fb.bandit
    name = next(
        (e for e in order if results[e].refused is None and (not base_results or base_results[e].refused is None)),
        order[0],
    )
    why = results[name].refused or (base_results[name].refused if base_results else None)
    gate = paired_gate(
        cand_fb,
        base_fb,
        name,
        candidate_label=cand_label,
        baseline_label=base_label,
        n_bootstrap=n_bootstrap,
        level=level,
        seed=seed,
        refused=why,
    )
    caveat = results[name].diagnostics.warning
    if caveat and gate.verdict != "refused":
        gate = dataclasses.replace(gate, sentence=f"{gate.sentence} Caveat: {caveat}.")
    if chosen and name != chosen[0]:
        warnings.append(f"the recommended estimator {chosen[0]} is refused on this log; the gate uses {name}")
    for r in results.values():
        if r.refused:
            warnings.append(f"{r.name} refused: {r.refused}")
        elif r.diagnostics.warning:
            warnings.append(f"{r.name}: {r.diagnostics.warning}")
    s = fb.summary
    if s.decisions_open:
        warnings.append(
            f"{s.decisions_open:,} of {s.decisions:,} decisions left out: their {s.window_days:g}-day feedback window "
            "had not closed by the log's end"
        )
    if s.decisions_without_propensity:
        warnings.append(f"{s.decisions_without_propensity:,} decisions left out: no propensity in (0, 1] logged")
    if s.decisions_without_candidate:
        warnings.append(f"{s.decisions_without_candidate:,} decisions left out: the candidate gave no action")
    return OpeReport(
        log=str(log_dir),
        population=config.name,
        candidate=cand_label,
        baseline=base_label,
        window_days=window_days,
        estimators=results,
        per_arrangement=per_arrangement,
        logged_per_arrangement=logged_arr,
        summary=s,
        gate=gate,
        recommendation=recommendation,
        warnings=tuple(warnings),
    )
