"""Heads: the separate choices a bandit makes at a decision point, each a bandit over its own small set of arms.

An action has five parts (channel, send slot, due day, deferral, reduction). One bandit over their full
product would have 6 x 9 x 8 x 5 x 3 = 6,480 arms in the default action space, most of them meaningless at a
given decision point. The bandits of this package split the choice into three *heads* that look at the same
features and choose independently of each other given them:

============  ==========================================================  ===================================
head          arm                                                         active at
============  ==========================================================  ===================================
``contact``   a (channel, send slot) pair; the pairs with channel "none"  every decision point
              are *one* arm, since a message that is not sent has no
              send time (:meth:`~regsim.decision.ActionSpace.normalise`
              sets its slot to the first allowed one)
``due_day``   a due-day option (0 = keep)                                 ``PLAN_CREATED``
``relief``    a (deferral, reduction) pair                                ``PRE_DUE``, ``MISSED``,
                                                                          ``FOLLOW_UP``
============  ==========================================================  ===================================

Availability. Masks are product-form (:mod:`regsim.decision`), so an arm is available in a row iff every one
of its component options is allowed by the row's mask. A component part that does not apply at the row's
decision kind (:meth:`~regsim.decision.ActionSpace.applicable`: only option 0 applies, e.g. the reduction at
``PRE_DUE``) is pinned to its first allowed option, so at ``PRE_DUE`` the relief head chooses a deferral only.
Every row has at least one available arm in every active head, because every part allows at least one
option. Parts that no active head sets take their first allowed option.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from regsim.decision import (
    CHANNEL,
    DEFERRAL,
    DUE_DAY,
    PART_NAMES,
    REDUCTION,
    SEND_SLOT,
    ActionSpace,
    DecisionKind,
)

__all__ = ["ANY", "Head", "build_heads", "first_allowed_options"]

#: Option value of an arm's component meaning "the part's first allowed option" (the slot of "no contact").
ANY = -1


@dataclass(frozen=True, eq=False)
class Head:
    """One head: which parts it sets, its arms, and at which decision kinds it is active.

    Attributes:
        name: Name of the head (``contact``, ``due_day``, ``relief``); prefixes its saved statistics.
        parts: The action parts the head sets (indices into :data:`~regsim.decision.PART_NAMES`).
        options: Option of each part for each arm, shape ``(n_arms, len(parts))``; :data:`ANY` means the
            part's first allowed option.
        kinds: The decision kinds at which the head chooses.
        space: The action space the arms refer to.
    """

    name: str
    parts: tuple[int, ...]
    options: NDArray[np.int64]
    kinds: tuple[DecisionKind, ...]
    space: ActionSpace
    active_at: NDArray[np.bool_] = field(init=False, repr=False)
    """Per decision kind, whether the head is active (a lookup table)."""
    lookup: NDArray[np.int64] = field(init=False, repr=False)
    """Arm of each combination of the parts' options, shape ``tuple(nvec[p] for p in parts)``."""
    pinned_at: NDArray[np.bool_] = field(init=False, repr=False)
    """Per decision kind and part of the head, whether the part does not apply there (pinned)."""
    part_columns: tuple[tuple[int, int, int, NDArray[np.intp], NDArray[np.bool_] | None, NDArray[np.intp]], ...] = (
        field(init=False, repr=False)
    )
    """Per part, what :meth:`available` reads of it, worked out once (a decision costs a few numpy calls per part
    less): the part, its offset and size in the flat mask, each arm's column among the part's options (the first
    for :data:`ANY`), the arms of :data:`ANY` as a row (None without), the part's option indices as a row."""

    def __post_init__(self) -> None:
        active = np.zeros(len(DecisionKind), dtype=bool)
        active[list(self.kinds)] = True
        nvec, off = self.space.nvec, self.space.offsets
        lookup = np.full(tuple(nvec[p] for p in self.parts), -1, dtype=np.int64)
        for arm, opts in enumerate(self.options.tolist()):
            index = tuple(slice(None) if o == ANY else o for o in opts)
            lookup[index] = np.where(lookup[index] < 0, arm, lookup[index])
        table = self.space.applicable_table
        pinned = np.array(
            [[not table[k, off[p] + 1 : off[p] + nvec[p]].any() for p in self.parts] for k in range(len(DecisionKind))]
        )
        for name, value in (("active_at", active), ("lookup", lookup), ("pinned_at", pinned)):
            value.flags.writeable = False
            object.__setattr__(self, name, value)
        self.options.flags.writeable = False
        columns = []
        for j, part in enumerate(self.parts):
            opts = self.options[:, j]
            any_arms = (opts == ANY)[None, :] if (opts == ANY).any() else None
            arrays = (np.maximum(opts, 0), any_arms, np.arange(nvec[part])[None, :])
            for a in arrays:
                if a is not None:
                    a.flags.writeable = False
            columns.append((part, off[part], nvec[part], *arrays))
        object.__setattr__(self, "part_columns", tuple(columns))

    @property
    def n_arms(self) -> int:
        """Number of arms."""
        return int(self.options.shape[0])

    def arm_labels(self) -> tuple[str, ...]:
        """Human-readable label of each arm, e.g. ``"sms day+0 19:00"``."""
        labels = [self.space.option_labels(p) for p in self.parts]
        return tuple(
            " ".join("*" if o == ANY else labels[j][o] for j, o in enumerate(opts)) for opts in self.options.tolist()
        )

    def available(
        self, mask: NDArray[np.bool_], kinds: NDArray[np.intp], first: NDArray[np.int64]
    ) -> NDArray[np.bool_]:
        """Which arms each row may choose, shape ``(n, n_arms)``.

        Args:
            mask: The rows' flat allowed-options masks, shape ``(n, mask_size)``.
            kinds: The rows' decision kinds, shape ``(n,)``.
            first: The rows' first allowed option of every part, shape ``(n, 5)``.
        """
        out: NDArray[np.bool_] | None = None
        pinned = self.pinned_at[kinds]
        for j, (part, off, size, columns, any_arms, option_index) in enumerate(self.part_columns):
            allowed = mask[:, off : off + size]
            if pinned[:, j].any():
                only_first = option_index == first[:, part : part + 1]
                allowed = np.where(pinned[:, j : j + 1], only_first & allowed, allowed)
            component = allowed[:, columns]  # (a new array: fancy indexing copies)
            if any_arms is not None:
                component = np.where(any_arms, allowed.any(axis=1, keepdims=True), component)
            out = component if out is None else out & component
        return np.ones((mask.shape[0], self.n_arms), dtype=bool) if out is None else out

    def arms_of(self, actions: NDArray[np.int64]) -> NDArray[np.int64]:
        """The arm each action (shape ``(n, 5)``) chose in this head (-1 for an option out of range)."""
        cols = actions[:, list(self.parts)]
        nvec = np.array([self.space.nvec[p] for p in self.parts])
        ok: NDArray[np.bool_] = np.all((cols >= 0) & (cols < nvec[None, :]), axis=1)
        arms = self.lookup[tuple(np.where(ok[:, None], cols, 0).T)]
        return np.where(ok, arms, -1)

    def write(
        self, actions: NDArray[np.int64], rows: NDArray[np.intp], arms: NDArray[np.int64], first: NDArray[np.int64]
    ) -> None:
        """Set the head's parts of ``actions[rows]`` to the chosen arms (in place).

        Args:
            actions: All actions of the batch, shape ``(B, 5)``.
            rows: The rows the head chose for.
            arms: The chosen arm of each of those rows.
            first: The first allowed option of every part of those rows, shape ``(len(rows), 5)``.
        """
        chosen = self.options[arms]
        for j, part in enumerate(self.parts):
            actions[rows, part] = np.where(chosen[:, j] == ANY, first[:, part], chosen[:, j])


def build_heads(space: ActionSpace) -> tuple[Head, ...]:
    """The contact, due-day and relief heads of an action space (see the module docstring)."""
    nvec = space.nvec
    contact = [(0, ANY)] + [(c, s) for c in range(1, nvec[CHANNEL]) for s in range(nvec[SEND_SLOT])]
    due = [(o,) for o in range(nvec[DUE_DAY])]
    relief = list(itertools.product(range(nvec[DEFERRAL]), range(nvec[REDUCTION])))
    k = DecisionKind
    return (
        Head("contact", (CHANNEL, SEND_SLOT), np.array(contact, dtype=np.int64), tuple(k), space),
        Head("due_day", (DUE_DAY,), np.array(due, dtype=np.int64), (k.PLAN_CREATED,), space),
        Head(
            "relief", (DEFERRAL, REDUCTION), np.array(relief, dtype=np.int64), (k.PRE_DUE, k.MISSED, k.FOLLOW_UP), space
        ),
    )


def first_allowed_options(mask: NDArray[np.bool_], space: ActionSpace) -> NDArray[np.int64]:
    """Per row, the first allowed option of every part, shape ``(n, len(PART_NAMES))``."""
    out = np.empty((mask.shape[0], len(PART_NAMES)), dtype=np.int64)
    for part, (off, size) in enumerate(zip(space.offsets, space.nvec, strict=True)):
        out[:, part] = np.argmax(mask[:, off : off + size], axis=1)
    return out
