"""The estimators' inputs built from a log for a candidate: per-decision and per-arrangement feedback.

:func:`build_feedback` turns a log's decisions (:func:`agents.ope.logged.logged_decisions`) and a candidate into

* :class:`~agents.ope.inputs.BanditFeedback` for the **per-decision estimand**, with the rewards of
  :func:`agents.ope.log_rewards.decision_rewards` (euros paid within the feedback window minus the decision's own
  contact cost); the cluster is the arrangement. Only decisions whose window has closed by the log's end count
  (item 4 of issue 19), with a propensity in (0, 1] and a candidate action; the others are counted in
  :class:`LogSummary`.
* :class:`~agents.ope.inputs.TrajectoryFeedback` for the **per-arrangement estimand**, the run-off net recovery,
  with the steps of :func:`agents.ope.log_rewards.step_rewards`. Only arrangements that ended or passed their cap
  (``simulation.runoff_months_after_plan``) by the log's end count.

Reward-model terms (``q_logged``, ``q_target``) come from the cross-fitted ridge model of
:mod:`agents.ope.reward_model`, fitted on the counted rows over the shared features (:func:`regsim.features.features`),
folds by arrangement. The fit does not depend on the candidate: :func:`fit_reward_models` fits it once per log
(:class:`RewardModels`), and every candidate's :func:`build_feedback` on that log can take it, with the same numbers
as fitting it again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from agents.ope.candidates import CandidateOnLog, candidate_on_log, policy_probabilities
from agents.ope.inputs import BanditFeedback, TrajectoryFeedback
from agents.ope.log_rewards import step_rewards
from agents.ope.logged import LoggedDecisions
from agents.ope.reward_model import CrossFittedModel, fit_cross_fitted
from regsim.config import WorldConfig
from regsim.decision import Policy
from regsim.features import features
from regsim.runoff import RunoffCap

__all__ = ["LogSummary", "LoggedFeedback", "RewardModels", "build_feedback", "fit_reward_models"]


@dataclass(frozen=True)
class LogSummary:
    """What a log held and what of it the estimates use (the counts item 4 of issue 19 reports).

    Attributes:
        window_days: The per-decision feedback window (days).
        horizon_days: The log's end (days).
        decisions: Decisions in the log.
        decisions_counted: Decisions in the per-decision feedback.
        decisions_open: Decisions left out because their window had not closed by the log's end.
        decisions_without_propensity: Left out because the log gives no propensity in (0, 1].
        decisions_without_candidate: Left out because the candidate gave no action (a shadow policy that was
            not running or failed at that decision).
        arrangements: Arrangements in the log.
        arrangements_counted: Arrangements in the per-arrangement feedback (ended or past their run-off cap).
        arrangements_open: Left out because they were still open and within their cap at the log's end.
        arrangements_without_propensity: Left out because one of their decisions lacks a propensity.
        logging_policies: The logging policies (``"name version"``) and their decision counts.
        candidate_source: How the candidate's probabilities were obtained (:mod:`agents.ope.candidates`).
    """

    window_days: float
    horizon_days: float
    decisions: int
    decisions_counted: int
    decisions_open: int
    decisions_without_propensity: int
    decisions_without_candidate: int
    arrangements: int
    arrangements_counted: int
    arrangements_open: int
    arrangements_without_propensity: int
    logging_policies: tuple[tuple[str, int], ...]
    candidate_source: str


@dataclass(frozen=True)
class LoggedFeedback:
    """The estimators' inputs built from one log for one candidate.

    Attributes:
        bandit: Per-decision feedback (closed windows only).
        trajectory: Per-arrangement feedback (closed arrangements only), or ``None`` if none is closed.
        candidate: The candidate on every logged decision (all rows, log order).
        rows: The logged decisions (indices into the log's decisions) in ``bandit``, in its order.
        summary: The counts.
    """

    bandit: BanditFeedback
    trajectory: TrajectoryFeedback | None
    candidate: CandidateOnLog
    rows: NDArray[np.int64]
    summary: LogSummary


def _unsupported(
    logged: LoggedDecisions, candidate: CandidateOnLog, behaviours: dict[str, Policy | None]
) -> NDArray[np.float64]:
    """Per decision, the candidate's weight on support actions the logging policy gives probability 0.

    Where the logging policy is rebuilt (``behaviours``), from its probabilities of the candidate's support;
    where the logged propensity is 1 (a deterministic logger there), ``1 - target_prob``; else 0 (unknown).
    """
    k = candidate.weights.shape[1]
    out = np.where(logged.propensity == 1.0, 1.0 - candidate.target_prob, 0.0)
    for label, policy in behaviours.items():
        rows = np.flatnonzero(logged.policy == label)
        if policy is None or not len(rows):
            continue
        sub = logged.contexts.take(rows)
        zero = np.zeros((len(rows), k), dtype=bool)
        for j in range(k):
            p = policy_probabilities(policy, sub, candidate.support[rows, j])
            if p is None:
                break
            zero[:, j] = p <= 0.0
        else:
            out[rows] = (candidate.weights[rows] * zero).sum(axis=1)
    return np.clip(out, 0.0, 1.0)


@dataclass(frozen=True)
class _Counted:
    """Which logged decisions and steps count, with the steps' rewards (see the module docstring)."""

    rows: NDArray[np.int64]  # decisions of the per-decision feedback
    step_rows: NDArray[np.int64]  # decisions (steps) of the per-arrangement feedback
    step_reward: NDArray[np.float64]  # per logged decision
    step: NDArray[np.int64]  # per logged decision
    closed: NDArray[np.bool_]  # per logged decision: its window closed
    has_p: NDArray[np.bool_]  # per logged decision: a propensity in (0, 1]
    arr_closed: NDArray[np.bool_]  # per logged decision: its arrangement ended or passed its cap (within it)
    bad_arr: NDArray[np.int64]  # arrangements with a decision lacking a propensity or a candidate action


def _counted(
    events: pa.Table, logged: LoggedDecisions, config: WorldConfig, present: NDArray[np.bool_] | None
) -> _Counted:
    """The counted decisions and steps (raises ``ValueError`` saying why when no decision counts)."""
    present = np.ones(len(logged), dtype=bool) if present is None else present
    has_p = np.isfinite(logged.propensity) & (logged.propensity > 0) & (logged.propensity <= 1)
    closed = logged.rewards.closed
    rows = np.flatnonzero(closed & has_p & present)
    if not len(rows):
        raise ValueError(
            f"--log: no decision to evaluate: {int((~closed).sum())} of {len(logged)} have an open feedback window "
            f"({logged.rewards.window_days:g} days), {int((~has_p).sum())} lack a propensity, "
            f"{int((~present).sum())} have no candidate action"
        )
    cap = RunoffCap(months_after_plan=config.simulation.runoff_months_after_plan)
    step_reward, step, arr_closed = step_rewards(events, logged.rewards, cap)
    arr_ids = logged.rewards.arrangement_id
    bad_arr = np.unique(arr_ids[~(has_p & present)])
    usable = arr_closed & ~np.isin(arr_ids, bad_arr)
    return _Counted(rows, np.flatnonzero(usable), step_reward, step, closed, has_p, arr_closed, bad_arr)


@dataclass(frozen=True)
class RewardModels:
    """The cross-fitted reward models of one log, shared by the candidates evaluated on it.

    Attributes:
        rows: The logged decisions the per-decision model is fitted on (those :func:`build_feedback` counts).
        bandit: The per-decision model (rewards of :func:`~agents.ope.log_rewards.decision_rewards`).
        step_rows: The steps the per-arrangement model is fitted on.
        trajectory: The per-step model (rewards of :func:`~agents.ope.log_rewards.step_rewards`), or ``None``
            when no arrangement is closed (or trajectories were not asked for).
        folds: Cross-fitting folds asked for.
        seed: The folds' seed (the per-step model's is ``seed + 1``).
        interactions: Whether the models have the context x action interactions.
    """

    rows: NDArray[np.int64]
    bandit: CrossFittedModel
    step_rows: NDArray[np.int64]
    trajectory: CrossFittedModel | None
    folds: int
    seed: int
    interactions: bool


def _fit(
    logged: LoggedDecisions,
    feats: NDArray[np.float64],
    reward: NDArray[np.float64],
    rows: NDArray[np.int64],
    folds: int,
    seed: int,
    interactions: bool,
) -> CrossFittedModel:
    groups = logged.rewards.arrangement_id[rows]
    return fit_cross_fitted(
        feats[rows],
        logged.actions[rows],
        reward[rows],
        groups,
        action_sizes=tuple(logged.contexts.space.nvec),
        folds=max(2, min(folds, len(np.unique(groups)))),
        seed=seed,
        kinds=logged.kind[rows],
        context_interactions=interactions,
    )


def fit_reward_models(
    events: pa.Table,
    logged: LoggedDecisions,
    *,
    config: WorldConfig,
    candidate_present: NDArray[np.bool_] | None = None,
    folds: int = 5,
    seed: int = 0,
    trajectories: bool = True,
    interactions: bool = True,
) -> RewardModels:
    """The reward models :func:`build_feedback` would fit on this log (the arguments as there).

    Raises:
        ValueError: No decision is left to count (the message says why).
    """
    counted = _counted(events, logged, config, candidate_present)
    feats = features(logged.contexts).astype(np.float64)
    bandit = _fit(logged, feats, logged.rewards.reward, counted.rows, folds, seed, interactions)
    trajectory = None
    if trajectories and len(counted.step_rows):
        trajectory = _fit(logged, feats, counted.step_reward, counted.step_rows, folds, seed + 1, interactions)
    return RewardModels(counted.rows, bandit, counted.step_rows, trajectory, folds, seed, interactions)


def build_feedback(
    events: pa.Table,
    logged: LoggedDecisions,
    candidate: Policy | CandidateOnLog,
    *,
    config: WorldConfig,
    behaviours: dict[str, Policy | None] | None = None,
    candidate_present: NDArray[np.bool_] | None = None,
    reward_model: bool = True,
    reward_models: RewardModels | None = None,
    folds: int = 5,
    seed: int = 0,
    samples: int = 16,
    trajectories: bool = True,
    interactions: bool = True,
) -> LoggedFeedback:
    """The per-decision and per-arrangement feedback of a candidate on a log.

    Args:
        events: The event log ``logged`` was built from.
        logged: Its decisions (:func:`agents.ope.logged.logged_decisions`).
        candidate: The candidate policy, or its probabilities already computed (e.g.
            :func:`agents.ope.logged.shadow_candidate`).
        config: The world config the log was made under (its run-off cap).
        behaviours: The logging policies rebuilt per ``"name version"`` label (``None`` where unknown), for the
            support diagnostic.
        candidate_present: Per decision, whether the candidate gave an action (default: everywhere).
        reward_model: Use the cross-fitted reward model (``q_logged``, ``q_target``); without it DM/DR are refused.
        reward_models: The log's models already fitted (:func:`fit_reward_models`, on the same rows), or ``None``
            to fit them here with ``folds``, ``seed`` and ``interactions``.
        folds: Cross-fitting folds (by arrangement).
        seed: Seed of the reward model's folds and of the candidate's support draws.
        samples: Draws per context of a stochastic candidate's support.
        trajectories: Build the per-arrangement feedback too.
        interactions: The reward model's context x action-part interactions (``context_interactions`` of
            :func:`~agents.ope.reward_model.cross_fitted_rewards`: better fits, a ~2,000-coefficient solve per fold).

    Raises:
        ValueError: No decision is left to count (the message says why), or ``reward_models`` fitted on other rows.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4F5045]))
    on_log = (
        candidate
        if isinstance(candidate, CandidateOnLog)
        else candidate_on_log(candidate, logged.contexts, logged.actions, rng=rng, samples=samples)
    )
    counted = _counted(events, logged, config, candidate_present)
    rows = counted.rows
    if reward_model and reward_models is None:
        reward_models = fit_reward_models(
            events,
            logged,
            config=config,
            candidate_present=candidate_present,
            folds=folds,
            seed=seed,
            trajectories=trajectories,
            interactions=interactions,
        )
    if (
        reward_model
        and reward_models is not None
        and not (
            np.array_equal(reward_models.rows, rows)
            and (not trajectories or np.array_equal(reward_models.step_rows, counted.step_rows))
        )
    ):
        raise ValueError("reward_models: fitted on other decisions than this feedback counts (another log?)")
    unsupported = _unsupported(logged, on_log, behaviours or {})
    q_logged = q_target = None
    if reward_model and reward_models is not None:
        q_logged = reward_models.bandit.q_logged
        q_target = reward_models.bandit.predict(on_log.support[rows], on_log.weights[rows])
    bandit = BanditFeedback(
        cluster=logged.rewards.arrangement_id[rows],
        reward=logged.rewards.reward[rows],
        pscore=logged.propensity[rows],
        target_prob=on_log.target_prob[rows],
        q_logged=q_logged,
        q_target=q_target,
        unsupported_mass=unsupported[rows],
    )
    arr_ids = logged.rewards.arrangement_id
    trajectory = None
    srows = counted.step_rows
    if trajectories and len(srows):
        tq_logged = tq_target = None
        model = reward_models.trajectory if reward_model and reward_models is not None else None
        if model is not None:
            tq_logged = model.q_logged
            tq_target = model.predict(on_log.support[srows], on_log.weights[srows])
        trajectory = TrajectoryFeedback(
            trajectory=arr_ids[srows],
            step=counted.step[srows],
            reward=counted.step_reward[srows],
            pscore=logged.propensity[srows],
            target_prob=on_log.target_prob[srows],
            q_logged=tq_logged,
            q_target=tq_target,
            v_next=None if tq_target is None else _next_in_trajectory(arr_ids[srows], counted.step[srows], tq_target),
        )
    closed, has_p = counted.closed, counted.has_p
    present = np.ones(len(logged), dtype=bool) if candidate_present is None else candidate_present
    labels, counts = np.unique(logged.policy, return_counts=True)
    all_arr = np.unique(arr_ids)
    closed_arr = np.unique(arr_ids[counted.arr_closed])
    summary = LogSummary(
        window_days=logged.rewards.window_days,
        horizon_days=logged.rewards.horizon_days,
        decisions=len(logged),
        decisions_counted=len(rows),
        decisions_open=int((~closed).sum()),
        decisions_without_propensity=int((closed & ~has_p).sum()),
        decisions_without_candidate=int((closed & has_p & ~present).sum()),
        arrangements=len(all_arr),
        arrangements_counted=len(np.unique(arr_ids[srows])),
        arrangements_open=len(all_arr) - len(closed_arr),
        arrangements_without_propensity=len(np.intersect1d(closed_arr, counted.bad_arr)),
        logging_policies=tuple((str(a), int(b)) for a, b in zip(labels, counts, strict=True)),
        candidate_source=on_log.source,
    )
    return LoggedFeedback(bandit, trajectory, on_log, rows, summary)


def _next_in_trajectory(
    trajectory: NDArray[np.int64], step: NDArray[np.int64], value: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Per step, ``value`` at the next step of its trajectory (0 after the last): the model's next-state value."""
    order = np.lexsort((step, trajectory))
    nxt = np.zeros(len(order))
    same = trajectory[order][1:] == trajectory[order][:-1]
    nxt[order[:-1][same]] = value[order][1:][same]
    return nxt
