"""Which off-policy estimator to trust on a log: a recommendation from a validation on a world like it.

Issue 19, point 8. :func:`recommend_estimator` runs a small validation (:mod:`experiments.ope_validation`) on
the ``--population`` world with the log's size (capped at :data:`RECOMMEND_MAX_ARRANGEMENTS`) and its logging
policy when that is a registered one whose arguments the log records; :func:`recommend_from_validation` reads a
larger one saved by ``regsim ope-validate`` (``regsim ope --validation``). Both return a :class:`Recommendation`
naming the size, the seeds and the source it rests on; ``regsim ope`` reports it and its gate uses the estimator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agents.ope.behaviour import EpsilonMixture, logged_behaviour
from agents.ope.logged import DEFAULT_WINDOW_DAYS
from regsim.config import WorldConfig
from regsim.decision import Policy

__all__ = [
    "RECOMMEND_MAX_ARRANGEMENTS",
    "RECOMMEND_RUNOFF_MONTHS",
    "Recommendation",
    "recommend_estimator",
    "recommend_from_validation",
]

#: The most arrangements the recommendation's validation simulates per log (its cost grows with them).
RECOMMEND_MAX_ARRANGEMENTS = 400
#: The run-off cap of the recommendation's world (months after the plan), at most the population's own.
RECOMMEND_RUNOFF_MONTHS = 2.0

Say = Callable[[str], None]


@dataclass(frozen=True)
class Recommendation:
    """Which estimator to trust on this log, from a validation on a world like it.

    Attributes:
        estimator: The recommended estimator (``None`` if the validation gave no estimate).
        world: The validation's world and its run-off cap.
        behaviour: The logging policy the validation logged with, and whether it is the log's own.
        arrangements: Arrangements per validation log (the size the recommendation rests on).
        seeds: Seeds run.
        table: Per estimator: relative error, coverage and runs in the validation at that size.
        sentence: What was done and what it says.
        source: Where the validation comes from: ``run now`` (a small one on this log's world) or the
            ``ope_validation.json`` it was read from (``regsim ope --validation``).
        candidates: The validation's candidates the numbers are averaged over.
    """

    estimator: str | None
    world: str
    behaviour: str
    arrangements: int
    seeds: int
    table: tuple[tuple[str, float, float, int], ...]
    sentence: str
    source: str = "run now"
    candidates: tuple[str, ...] = ("candidate",)


def recommend_estimator(
    config: WorldConfig,
    *,
    logging_labels: tuple[str, ...],
    candidate: Callable[[int], Policy],
    arrangements: int,
    seeds: int = 3,
    n_bootstrap: int = 100,
    window_days: float = DEFAULT_WINDOW_DAYS,
    interactions: bool = True,
    say: Say | None = None,
) -> Recommendation:
    """Validate every estimator on a world like the log's and recommend the best (see the module docstring).

    The world is ``config`` run off with its cap shortened to :data:`RECOMMEND_RUNOFF_MONTHS`; the logging
    policy is the log's own when it is one policy that :func:`agents.ope.behaviour.logged_behaviour` rebuilds,
    else ``epsilon-mixture`` of ``static-dunning`` with epsilon 0.3 as a stand-in (said so); the log size is the
    log's, at most :data:`RECOMMEND_MAX_ARRANGEMENTS`.
    """
    from experiments.ope_validation import ValidationSpec, run_validation

    months = min(config.simulation.runoff_months_after_plan, RECOMMEND_RUNOFF_MONTHS)
    world = config.model_copy(
        update={"simulation": config.simulation.model_copy(update={"runoff_months_after_plan": months})}
    )
    own = logged_behaviour(*logging_labels[0].split(" ", 1)) if len(logging_labels) == 1 else None
    if own is not None:
        label = logging_labels[0]

        def behaviour(seed: int) -> Policy:
            made = logged_behaviour(*label.split(" ", 1))
            assert made is not None
            if isinstance(made, EpsilonMixture):
                return EpsilonMixture(base=made.base_name, epsilon=made.epsilon, seed=seed)
            return made

        beh_label, beh_note = label, "the log's own logging policy"
    else:
        beh_label = f"epsilon-mixture {EpsilonMixture(base='static-dunning', epsilon=0.3).version}"
        beh_note = "a stand-in (the log's logging policy is not a registered one whose arguments the log records)"

        def behaviour(seed: int) -> Policy:
            return EpsilonMixture(base="static-dunning", epsilon=0.3, seed=seed)

    size = max(2, min(arrangements, RECOMMEND_MAX_ARRANGEMENTS))
    spec = ValidationSpec(
        behaviours={beh_label: behaviour},
        candidates={"candidate": candidate},
        sizes=(size,),
        seeds=tuple(range(seeds)),
        n_bootstrap=n_bootstrap,
        window_days=window_days,
        interactions=interactions,
    )
    result = run_validation(world, spec, progress=say)
    frame = result.frame()
    frame = frame[frame["estimand"] == "per-decision"]
    table = tuple(
        (str(e), float(err), float(cov), int(n))
        for e, err, cov, n in zip(
            frame["estimator"], frame["relative_error"], frame["coverage"], frame["runs"], strict=True
        )
    )
    best = result.best("per-decision")
    world_label = f"{config.name} (run off, cap plan + {months:g} months)"
    if best is None:
        sentence = f"No recommendation: every estimator was refused in the validation on {world_label}."
    else:
        err = dict((t[0], t[1]) for t in table)[best]
        sentence = (
            f"Trust {best}: on {seeds} simulated logs of {size:,} arrangements in {world_label}, logged by "
            f"{beh_note}, it had the smallest relative error ({err:.1%}) among the estimators whose intervals "
            f"covered the truth as often as a {result.level:.0%} interval should (or among all, if none did). "
            f"A small validation run now; `regsim ope --validation` reads a larger one (regsim ope-validate)."
        )
    return Recommendation(best, world_label, f"{beh_label} ({beh_note})", size, seeds, table, sentence)


def recommend_from_validation(
    path: str | Path,
    *,
    logging_labels: tuple[str, ...],
    candidate: str,
    arrangements: int,
) -> Recommendation:
    """The estimator a saved validation (``ope_validation.json`` of ``regsim ope-validate``) recommends for a log.

    The cells used: the validation's logging policies whose logged label (``behaviour_labels``) is one of the
    log's (else all of them, said so); its candidate named ``candidate`` if it has one (else all, averaged, said
    so); and the largest validated log size at most the log's ``arrangements`` (the smallest if all are larger).
    The rule is :meth:`~experiments.ope_validation.ValidationResult.best`'s.

    Raises:
        FileNotFoundError: No such file (naming ``--validation``).
        ValueError: Not a validation's JSON, or no per-decision cell to recommend from.
    """
    import json

    from experiments.ope_validation import ValidationResult, coverage_band

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--validation: no file {file} (the ope_validation.json of regsim ope-validate)")
    payload = json.loads(file.read_text())
    if not isinstance(payload, dict):
        raise ValueError(f"--validation: {file} is not the ope_validation.json of regsim ope-validate")
    result = ValidationResult.from_json(payload)
    frame = result.frame()
    frame = frame[frame["estimand"] == "per-decision"]
    if frame.empty:
        raise ValueError(f"--validation: {file} holds no per-decision cell")
    labels = payload.get("behaviour_labels") or {}
    own = [b for b, lab in dict(labels).items() if lab in logging_labels and b in set(frame["behaviour"])]
    behaviours = own or sorted(set(frame["behaviour"]))
    beh_note = (
        "the log's own logging policy"
        if own
        else "the validation's logging policies (none is the log's own: a stand-in)"
    )
    have = set(frame["candidate"])
    candidates = [candidate] if candidate in have else sorted(have)
    cand_note = (
        f"candidate {candidate}"
        if candidate in have
        else f"the candidates {', '.join(candidates)} (averaged; {candidate} was not validated)"
    )
    cells = frame[frame["behaviour"].isin(behaviours) & frame["candidate"].isin(candidates)]
    size = result.size_for(arrangements, cells)
    at = cells[cells["arrangements"] == size]
    scores = at.groupby("estimator")[["relative_error", "coverage", "runs"]].mean()
    table = tuple((str(e), float(r.relative_error), float(r.coverage), int(r.runs)) for e, r in scores.iterrows())
    best = result.best("per-decision", behaviours=behaviours, candidates=candidates, arrangements=arrangements)
    world = str(payload.get("world", "the validation's world"))
    seeds = len(result.seeds)
    model = payload.get("reward_model", "unknown")
    if best is None:
        sentence = f"No recommendation: every estimator was refused in the validation {file}."
    else:
        err, cov, runs = next((t[1], t[2], t[3]) for t in table if t[0] == best)
        lo, hi = coverage_band(runs, result.level)
        sentence = (
            f"Trust {best}: in the validation {file} ({seeds} seeds, {world}, reward model {model}), on logs of "
            f"{size:,} arrangements (the validated size standing for this log's {arrangements:,}) logged by "
            f"{beh_note} ({', '.join(behaviours)}), for {cand_note}, it had the smallest relative error "
            f"({err:.1%}, coverage {cov:.0%}; band {lo:.0%}-{hi:.0%}) among the estimators whose intervals covered "
            f"the truth as often as a {result.level:.0%} interval should (or among all, if none did)."
        )
    return Recommendation(
        best,
        world,
        f"{', '.join(behaviours)} ({beh_note})",
        size,
        seeds,
        table,
        sentence,
        source=str(file),
        candidates=tuple(candidates),
    )
