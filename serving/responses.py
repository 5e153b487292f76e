"""Decision responses: their parts (actions, masked options), built once per distinct value, and their JSON.

A batch of a thousand decisions repeats a handful of actions and masking patterns; building each part once
keeps the per-decision cost of a response to a dictionary look-up. The parts are only serialised, never changed.

A decision's answer is a :class:`DecisionAnswer` (a typed dict), serialised by :func:`pydantic_core.to_json`: the
bytes :meth:`schemas.DecisionOut.model_dump_json` gives for the same decision (the same serialiser;
``tests/serving/test_responses.py`` checks it), at a third of the cost of building the model first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, TypedDict, cast

import numpy as np
import pydantic_core

from regsim.config import CHANNELS
from regsim.decision import PART_NAMES, ContextBatch
from serving import schemas

__all__ = ["DecisionAnswer", "ResponseParts", "answer_json", "answer_model", "batch_json"]

_CHANNEL_NAMES = ("none", *CHANNELS)


#: JSON-ready values (dicts, lists, str, numbers, None): what :func:`pydantic_core.to_json` serialises.
Plain = Any


class DecisionAnswer(TypedDict):
    """A committed decision, as ``POST /v1/decisions`` answers it: the fields of :class:`schemas.DecisionOut`, in
    their order, as JSON-ready values (a dict at run time: nothing is built per decision but the dict itself).

    ``action`` and ``masked`` are the plain forms of :class:`schemas.Action` and the :class:`schemas.MaskedOption`
    list (:class:`ResponseParts`), shared with other answers and never changed.
    """

    decision_id: int
    arrangement_id: int
    kind: str
    installment: int
    time: float
    at: dt.datetime
    action: Plain
    message_id: int | None
    send_time: float | None
    send_at: dt.datetime | None
    masked_rules: list[str]
    masked: Plain
    policy: str
    policy_version: str
    propensity: float
    fallback: bool


assert tuple(DecisionAnswer.__annotations__) == tuple(schemas.DecisionOut.model_fields), (
    "DecisionAnswer must list the fields of schemas.DecisionOut in order"
)


def answer_json(answer: DecisionAnswer) -> str:
    """An answer's JSON: what :meth:`schemas.DecisionOut.model_dump_json` gives for it."""
    return pydantic_core.to_json(answer).decode("utf-8")


def answer_model(answer: DecisionAnswer) -> schemas.DecisionOut:
    """An answer as its schema's model (validated)."""
    return schemas.DecisionOut.model_validate(answer)


def batch_json(answers: Sequence[DecisionAnswer]) -> str:
    """The JSON of ``POST /v1/decisions/batch``'s answer: what :class:`schemas.BatchDecisionOut` serialises to."""
    return pydantic_core.to_json({"decisions": answers}).decode("utf-8")


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
        self._actions: dict[tuple[int, ...], tuple[schemas.Action, Plain]] = {}
        self._masked: dict[tuple[tuple[int, tuple[str, ...]], ...], tuple[list[schemas.MaskedOption], str, Plain]] = {}

    def action(self, a: Sequence[int]) -> schemas.Action:
        """The action of option indices ``a``, by meaning."""
        return self._action(a)[0]

    def action_plain(self, a: Sequence[int]) -> Plain:
        """:meth:`action` as JSON-ready values (for :class:`DecisionAnswer`)."""
        return self._action(a)[1]

    def _action(self, a: Sequence[int]) -> tuple[schemas.Action, Plain]:
        key = tuple(a)
        out = self._actions.get(key)
        if out is None:
            # model_construct skips validation: the names come from the same tuples the Literals list.
            action = schemas.Action.model_construct(
                channel=cast(Any, _CHANNEL_NAMES[a[0]]),
                send_slot=self.slots[a[1]],
                due_day=None if a[2] == 0 else self.due_days[a[2] - 1],
                deferral_days=self.deferrals[a[3]],
                reduction=self.reductions[a[4]],
                indices=list(key),
            )
            out = (action, action.model_dump(mode="json"))
            self._actions[key] = out
        return out

    def masked(self, batch: ContextBatch) -> tuple[list[list[schemas.MaskedOption]], list[str], list[Plain]]:
        """Per row, the options the rules masked, the rules that masked anything (applicability excluded), and
        the options as JSON-ready values.

        The options are those of ``sorted(batch[i].masked_by.items())``, with their rules in rule order; the rule
        names are comma-separated in rule order, as the world logs them. No :class:`Context` is built per row.
        """
        names = [n for n in batch.forbidden if n != "not_applicable"]
        if not names:
            return [[] for _ in range(len(batch))], [""] * len(batch), [[] for _ in range(len(batch))]
        # Rows sharing a masking pattern (the options each rule forbids) share the answer, so Python only walks
        # the distinct patterns.
        bits = np.concatenate([np.asarray(batch.forbidden[n], dtype=bool) for n in names], axis=1)
        packed = np.packbits(bits, axis=1)
        first: dict[bytes, int] = {}
        which = [first.setdefault(packed[i].tobytes(), i) for i in range(len(batch))]
        width = bits.shape[1] // len(names)
        answers: dict[int, tuple[list[schemas.MaskedOption], str, Plain]] = {}
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
                plain = [o.model_dump(mode="json") for o in options]
                cached = (options, ",".join(n for n in names if n in used), plain)
                self._masked[key] = cached
            answers[i] = cached
        return [answers[i][0] for i in which], [answers[i][1] for i in which], [answers[i][2] for i in which]
