"""Segmentations of an evaluation: from the baseline's run of a seed, a label per arrangement.

A :data:`Segmenter` maps a :class:`regsim.simulate.SimulationResult` to a Series of labels indexed by
arrangement id. :func:`by_debtor_type` labels the hidden debtor type (ground truth, simulation only),
:class:`DebtBands` observable debt-size bands; :data:`DEFAULT_SEGMENTS` is what :func:`agents.evaluate.evaluate`
reports by default.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from regsim.eventlog import EventType, event_codes
from regsim.simulate import SimulationResult

__all__ = ["DEFAULT_SEGMENTS", "DebtBands", "Segmenter", "by_debtor_type"]

#: A segmentation: from the baseline's run of one seed, a label per arrangement id (index) as a Series.
Segmenter = Callable[[SimulationResult], pd.Series]


def by_debtor_type(result: SimulationResult) -> pd.Series:
    """Hidden debtor type per arrangement, from ground truth (simulation only)."""
    truth = result.ground_truth
    return pd.Series(truth["debtor_type"].astype(str).to_numpy(), index=truth["arrangement_id"].to_numpy())


@dataclass(frozen=True)
class DebtBands:
    """Observable debt-size bands from the ``amount_eur`` of each ``arrangement_created`` event.

    Args:
        edges: Increasing band edges in euros; with the default, the bands are ``<500``, ``500-1500`` and
            ``>1500`` (a debt equal to an edge falls in the band above it).
    """

    edges: tuple[float, ...] = (500.0, 1500.0)

    def __post_init__(self) -> None:
        if not self.edges or any(b <= a for a, b in itertools.pairwise(self.edges)):
            raise ValueError(f"edges must be a non-empty increasing sequence, got {self.edges}")

    @property
    def labels(self) -> tuple[str, ...]:
        """Band labels, lowest first."""
        e = [f"{v:g}" for v in self.edges]
        return (f"<{e[0]}", *(f"{a}-{b}" for a, b in itertools.pairwise(e)), f">{e[-1]}")

    def __call__(self, result: SimulationResult) -> pd.Series:
        codes = event_codes(result.events)
        created = codes == EventType.ARRANGEMENT_CREATED
        ids = result.events.column("arrangement_id").to_numpy()[created]
        debt = result.events.column("amount_eur").to_numpy(zero_copy_only=False)[created]
        band = np.searchsorted(np.asarray(self.edges), debt, side="right")
        return pd.Series(np.asarray(self.labels, dtype=object)[band], index=ids)


#: The segmentations reported by default: hidden type (ground truth) and an observable debt band.
DEFAULT_SEGMENTS: dict[str, Segmenter] = {"debtor_type": by_debtor_type, "debt_eur": DebtBands()}


def _label_order(segmenter: Segmenter) -> Callable[[str], tuple[int, str]]:
    """Sort key of a segmentation's labels: a segmenter's declared ``labels`` order first, then by name."""
    declared = list(getattr(segmenter, "labels", ()))
    return lambda label: (declared.index(label) if label in declared else len(declared), label)
