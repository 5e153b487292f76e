"""Paired evaluation of policies on the population simulator, with confidence intervals against a baseline.

:func:`evaluate` runs every policy on the same debtors and shocks (common random numbers: one
:func:`regsim.simulate` run per policy and seed, with the same seed and therefore the same arrangement ids,
debts, incomes and shocks; shared capacity counts, since the whole population runs together), and returns an
:class:`Evaluation`: per KPI of :data:`regsim.metrics.KPI_NAMES` and per segment, each policy's value, its
difference to the baseline with a paired confidence interval, and the share of the baseline-to-oracle gap it
closes.

Notation. Seeds :math:`s = 1..S`; in seed *s* arrangements :math:`i = 1..n_s`, pooled over seeds into
:math:`N = \\sum_s n_s` pairs; for policy *p* and the baseline *b*, per-arrangement quantities from
:func:`regsim.metrics.arrangement_outcomes`. Arrangement *i* of seed *s* is the same debtor under every
policy, so differences are taken arrangement by arrangement (pairing), which removes the between-debtor
variance that unpaired comparisons carry. Arrangements are pooled across seeds and treated as independent
pairs (seeds are independent populations; within a seed, arrangements interact only through shared
capacity, which the intervals ignore). All intervals are two-sided at ``level`` (95 % by default).

KPIs come in three kinds (:data:`KPI_KINDS`):

* **Means over arrangements** (``completion_rate``, ``breakdown_rate``, ``referral_rate``, ``active_rate``,
  ``contacts_per_arrangement``, ``collected_eur_per_arrangement``): value :math:`\\bar y_p = \\frac1N
  \\sum_{s,i} y_{p,si}`; difference :math:`\\bar d = \\frac1N \\sum_{s,i} d_{si}` with
  :math:`d_{si} = y_{p,si} - y_{b,si}`; the paired t interval :math:`\\bar d \\pm t_{1-\\alpha/2,\\,N-1}
  \\, s_d / \\sqrt N`, :math:`s_d` the sample standard deviation (ddof 1) of the :math:`d_{si}`
  (:func:`paired_mean_difference`).
* **Ratios of sums** (``on_time_installment_rate`` = on-time / due installments, ``cost_per_eur_collected``
  = contact cost / collected, ``mean_days_to_completion`` = sum of days over completed arrangements /
  completed): value :math:`R_p = \\bar Y_p / \\bar X_p`; difference :math:`D = R_p - R_b`; **delta method**
  with the paired influence values :math:`z_{si} = (Y_{p,si} - R_p X_{p,si}) / \\bar X_p - (Y_{b,si} - R_b
  X_{b,si}) / \\bar X_b`, interval :math:`D \\pm z_{1-\\alpha/2} \\, s_z / \\sqrt N`
  (:func:`paired_ratio_difference`).
* **Totals** (``collected_eur``, ``contact_cost_eur``): value the per-seed total averaged over seeds,
  :math:`\\frac1S \\sum_s \\sum_i y_{p,si} = \\bar n \\, \\bar y_p` with :math:`\\bar n = N / S` arrangements
  per seed; difference and interval are those of the per-arrangement mean scaled by :math:`\\bar n`:
  :math:`\\bar n \\bar d \\pm t_{1-\\alpha/2,\\,N-1} \\, \\bar n \\, s_d / \\sqrt N`.

Within a segment (a subset of arrangements) the same formulas apply to the arrangements of the segment, and
:math:`\\bar n` is the segment's arrangements per seed. Segments are labelled on the baseline's run of each seed
(hidden debtor type from ground truth, debt band from the ``arrangement_created`` event) and the labels are
used for every policy, so that the pairs stay pairs.

The gap closed (with ``oracle="hindsight-oracle"``, the only upper reference) is :math:`\\bar d_p / \\bar
d_{hindsight}` per KPI and segment: 0 for the baseline, 1 for the oracle, NaN where the oracle's difference is 0
or undefined. The hindsight oracle (:mod:`agents.hindsight`) is no policy that runs in the World: per seed,
after every policy ran, it takes per arrangement the best life found in hindsight on the same random numbers
(the best of the evaluated policies' outcomes, lifted by a rollout search), by the objective
:func:`regsim.metrics.runoff_value`; on that objective no evaluated policy beats it on any arrangement. Its
compute cost (wall time, lives simulated), the share of arrangements its search lifted and what dedicated
capacity is worth are in ``meta["hindsight_oracle"]``.

References:
    Delta method for ratio metrics: Deng, Knoblich & Lu, "Applying the Delta Method in Metric Analytics: A
    Practical Guide with Novel Ideas", KDD 2018, section 3. Common random numbers: Law, *Simulation Modeling
    and Analysis*, 5th ed., section 11.2.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from tqdm import tqdm

from agents.evaluation_result import COLUMNS, TABLE_KPIS, Evaluation, _typed_frame
from agents.hindsight import HINDSIGHT_ORACLE, HindsightCost, HindsightSettings, hindsight_oracle
from agents.kpi_kinds import KPI_KINDS, KpiKind, _difference, _terms, _value
from agents.paired_differences import (
    _NAN_DIFFERENCE,
    PairedDifference,
    paired_mean_difference,
    paired_ratio_difference,
)
from agents.registry import UnknownPolicyError, available, make, policy_reference
from agents.segments import DEFAULT_SEGMENTS, DebtBands, Segmenter, _label_order, by_debtor_type
from regsim.config import WorldConfig
from regsim.decision import Policy
from regsim.metrics import KPI_NAMES
from regsim.runoff import RunoffCap, covering_months
from regsim.simulate import SimulationResult, simulate

__all__ = [
    "COLUMNS",
    "DEFAULT_SEGMENTS",
    "KPI_KINDS",
    "TABLE_KPIS",
    "DebtBands",
    "Evaluation",
    "KpiKind",
    "PairedDifference",
    "Segmenter",
    "by_debtor_type",
    "evaluate",
    "paired_mean_difference",
    "paired_ratio_difference",
    "resolve_policy",
]

#: A policy as :func:`evaluate` accepts it: an instance (deep-copied per run), a zero-argument factory (called
#: per run), or a registered name or artifact folder (made or loaded per run).
PolicyLike = Policy | Callable[[], Policy] | str


# ---------------------------------------------------------------------------------------------------------------
# Policies
# ---------------------------------------------------------------------------------------------------------------
def _load_artifact(path: Path, rules_version: str | None) -> Policy:
    # Imported here: agents.artifact may pull optional dependencies (torch) that plain evaluations don't need.
    from agents.artifact import load_policy

    return load_policy(path, rules_version=rules_version)


def resolve_policy(name: str, *, rules_version: str | None = None) -> Callable[[], Policy]:
    """A factory for a policy given by name: a registered name, or a folder holding a saved policy artifact.

    A bare registered name is always the registered policy, even when the working directory holds a folder of
    that name; a folder is named by a path form (``./silent``) or by a name no policy has
    (:func:`agents.registry.policy_reference`).

    An artifact folder is loaded once here, to refuse a broken one before anything is simulated, and then
    again by every call of the factory (a fresh policy per run).

    Args:
        name: A registered policy name or an artifact folder.
        rules_version: The rule set the policy will run under; an artifact trained under another is refused
            (see ``agents.artifact.load_policy``). None skips that check.

    Raises:
        UnknownPolicyError: Neither a registered name nor a loadable artifact folder; the message lists the
            registered names, or says why the folder does not load.
    """
    ref = policy_reference(name)  # a bare registered name is the policy, never a folder of that name
    if ref.name is not None:
        registered = ref.name
        return lambda: make(registered)
    assert ref.folder is not None
    path = ref.folder
    if not path.is_dir():
        raise UnknownPolicyError(f"policy {name!r}: no such artifact folder; registered names: {sorted(available())}")
    try:
        _load_artifact(path, rules_version)
    except (ValueError, ImportError, OSError) as exc:
        raise UnknownPolicyError(f"policy {name!r}: the folder does not load as a policy artifact: {exc}") from exc
    return lambda: _load_artifact(path, rules_version)


def _factory(key: str, obj: PolicyLike, rules_version: str) -> Callable[[], Policy]:
    if isinstance(obj, str):
        return resolve_policy(obj, rules_version=rules_version)
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "decide_batch")):
        factory: Callable[[], Any] = obj

        def fresh() -> Policy:
            policy: Policy = factory()
            if not hasattr(policy, "decide_batch"):
                raise TypeError(f"the factory of policy {key!r} returned {policy!r}, not a Policy")
            return policy

        return fresh
    if hasattr(obj, "decide_batch"):
        pristine: Any = obj
        return lambda: copy.deepcopy(pristine)
    raise TypeError(f"policy {key!r}: expected a Policy, a factory of one, or a name; got {obj!r}")


def _factories(
    policies: Mapping[str, PolicyLike] | Sequence[str], baseline: str, rules_version: str
) -> dict[str, Callable[[], Policy]]:
    if isinstance(policies, str):
        raise TypeError("policies must be a sequence of names or a mapping, not one string")
    if isinstance(policies, Mapping):
        given: dict[str, PolicyLike] = dict(policies)
    else:
        names = list(policies)
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"policies: names given more than once: {duplicated}")
        given = {n: n for n in names}
    given.pop(HINDSIGHT_ORACLE, None)  # (computed after the policies ran, not run: see the module docstring)
    if baseline not in given:
        given = {baseline: baseline, **given}
    return {key: _factory(key, obj, rules_version) for key, obj in given.items()}


# ---------------------------------------------------------------------------------------------------------------
# Evaluating
# ---------------------------------------------------------------------------------------------------------------
def evaluate(
    policies: Mapping[str, PolicyLike] | Sequence[str],
    population: WorldConfig,
    n_arrangements: int,
    seeds: Sequence[int],
    *,
    months: int | None = None,
    runoff: RunoffCap | None = None,
    baseline: str = "static-dunning",
    oracle: str | None = None,
    hindsight: HindsightSettings | None = None,
    segments: Mapping[str, Segmenter] | None = None,
    level: float = 0.95,
    progress: bool = False,
    on_result: Callable[[str, int, SimulationResult], None] | None = None,
) -> Evaluation:
    """Run every policy on the same debtors and shocks and compare each with the baseline, paired.

    Every (policy, seed) pair is one :func:`regsim.simulate` run of the whole population (shared capacity
    counts), with ``arrangements=n_arrangements``, the horizon (a run-off by default) and the seed: common
    random numbers make
    arrangement *i* of seed *s* the same debtor, facing the same shocks, under every policy. The statistics are
    in the module docstring.

    Every run starts from a fresh policy, so a learning policy's seeds are independent replications:

    * a **name** is made with :func:`agents.make` per run, or, when it is a folder, loaded per run with
      ``agents.artifact.load_policy(folder, rules_version=population.rules.version)`` (an artifact trained
      under another rule set is refused);
    * a **factory** (a class or any zero-argument callable) is called per run;
    * an **instance** is deep-copied per run (the instance passed in is never run itself).

    Args:
        policies: Names (registered or artifact folders), or a mapping of report name to instance, factory or
            name. The baseline is added by name when missing.
        population: The world.
        n_arrangements: Arrangements per run.
        seeds: Run seeds (distinct, non-negative); each gives an independent population.
        months: A fixed horizon in months of 30 days (arrangements open then are censored there). ``None`` (the
            default): a run-off, each arrangement followed to its end or its cap.
        runoff: The run-off cap (default: ``population.simulation.runoff_cap()``, plan length + 12 months);
            only without ``months``.
        baseline: Report name of the policy the differences are taken to.
        oracle: ``"hindsight-oracle"`` (:data:`agents.hindsight.HINDSIGHT_ORACLE`): the hindsight oracle is
            computed per seed from the evaluated policies' outcomes and rollouts, reported as a policy of that
            name, and every policy's ``gap_closed`` is its difference divided by the oracle's. None: no oracle,
            no gap.
        hindsight: The hindsight oracle's search settings (default :class:`agents.hindsight.HindsightSettings`).
        segments: Segmentations, name to :data:`Segmenter`, applied to the baseline's run of each seed
            (default :data:`DEFAULT_SEGMENTS`: hidden ``debtor_type`` and observable ``debt_eur`` bands; ``{}``
            for the whole population only).
        level: Confidence level of the intervals.
        progress: Show a progress bar over the policy x seed runs (on stderr).
        on_result: Called as ``on_result(report_name, seed, result)`` after each run, before the result is
            dropped: the hook for keeping more of a run than its outcomes (event-log summaries, queue samples).

    Returns:
        The :class:`Evaluation`.

    Raises:
        UnknownPolicyError: A policy name is neither registered nor a loadable artifact folder (the message
            lists the registered names or says why the folder does not load), before anything is simulated.
        ValueError: Invalid sizes, seeds or level.
    """
    if oracle is not None and oracle != HINDSIGHT_ORACLE:
        raise UnknownPolicyError(
            f"oracle: {oracle!r} is not an upper reference; allowed: [{HINDSIGHT_ORACLE!r}] or None (a policy such "
            "as 'one-step-oracle' is compared among the policies; gap closed is measured only against the "
            "hindsight oracle, which no policy can beat)"
        )
    if n_arrangements < 1:
        raise ValueError(f"n_arrangements must be >= 1, got {n_arrangements}")
    if months is not None and months < 1:
        raise ValueError(f"months must be >= 1, got {months}")
    if months is not None and runoff is not None:
        raise ValueError("give either months (a fixed horizon) or runoff (a run-off cap), not both")
    cap = (runoff or population.simulation.runoff_cap()) if months is None else None
    seed_list = [int(s) for s in seeds]
    if not seed_list or any(s < 0 for s in seed_list) or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds must be a non-empty list of distinct integers >= 0, got {list(seeds)}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    missing = sorted(set(KPI_NAMES) - set(KPI_KINDS))
    if missing:  # a KPI added to regsim.metrics needs its kind here
        raise RuntimeError(f"agents.evaluate does not know how to compare KPI(s) {missing}; add them to KPI_KINDS")
    factories = _factories(policies, baseline, population.rules.version)
    segmenters = dict(DEFAULT_SEGMENTS if segments is None else segments)

    # -- run: one simulation per (seed, policy), kept as per-arrangement outcomes ------------------------------
    reported = [*factories, *([oracle] if oracle is not None else [])]
    outcomes: dict[str, list[pd.DataFrame]] = {name: [] for name in reported}
    oracle_runs: list[dict[str, Any]] = []
    labels: dict[str, list[NDArray[np.object_]]] = {name: [] for name in segmenters}
    order = [baseline, *(n for n in factories if n != baseline)]  # the baseline first: it labels the segments
    with tqdm(total=len(order) * len(seed_list), unit="run", disable=not progress, file=sys.stderr) as bar:
        for seed in seed_list:
            index: pd.Index | None = None
            for name in order:
                bar.set_description(f"seed {seed} {name}")
                result = simulate(
                    population, factories[name](), arrangements=n_arrangements, months=months, runoff=cap, seed=seed
                )
                o = result.outcomes()
                if on_result is not None:
                    on_result(name, seed, result)
                if index is None:
                    index = o.index
                    for seg, segmenter in segmenters.items():
                        labels[seg].append(pd.Series(segmenter(result)).reindex(index).fillna("other").to_numpy())
                elif not o.index.equals(index):
                    raise RuntimeError(
                        f"seed {seed}: policy {name!r} created other arrangements than {baseline!r}; "
                        "common random numbers are broken"
                    )
                outcomes[name].append(o)
                bar.update(1)
            if oracle is not None:
                bar.set_description(f"seed {seed} {oracle}")
                # (A run-off plays the oracle's lives long enough for every cap; what lies past a cap is dropped.)
                oracle_months = months if months is not None else covering_months(population, cap)
                found = hindsight_oracle(
                    population, seed, oracle_months, {name: outcomes[name][-1] for name in order}, hindsight, runoff=cap
                )
                outcomes[oracle].append(found.outcomes)
                oracle_runs.append(
                    {
                        "seed": seed,
                        "cost": found.cost,
                        "lifted": float((found.source == "lookahead").mean()),
                        "capacity_gap_eur": found.capacity_gap_eur,
                    }
                )

    # -- compare ---------------------------------------------------------------------------------------------
    pooled = {name: pd.concat(frames, ignore_index=True) for name, frames in outcomes.items()}
    n_total = len(pooled[baseline])
    masks: dict[str, NDArray[np.bool_]] = {"all": np.ones(n_total, dtype=bool)}
    for seg in segmenters:
        seg_labels = np.concatenate(labels[seg])
        for label in sorted(set(seg_labels.tolist()), key=_label_order(segmenters[seg])):
            masks[f"{seg}={label}"] = seg_labels == label
    terms = {name: _terms(o) for name, o in pooled.items()}
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in reported}  # policy-major, as in the JSON
    for segment, mask in masks.items():
        n = int(mask.sum())
        per_seed = n / len(seed_list)
        base = {k: (num[mask], None if den is None else den[mask]) for k, (num, den) in terms[baseline].items()}
        results: dict[str, dict[str, tuple[float, PairedDifference]]] = {}
        for name in reported:
            results[name] = {}
            for kpi in KPI_NAMES:
                kind = KPI_KINDS[kpi]
                num, den = terms[name][kpi]
                mine = (num[mask], None if den is None else den[mask])
                value = _value(kind, mine[0], mine[1], len(seed_list))
                if name == baseline:  # exactly zero, whatever the arithmetic would round to
                    diff = PairedDifference(0.0, 0.0, 0.0, 0.0) if n else _NAN_DIFFERENCE
                else:
                    diff = _difference(kind, mine, base[kpi], per_seed, level)
                results[name][kpi] = (value, diff)
        for name in reported:
            for kpi in KPI_NAMES:
                value, d = results[name][kpi]
                gap = math.nan
                if oracle is not None:
                    d_oracle = results[oracle][kpi][1].diff
                    if math.isfinite(d_oracle) and d_oracle != 0:
                        gap = d.diff / d_oracle + 0.0  # + 0.0: the baseline's 0 / negative is 0, not -0
                rows[name].append(
                    {
                        "policy": name,
                        "segment": segment,
                        "kpi": kpi,
                        "value": value,
                        "diff": d.diff,
                        "ci_low": d.ci_low,
                        "ci_high": d.ci_high,
                        "gap_closed": gap,
                        "n_arrangements": n,
                    }
                )
    meta = {
        "population": population.name,
        "seeds": seed_list,
        "months": months,
        "runoff": None
        if cap is None
        else {"months_after_plan": cap.months_after_plan, "cap_factor": cap.cap_factor, "unit": "months of 30 days"},
        "arrangements_per_seed": n_arrangements,
        "level": level,
        "segmentations": list(segmenters),
        "methods": {
            "mean": "paired t interval over arrangements pooled across seeds",
            "ratio": "delta method over arrangements pooled across seeds (normal quantile)",
            "total": "per-seed total averaged over seeds; paired t interval of the per-arrangement mean "
            "scaled by arrangements per seed",
        },
        "kpi_kinds": dict(KPI_KINDS),
    }
    if oracle is not None:
        meta["hindsight_oracle"] = _oracle_meta(hindsight or HindsightSettings(), oracle_runs)
    frame = pd.DataFrame([r for name in reported for r in rows[name]], columns=list(COLUMNS))
    return Evaluation(_typed_frame(frame), baseline, oracle, meta)


def _oracle_meta(settings: HindsightSettings, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What the hindsight oracle was and what it cost, for the Evaluation's meta (JSON-ready)."""
    cost = sum((r["cost"] for r in runs), HindsightCost(0.0, 0, 0))
    bases = {b for r in runs for b in r["capacity_gap_eur"]}
    return {
        "name": HINDSIGHT_ORACLE,
        "objective": f"regsim.metrics.runoff_value (completion bonus {settings.completion_bonus_eur:g} EUR)",
        "bases": list(settings.bases),
        "max_decisions": settings.max_decisions,
        "wall_s": round(cost.wall_s, 3),
        "lives_simulated": cost.lives,
        "passes": cost.passes,
        "share_lifted_by_search": float(np.mean([r["lifted"] for r in runs])),
        "capacity_gap_eur": {b: float(np.mean([r["capacity_gap_eur"][b] for r in runs])) for b in sorted(bases)},
    }
