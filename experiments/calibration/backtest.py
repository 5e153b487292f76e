"""The back-test: the log's last months held out, predictive intervals for their moments, and their coverage.

The fit sees only the events before the cut (``cutoff_days``, the start of the first held-out month). The
held-out moments are the month-indexed moments of the full log (``pay_timing``, ``deferral``, ``reduction``,
``reminder_response`` by month) whose month is at or after the cut and whose log denominator reaches the
design's ``min_count``. Their predictive distribution under the calibrated world: ``D`` simulations of the full
horizon under the log's decisions, each at a parameter vector drawn from the fit's bootstrap draws
(:class:`experiments.calibration.inference.Inference`; a parameter flagged as not identified drawn uniformly in
its bounds instead) and each with its own seed, plus, where the simulations are larger than the log, normal
noise of variance :math:`s_k^2 (1 - A_{log}/A_{sim})` so that the spread is that of a log of the log's size.
The predictive interval is the draws' central ``level`` range; coverage is the share of held-out log moments
inside their interval (nominal: ``level``; with ``D`` draws the interval's ends are themselves uncertain).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from experiments.calibration.inference import Inference
from experiments.calibration.moments import LogMoments, MomentDesign, MomentKey
from experiments.calibration.simulation import Executor, SimulationJob, run_points

__all__ = ["Backtest", "backtest", "heldout_design"]

#: Level of the predictive intervals.
PREDICTIVE_LEVEL = 0.9


@dataclass(frozen=True)
class Backtest:
    """The back-test's result.

    Attributes:
        cutoff_days: Start of the held-out period (unit: days since the start).
        keys: The held-out moments.
        log_values: Their log values, shape ``(H,)``.
        low: Lower predictive bound, shape ``(H,)``.
        high: Upper predictive bound, shape ``(H,)``.
        median: Predictive median, shape ``(H,)``.
        covered: Whether each log value is inside, shape ``(H,)``.
        level: The intervals' level.
        draws: Simulations behind the predictive distribution.
    """

    cutoff_days: float
    keys: tuple[MomentKey, ...]
    log_values: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    median: NDArray[np.float64]
    covered: NDArray[np.bool_]
    level: float
    draws: int

    @property
    def coverage(self) -> float:
        """Share of held-out moments inside their predictive interval (NaN if none)."""
        return float(self.covered.mean()) if len(self.covered) else float("nan")

    def by_family(self) -> dict[str, tuple[int, float]]:
        """Per moment family: held-out moments and their coverage."""
        out: dict[str, tuple[int, float]] = {}
        for family in sorted({k.family for k in self.keys}):
            sel = np.array([k.family == family for k in self.keys])
            out[family] = (int(sel.sum()), float(self.covered[sel].mean()))
        return out


def heldout_design(full: LogMoments, cutoff_days: float) -> tuple[MomentDesign, NDArray[np.int64]]:
    """The full log's month-indexed moments at or after the cut, and their positions in ``full``.

    Raises:
        ValueError: No moment of the held-out months reaches the design's ``min_count``.
    """
    first = int(cutoff_days // 30)
    idx = np.array([i for i, k in enumerate(full.design.keys) if k.month >= first], dtype=np.int64)
    if len(idx) == 0:
        raise ValueError(
            f"no moment of the held-out months (from month {first}) has a log denominator of at least "
            f"{full.design.min_count}; hold out fewer months or use a larger log"
        )
    keys = tuple(full.design.keys[i] for i in idx)
    return replace(full.design, keys=keys), idx


def backtest(
    job: SimulationJob,
    full: LogMoments,
    inference: Inference,
    estimate: NDArray[np.float64],
    cutoff_days: float,
    *,
    draws: int,
    seed: int,
    executor: Executor = "local",
    workers: int = 1,
    ray_address: str | None = None,
    quiet: bool = False,
) -> Backtest:
    """Predictive intervals of the held-out moments and their coverage (module docstring).

    Args:
        job: A job of the full horizon (its design is replaced by the held-out one).
        full: The full log's moments.
        inference: The fit's inference (its bootstrap draws of the parameters).
        estimate: The fitted parameters.
        cutoff_days: Start of the held-out months.
        draws: Simulations of the predictive distribution.
        seed: Seed of the draws' choice and of the simulations (draw ``d`` runs with ``seed + 1 + d``).
        executor: ``local`` or ``ray``.
        workers: Parallel simulations.
        ray_address: A Ray cluster.
        quiet: No progress bar.

    Raises:
        ValueError: ``draws`` < 2, or no held-out moment (:func:`heldout_design`).
    """
    if draws < 2:
        raise ValueError(f"draws: expected an integer >= 2, got {draws}")
    design, idx = heldout_design(full, cutoff_days)
    held = replace(job, design=design, horizon_days=None)
    rng = np.random.default_rng([seed, 0x4241434B])  # "BACK": the back-test's own stream
    spec = job.spec
    rows = rng.integers(0, len(inference.draws), size=draws)
    thetas = inference.draws[rows].copy()
    for j, ident in enumerate(inference.identification):
        if not ident.identified:
            thetas[:, j] = rng.uniform(spec.params[j].low, spec.params[j].high, size=draws)
    results = run_points(
        held,
        [(thetas[d], seed + 1 + d) for d in range(draws)],
        executor=executor,
        workers=workers,
        ray_address=ray_address,
        desc="back-test",
        quiet=quiet,
    )
    sims = np.array([r.values for r in results])
    se = full.se[idx]
    extra = np.sqrt(np.maximum(0.0, 1.0 - full.arrangements / job.arrangements)) * se
    sims = sims + rng.standard_normal(sims.shape) * extra[None, :]
    alpha = (1.0 - PREDICTIVE_LEVEL) / 2.0
    low, median, high = np.nanquantile(sims, [alpha, 0.5, 1.0 - alpha], axis=0)
    values = full.values[idx]
    covered = (values >= low) & (values <= high)
    return Backtest(
        cutoff_days=float(cutoff_days),
        keys=design.keys,
        log_values=values,
        low=low,
        high=high,
        median=median,
        covered=covered,
        level=PREDICTIVE_LEVEL,
        draws=draws,
    )
