"""The back-test: the log's last months held out, predictive intervals for their moments, and their coverage.

The fit sees only the events before the cut (``cutoff_days``, the start of the first held-out month). The
held-out moments are the month-indexed moments of the full log (``pay_timing``, ``deferral``, ``reduction``,
``reminder_response`` by month) whose month is at or after the cut and whose log denominator reaches the
design's ``min_count``. Their predictive distribution under the calibrated world: ``D`` simulations of the full
horizon under the log's decisions, each at a parameter vector drawn from the fit's bootstrap draws
(:class:`experiments.calibration.inference.Inference`; a parameter flagged as not identified drawn uniformly in
its bounds instead) and each with its own seed, plus, where the simulations are larger than the log, normal
noise of variance :math:`s_k^2 (1 - A_{log}/A_{sim})` so that the spread is that of a log of the log's size.
The predictive interval is the interval for one more draw from the same distribution, the held-out log moment
being, under a right model, such a draw: with the ``n`` draws' mean :math:`\\bar m` and standard deviation
:math:`s`,

.. math:: \\bar m \\pm t_{n-1, (1 + level)/2}\\; s \\sqrt{1 + 1/n}

(exact for normal draws; a moment is a mean over many arrangements). Coverage is the share of held-out log
moments inside their interval, nominal ``level``. The draws' own central ``level`` range would not do: with
``n`` exchangeable draws a new one falls between two order statistics ``i < j`` with probability
``(j - i) / (n + 1)``, so the 5% and 95% quantiles of 10 draws (interpolated between the 1st-2nd and the
9th-10th) cover a new draw 76% of the time, of 20 draws 81% (measured over 20,000 normal columns): the
back-test's nominal 90% was measured against intervals too narrow by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from experiments.calibration.inference import Inference
from experiments.calibration.moments import LogMoments, MomentDesign, MomentKey
from experiments.calibration.simulation import Executor, SimulationJob, run_points

__all__ = ["Backtest", "backtest", "heldout_design", "predictive_interval"]

#: Level of the predictive intervals.
PREDICTIVE_LEVEL = 0.9


def predictive_interval(
    sims: NDArray[np.float64], level: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per column of ``sims`` (draws x moments; NaN: a draw without the moment), the ``level`` interval for one
    more draw (module docstring) and the draws' median: ``(low, median, high)``, NaN where fewer than 2 draws."""
    n = np.sum(~np.isnan(sims), axis=0)
    enough = n >= 2
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(enough, np.nanmean(np.where(enough[None, :], sims, 0.0), axis=0), np.nan)
        sd = np.where(enough, np.nanstd(np.where(enough[None, :], sims, 0.0), axis=0, ddof=1), np.nan)
        half = stats.t.ppf(0.5 + level / 2.0, np.maximum(n - 1, 1)) * sd * np.sqrt(1.0 + 1.0 / np.maximum(n, 1))
        median = np.where(enough, np.nanmedian(np.where(enough[None, :], sims, 0.0), axis=0), np.nan)
    return mean - half, median, mean + half


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
    low, median, high = predictive_interval(sims, PREDICTIVE_LEVEL)
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
