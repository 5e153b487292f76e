"""Parts of decision responses (actions, masked options), built once per distinct value.

A batch of a thousand decisions repeats a handful of actions and masking patterns; building each pydantic
object once keeps the per-decision cost of a response to a dictionary look-up. The parts are only serialised,
never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from regsim.config import CHANNELS
from regsim.decision import PART_NAMES, ContextBatch
from serving import schemas

__all__ = ["ResponseParts"]

_CHANNEL_NAMES = ("none", *CHANNELS)


class ResponseParts:
    """Parts of decision responses, built once per distinct value (they are only serialised, never changed).

    A batch of a thousand decisions repeats a handful of actions and masking patterns; building each
    pydantic object once keeps the per-decision cost of a response to a dictionary look-up.
    """

    def __init__(self, space: Any) -> None:
        self.space = space
        labels = [space.option_labels(part) for part in range(len(PART_NAMES))]
        # flat mask index -> (part name, option label)
        self.options = [(PART_NAMES[part], label) for part in range(len(PART_NAMES)) for label in labels[part]]
        self.slots = labels[1]
        self.due_days = [int(d) for d in space.due_day_options]
        self.deferrals = [int(d) for d in space.deferral_days]
        self.reductions = [float(r) for r in space.reduction_fractions]
        self._actions: dict[tuple[int, ...], schemas.Action] = {}
        self._masked: dict[tuple[tuple[int, tuple[str, ...]], ...], tuple[list[schemas.MaskedOption], str]] = {}

    def action(self, a: Sequence[int]) -> schemas.Action:
        key = tuple(a)
        out = self._actions.get(key)
        if out is None:
            # model_construct skips validation: the names come from the same tuples the Literals list.
            out = schemas.Action.model_construct(
                channel=cast(Any, _CHANNEL_NAMES[a[0]]),
                send_slot=self.slots[a[1]],
                due_day=None if a[2] == 0 else self.due_days[a[2] - 1],
                deferral_days=self.deferrals[a[3]],
                reduction=self.reductions[a[4]],
                indices=list(key),
            )
            self._actions[key] = out
        return out

    def masked(self, batch: ContextBatch) -> tuple[list[list[schemas.MaskedOption]], list[str]]:
        """Per row, the options the rules masked and the rules that masked anything (applicability excluded).

        The options are those of ``sorted(batch[i].masked_by.items())``, with their rules in rule order; the rule
        names are comma-separated in rule order, as the world logs them. No :class:`Context` is built per row.
        """
        names = [n for n in batch.forbidden if n != "not_applicable"]
        if not names:
            return [[] for _ in range(len(batch))], [""] * len(batch)
        # Rows sharing a masking pattern (the options each rule forbids) share the answer, so Python only walks
        # the distinct patterns.
        bits = np.concatenate([np.asarray(batch.forbidden[n], dtype=bool) for n in names], axis=1)
        packed = np.packbits(bits, axis=1)
        first: dict[bytes, int] = {}
        which = [first.setdefault(packed[i].tobytes(), i) for i in range(len(batch))]
        width = bits.shape[1] // len(names)
        answers: dict[int, tuple[list[schemas.MaskedOption], str]] = {}
        for i in first.values():
            hit: dict[int, list[str]] = {}
            for k, name in enumerate(names):
                for j in np.flatnonzero(bits[i, k * width : (k + 1) * width]).tolist():
                    hit.setdefault(j, []).append(name)
            key = tuple((j, tuple(hit[j])) for j in sorted(hit))
            cached = self._masked.get(key)
            if cached is None:
                options = [
                    schemas.MaskedOption(part=cast(Any, self.options[j][0]), option=self.options[j][1], rules=list(r))
                    for j, r in key
                ]
                used = {r for _, rules in key for r in rules}
                cached = (options, ",".join(n for n in names if n in used))
                self._masked[key] = cached
            answers[i] = cached
        return [answers[i][0] for i in which], [answers[i][1] for i in which]
