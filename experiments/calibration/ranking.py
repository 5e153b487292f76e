"""The back-test's ranking of candidate policies: the calibrated world's values against the OPE estimates on the
held-out months of the log.

Where the log comes from a stochastic policy (some logged propensity below 1), off-policy evaluation on the
held-out log estimates each candidate's value without any world model; the calibrated world predicts it by
simulation. If the calibration is right, the two rank the candidates alike. Both sides measure the per-decision
reward of :func:`agents.ope.logged.decision_rewards` (euros paid within the feedback window minus the decision's
contact cost), over the decisions taken in the held-out months whose window closed:

* **OPE** (:mod:`agents.ope`, read-only use of its public functions): the log's decisions with their rebuilt
  contexts (:func:`~agents.ope.logged.logged_decisions`), one cross-fitted reward model without interactions
  shared by every candidate (:func:`~agents.ope.feedback.fit_reward_models`), each candidate's feedback
  (:func:`~agents.ope.feedback.build_feedback`) restricted to the held-out decisions, and the doubly robust and
  self-normalised IPS estimates with clustered-bootstrap intervals (:func:`~agents.ope.estimators.estimate`). The
  estimand: the candidate acting at each logged held-out decision, the logger afterwards.
* **The calibrated world**: one simulation at the estimate of the log's horizon in which the log's decisions
  are replayed before the cut (:class:`~experiments.calibration.replaying.ReplayingPolicy`) and the candidate
  decides from the cut on (:class:`SwitchAtCut`), every candidate with the same seed (common random numbers, so
  the differences between candidates are theirs); its mean per-decision reward over the decisions from the cut
  on, with a standard error clustered by arrangement. The estimand: the candidate at every held-out decision.

The two estimands agree at a decision whose window closes before the next decision changes anything, and differ
where the candidate's later decisions (its deferrals, its reminders) change what follows; the comparison is of
the rankings (Kendall's tau, the share of candidate pairs ordered alike, the same best candidate), with both
values and intervals reported. OPE's intervals for deterministic candidates far from the logger are wide (few
logged decisions match their action in every part), so the agreement is also given over the pairs OPE separates
(intervals that do not overlap), and per candidate whether the world's value lies in OPE's interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from agents.base import FixedPolicy
from experiments.calibration.replaying import LoggedDecisions, Pairing, ReplayingPolicy, fallback_policy
from regsim.config import WorldConfig
from regsim.decision import ContextBatch, DecisionBatch, Policy

__all__ = [
    "DEFAULT_CANDIDATES",
    "CandidateValue",
    "Ranking",
    "SwitchAtCut",
    "is_stochastic",
    "rank_candidates",
    "rank_agreement",
    "separated_pairs",
    "world_value",
]

#: The candidates ranked unless told otherwise: registered fixed policies that differ in contact and re-plans.
DEFAULT_CANDIDATES: tuple[str, ...] = ("static-dunning", "payday-aligned", "silent", "random")
#: The OPE estimator the ranking uses (the gate's default; ``snips`` is reported beside it).
RANK_ESTIMATOR = "dr"


class SwitchAtCut(FixedPolicy):
    """``before`` decides the decision points before day ``cut``, ``after`` those from it on.

    Args:
        before: The policy before the cut (the log's replayed decisions).
        after: The candidate.
        cut: The first held-out day (unit: days since the start).
    """

    name = "switch-at-cut"
    version = "1"

    def __init__(self, before: Policy, after: Policy, cut: float) -> None:
        self.before = before
        self.after = after
        self.cut = cut

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        """Each row from ``before`` or ``after`` by its day."""
        late = contexts.by_name()["day"] >= self.cut
        if not late.any():
            return self.before.decide_batch(contexts)
        if late.all():
            return self.after.decide_batch(contexts)
        actions = np.zeros((len(contexts), 5), dtype=np.int64)
        propensity = np.ones(len(contexts))
        for rows, policy in ((np.flatnonzero(~late), self.before), (np.flatnonzero(late), self.after)):
            got = policy.decide_batch(contexts.take(rows))
            actions[rows], propensity[rows] = got.actions, got.propensity
        return DecisionBatch(actions, propensity)


@dataclass(frozen=True)
class CandidateValue:
    """One candidate's value in the held-out months, by OPE on the log and by the calibrated world.

    Attributes:
        policy: The candidate's registered name.
        ope: The doubly robust estimate (EUR per decision; NaN where refused).
        ope_low: Its interval's lower end.
        ope_high: Its upper end.
        ope_snips: The self-normalised IPS estimate.
        ope_refused: Why DR was refused, or ``None``.
        world: The calibrated world's mean per-decision reward.
        world_se: Its standard error (clustered by arrangement).
        decisions: Held-out log decisions OPE used.
    """

    policy: str
    ope: float
    ope_low: float
    ope_high: float
    ope_snips: float
    ope_refused: str | None
    world: float
    world_se: float
    decisions: int


@dataclass(frozen=True)
class Ranking:
    """The candidates' values and how the two rankings agree.

    Attributes:
        candidates: Per candidate, in the order given.
        kendall_tau: Kendall's tau between the OPE and the world values (NaN with fewer than 2 usable).
        pair_agreement: Share of candidate pairs both order alike.
        same_best: Whether both put the same candidate first.
        separated_pairs: Candidate pairs whose OPE intervals do not overlap.
        separated_agreement: Share of those the world orders as OPE does (NaN if none).
        inside: Candidates whose world value lies in OPE's interval.
        level: The OPE intervals' level.
        cutoff_days: The first held-out day.
    """

    candidates: tuple[CandidateValue, ...]
    kendall_tau: float
    pair_agreement: float
    same_best: bool
    separated_pairs: int
    separated_agreement: float
    inside: int
    level: float
    cutoff_days: float


def is_stochastic(events: pa.Table) -> bool:
    """Whether some logged decision's propensity is below 1 (the logger explored)."""
    dec = pc.equal(events.column("event").cast(pa.string()), "decision")
    prop = pc.filter(events.column("propensity"), dec).to_numpy(zero_copy_only=False)
    return bool(np.any(np.asarray(prop, float) < 1.0 - 1e-12))


def rank_agreement(a: NDArray[np.float64], b: NDArray[np.float64]) -> tuple[float, float, bool]:
    """Kendall's tau, the share of pairs ordered alike (ties count half) and whether the maxima coincide, over
    the entries finite in both.

    Raises:
        ValueError: ``a`` and ``b`` differ in length.
    """
    if len(a) != len(b):
        raise ValueError(f"rank_agreement: lengths differ ({len(a)} and {len(b)})")
    ok = np.isfinite(a) & np.isfinite(b)
    x, y = np.asarray(a, float)[ok], np.asarray(b, float)[ok]
    if len(x) < 2:
        return math.nan, math.nan, False
    i, j = np.triu_indices(len(x), k=1)
    s = np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
    concordant, discordant = float((s > 0).sum()), float((s < 0).sum())
    tied_x, tied_y = float((x[i] == x[j]).sum()), float((y[i] == y[j]).sum())
    pairs = float(len(i))
    denom = math.sqrt((pairs - tied_x) * (pairs - tied_y))
    tau = (concordant - discordant) / denom if denom > 0 else math.nan
    agreement = (concordant + 0.5 * (pairs - concordant - discordant)) / pairs
    return tau, agreement, bool(np.argmax(x) == np.argmax(y))


def _clustered_mean(reward: NDArray[np.float64], cluster: NDArray[np.int64]) -> tuple[float, float]:
    if len(reward) == 0:
        return math.nan, math.nan
    mean = float(reward.mean())
    _, inverse = np.unique(cluster, return_inverse=True)
    resid = np.bincount(inverse, weights=reward - mean)
    return mean, float(math.sqrt((resid**2).sum()) / len(reward))


def world_value(
    world: WorldConfig,
    decisions: LoggedDecisions,
    candidate: Policy,
    *,
    arrangements: int,
    months: int,
    cutoff_days: float,
    seed: int,
    pairing: Pairing = "arrangement",
) -> tuple[float, float]:
    """The calibrated world's mean per-decision reward of ``candidate`` from the cut on, and its standard error
    (module docstring)."""
    from agents.ope.logged import decision_rewards
    from regsim.simulate import simulate

    before = ReplayingPolicy(decisions, fallback_policy(decisions, seed), pairing)
    result = simulate(
        world, SwitchAtCut(before, candidate, cutoff_days), arrangements=arrangements, months=months, seed=seed
    )
    rewards = decision_rewards(result.events, horizon_days=result.horizon_days)
    keep = rewards.closed & (rewards.time >= cutoff_days)
    return _clustered_mean(rewards.reward[keep], rewards.arrangement_id[keep])


def rank_candidates(
    events: pa.Table,
    world: WorldConfig,
    base: WorldConfig,
    decisions: LoggedDecisions,
    candidates: Sequence[str],
    *,
    arrangements: int,
    months: int,
    cutoff_days: float,
    seed: int,
    n_bootstrap: int = 200,
    level: float = 0.95,
    pairing: Pairing = "arrangement",
) -> Ranking:
    """Rank ``candidates`` by OPE on the log's held-out decisions and by the calibrated ``world`` (module docstring).

    Args:
        events: The whole log.
        world: The calibrated world.
        base: The world the log's rules and run-off cap come from (for rebuilding its contexts).
        decisions: The log's decisions (for the replay before the cut).
        candidates: Registered policy names.
        arrangements: Arrangements per simulation.
        months: The log's horizon (unit: months of 30 days).
        cutoff_days: The first held-out day.
        seed: The simulations' common seed and the OPE bootstrap's.
        n_bootstrap: OPE bootstrap resamples.
        level: OPE interval level.
        pairing: The replay's pairing before the cut.

    Raises:
        ValueError: No candidate, an unknown policy name, or no held-out decision with a closed window.
    """
    import agents
    from agents.ope.behaviour import logged_behaviour
    from agents.ope.estimators import estimate
    from agents.ope.feedback import build_feedback, fit_reward_models
    from agents.ope.inputs import BanditFeedback
    from agents.ope.logged import logged_decisions

    if not candidates:
        raise ValueError("candidates: expected at least one registered policy name, got none")
    unknown = [c for c in candidates if c not in agents.available()]
    if unknown:
        raise ValueError(f"candidates: unknown {unknown}; registered: {', '.join(sorted(agents.available()))}")
    logged = logged_decisions(events, base)
    labels = tuple(np.unique(logged.policy).tolist())
    behaviours = {lab: logged_behaviour(*lab.split(" ", 1)) for lab in labels}
    models = fit_reward_models(events, logged, config=base, seed=seed, trajectories=False, interactions=False)
    out = []
    for name in candidates:
        fb = build_feedback(
            events,
            logged,
            agents.make(name),
            config=base,
            behaviours=behaviours,
            reward_models=models,
            seed=seed,
            trajectories=False,
            interactions=False,
        )
        held = logged.rewards.time[fb.rows] >= cutoff_days
        if not held.any():
            raise ValueError(f"no held-out decision (from day {cutoff_days:g}) has a closed feedback window")
        b = fb.bandit

        def part(x: NDArray[np.float64] | None, keep: NDArray[np.bool_] = held) -> NDArray[np.float64] | None:
            return None if x is None else x[keep]

        sub = BanditFeedback(
            b.cluster[held],
            b.reward[held],
            b.pscore[held],
            b.target_prob[held],
            part(b.q_logged),
            part(b.q_target),
            part(b.unsupported_mass),
        )
        res = estimate(sub, (RANK_ESTIMATOR, "snips"), seed=seed, n_bootstrap=n_bootstrap, level=level)
        dr = res[RANK_ESTIMATOR]
        value, se = world_value(
            world,
            decisions,
            agents.make(name),
            arrangements=arrangements,
            months=months,
            cutoff_days=cutoff_days,
            seed=seed,
            pairing=pairing,
        )
        out.append(
            CandidateValue(
                name, dr.value, dr.ci_low, dr.ci_high, res["snips"].value, dr.refused, value, se, int(held.sum())
            )
        )
    ope = np.array([c.ope for c in out])
    sim = np.array([c.world for c in out])
    tau, agreement, same = rank_agreement(ope, sim)
    separated, alike = separated_pairs(out)
    inside = sum(1 for c in out if c.ope_low <= c.world <= c.ope_high)
    return Ranking(
        tuple(out),
        tau,
        agreement,
        same,
        separated,
        alike / separated if separated else math.nan,
        inside,
        level,
        float(cutoff_days),
    )


def separated_pairs(values: Sequence[CandidateValue]) -> tuple[int, int]:
    """Pairs of candidates whose OPE intervals do not overlap, and how many of them the world orders alike."""
    pairs = alike = 0
    for i, a in enumerate(values):
        for b in values[i + 1 :]:
            if a.ope_high < b.ope_low or b.ope_high < a.ope_low:
                pairs += 1
                alike += int((a.ope - b.ope) * (a.world - b.world) > 0)
    return pairs, alike
