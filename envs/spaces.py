"""A ``MultiDiscrete`` action space that knows the current decision point's mask."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

__all__ = ["MaskedMultiDiscrete"]


class MaskedMultiDiscrete(spaces.MultiDiscrete):
    """``MultiDiscrete`` whose :meth:`sample` draws among the currently allowed options.

    The env sets :attr:`current_mask` (the flat mask of ``action_masks()``) at every decision point, so a plain
    ``env.action_space.sample()`` (as random agents and ``check_env`` call it) yields an action the rules
    accept. An explicit ``mask=`` argument takes precedence, as in Gymnasium.
    """

    current_mask: NDArray[np.bool_] | None = None

    def sample(self, mask: Any = None, probability: Any = None) -> NDArray[np.int64]:
        if mask is None and probability is None and self.current_mask is not None:
            bounds = np.cumsum(self.nvec)[:-1]
            parts = np.split(self.current_mask, bounds)
            mask = tuple(p.astype(np.int8) for p in parts)
        if probability is not None:
            return super().sample(probability=probability)
        return super().sample(mask=mask)
