"""Flattened actions: a ``Discrete`` action over some parts of the five-part action, for learners such as DQN.

:class:`FlatActions` maps a flat index to five-part actions under each row's mask and back;
:class:`FlatActionVecEnv` gives an SB3 ``VecEnv`` of ``regsim/ArrangementVec-v0`` slots that ``Discrete`` action
(what DQN trains on), and :class:`FlatActionWrapper` does the same for one ``regsim/Arrangement-v0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvStepReturn, VecEnvWrapper

from regsim.decision import PART_NAMES, ActionSpace

__all__ = ["DEFAULT_DQN_PARTS", "FlatActionVecEnv", "FlatActionWrapper", "FlatActions"]

#: Parts that DQN's flattened action chooses by default: the contact (channel x send slot, 6 x 9 = 54 actions
#: in the default world). The re-planning parts keep their lowest allowed option (no change); pass all of
#: :data:`regsim.decision.PART_NAMES` for the full product (6,480 actions in the default world).
DEFAULT_DQN_PARTS: tuple[str, ...] = ("channel", "send_slot")


@dataclass(frozen=True)
class FlatActions:
    """A ``Discrete`` action over the product of some parts of the five-part action, and back.

    Flat index ``i`` is ``numpy.ravel_multi_index`` (C order) of the chosen parts' options, in
    :data:`~regsim.decision.PART_NAMES` order. The parts not chosen take, in every row, their lowest allowed
    option (option 0, "no change", wherever the rules allow it). Masks are product-form, so a flat action is
    allowed iff each of its parts' options is: the flat mask is the outer product of the parts' masks.

    Attributes:
        nvec: Options per part, all five parts (:attr:`regsim.decision.ActionSpace.nvec`).
        parts: Indices of the chosen parts, increasing.
    """

    nvec: tuple[int, ...]
    parts: tuple[int, ...]

    @classmethod
    def from_names(cls, nvec: Sequence[int], names: Sequence[str]) -> FlatActions:
        """The flattening of the parts named ``names`` (a subset of :data:`PART_NAMES`)."""
        unknown = sorted(set(names) - set(PART_NAMES))
        if unknown or not names:
            raise ValueError(f"action_parts: unknown or no parts {unknown or list(names)}; allowed: {list(PART_NAMES)}")
        if len(set(names)) != len(names):
            raise ValueError(f"action_parts: a part is named twice in {list(names)}")
        return cls(tuple(int(n) for n in nvec), tuple(sorted(PART_NAMES.index(n) for n in names)))

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the chosen parts."""
        return tuple(PART_NAMES[p] for p in self.parts)

    @property
    def size(self) -> int:
        """Number of flat actions."""
        return int(np.prod([self.nvec[p] for p in self.parts]))

    def _part_mask(self, mask: NDArray[np.bool_], part: int) -> NDArray[np.bool_]:
        off = int(sum(self.nvec[:part]))
        return mask[:, off : off + self.nvec[part]]

    def flat_mask(self, mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Allowed flat actions, shape ``(B, size)``, from the flat per-option mask ``(B, sum(nvec))``."""
        out = self._part_mask(mask, self.parts[0])
        for p in self.parts[1:]:
            pm = self._part_mask(mask, p)
            out = (out[:, :, None] & pm[:, None, :]).reshape(len(mask), -1)
        return out

    def to_multi(self, index: NDArray[np.int64], mask: NDArray[np.bool_]) -> NDArray[np.int64]:
        """Five-part actions, shape ``(B, 5)``, of flat indices ``(B,)`` under the rows' masks."""
        b = len(index)
        out = np.empty((b, len(self.nvec)), dtype=np.int64)
        for p in range(len(self.nvec)):
            if p not in self.parts:
                out[:, p] = np.argmax(self._part_mask(mask, p), axis=1)
        chosen = np.unravel_index(np.asarray(index, dtype=np.int64), tuple(self.nvec[p] for p in self.parts))
        for p, options in zip(self.parts, chosen, strict=True):
            out[:, p] = options
        return out


class FlatActionWrapper(gym.ActionWrapper[Any, np.int64, NDArray[np.int64]]):
    """``regsim/Arrangement-v0`` with a ``Discrete`` action (for DQN), mapped back by :class:`FlatActions`.

    ## Action

    ``Discrete(prod(nvec[p] for p in parts))``: flat index of the chosen parts' options (C order); the other
    parts take their lowest allowed option. Masked choices are handled by the wrapped env
    (``invalid_action="fallback"`` replaces them by the lowest allowed option; ``"raise"`` refuses them).
    :meth:`action_masks` gives the flat mask, for mask-aware learners and tests.

    Args:
        env: An :class:`envs.arrangement.ArrangementEnv`, possibly wrapped.
        parts: Names of the parts to flatten (default :data:`DEFAULT_DQN_PARTS`).
    """

    def __init__(self, env: gym.Env[Any, Any], parts: Sequence[str] = DEFAULT_DQN_PARTS) -> None:
        super().__init__(env)
        space: ActionSpace = env.unwrapped.space  # type: ignore[attr-defined]
        self.flat = FlatActions.from_names(space.nvec, parts)
        self.action_parts = self.flat.names
        self.action_space = spaces.Discrete(self.flat.size)

    def _mask(self) -> NDArray[np.bool_]:
        mask: NDArray[np.bool_] = self.env.get_wrapper_attr("action_masks")()
        return mask[None, :]

    def action(self, action: np.int64) -> NDArray[np.int64]:
        return self.flat.to_multi(np.array([int(action)], dtype=np.int64), self._mask())[0]

    def action_masks(self) -> NDArray[np.bool_]:
        """Allowed flat actions at the current decision point."""
        return self.flat.flat_mask(self._mask())[0]


class FlatActionVecEnv(VecEnvWrapper):
    """An SB3 ``VecEnv`` of arrangement slots with a ``Discrete`` action (for DQN), mapped back by :class:`FlatActions`.

    Each slot's flat action is turned into a five-part action under that slot's current mask (the parts not
    flattened take their lowest allowed option); masked choices are handled by the wrapped env
    (``invalid_action="fallback"`` replaces them by the lowest allowed option). :meth:`action_masks` gives the
    flat masks.

    Args:
        venv: An :class:`envs.sb3_vec.ArrangementSB3VecEnv`.
        parts: Names of the parts to flatten (default :data:`DEFAULT_DQN_PARTS`).
    """

    def __init__(self, venv: VecEnv, parts: Sequence[str] = DEFAULT_DQN_PARTS) -> None:
        space: ActionSpace = venv.space  # type: ignore[attr-defined]
        self.flat = FlatActions.from_names(space.nvec, parts)
        self.action_parts = self.flat.names
        self.space = space
        super().__init__(venv, action_space=spaces.Discrete(self.flat.size))

    def reset(self) -> Any:
        return self.venv.reset()

    def step_async(self, actions: np.ndarray) -> None:
        index = np.asarray(actions, dtype=np.int64).reshape(-1)
        self.venv.step_async(self.flat.to_multi(index, self.venv.action_masks()))  # type: ignore[attr-defined]

    def step_wait(self) -> VecEnvStepReturn:
        return self.venv.step_wait()

    def action_masks(self) -> NDArray[np.bool_]:
        """Allowed flat actions of every slot, ``(num_envs, size)``."""
        return self.flat.flat_mask(self.venv.action_masks())  # type: ignore[attr-defined]
