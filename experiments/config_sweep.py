"""The sweep of an experiment config: trials over a grid and random draws (:class:`SweepConfig`, :class:`RandomRange`).

Their ``grid`` and ``random`` fields are keyed by dotted field paths (as ``--set``); every trial's config is built
with :func:`experiments.config.apply_override` and validated before anything runs.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, model_validator

from experiments.config_base import _Section

__all__ = ["RandomRange", "SweepConfig"]


class RandomRange(_Section):
    """A sweep dimension drawn at random: uniform on [low, high], or log-uniform, optionally rounded."""

    low: float
    high: float
    log: bool = Field(False, description="Draw uniformly in log space (low > 0).")
    integer: bool = Field(False, description="Round to the nearest integer.")

    @model_validator(mode="after")
    def _range(self) -> RandomRange:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.high < self.low:
            raise ValueError(f"needs finite low <= high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log: needs low > 0, got low={self.low}")
        return self


class SweepConfig(_Section):
    """Trials: the grid's product x ``samples`` random draws x ``seeds``; each trial is a full run."""

    grid: dict[str, list[Any]] = Field(default_factory=dict, description="Dotted field -> values to try.")
    random: dict[str, RandomRange] = Field(default_factory=dict, description="Dotted field -> range to draw from.")
    samples: int = Field(1, ge=1, description="Random draws (applies when random is not empty).")
    seeds: list[int] | None = Field(
        None, description="Top seeds of the trials (distinct, >= 0); default: one seed derived from the top seed."
    )

    @model_validator(mode="after")
    def _dims(self) -> SweepConfig:
        empty = sorted(k for k, v in self.grid.items() if not v)
        if empty:
            raise ValueError(f"grid: {empty} have no values")
        both = sorted(set(self.grid) & set(self.random))
        if both:
            raise ValueError(f"{both} are both in grid and random; pick one")
        bad = sorted(k for k in (*self.grid, *self.random) if k == "sweep" or k.startswith(("sweep.", "seed")))
        if bad:
            raise ValueError(f"{bad} cannot be swept (list top seeds in sweep.seeds)")
        if self.seeds is not None and (
            not self.seeds or min(self.seeds) < 0 or len(set(self.seeds)) != len(self.seeds)
        ):
            raise ValueError(f"seeds: must be distinct integers >= 0, got {self.seeds}")
        return self
