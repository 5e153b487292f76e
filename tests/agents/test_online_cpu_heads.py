"""The heads' availability, with what it reads of each part worked out once, against its definition row by row.

:meth:`agents.bandits.heads.Head.available` keeps per part the arms' columns, the arms of "first allowed
option" (:data:`~agents.bandits.heads.ANY`) and the option indices. Masks here forbid options at random (the
first send slot too, where the no-contact arm's ``ANY`` matters) at every decision kind (where parts that do
not apply are pinned to their first allowed option).
"""

from __future__ import annotations

import numpy as np

from agents.bandits.heads import ANY, Head, build_heads, first_allowed_options
from regsim import WorldConfig
from regsim.decision import ActionSpace, ContextBatch
from tests.regsim.test_rules import make_batch, random_rows


def _reference(head: Head, mask: np.ndarray, kinds: np.ndarray, first: np.ndarray) -> np.ndarray:
    space = head.space
    out = np.zeros((mask.shape[0], head.n_arms), dtype=bool)
    for r in range(mask.shape[0]):
        for a in range(head.n_arms):
            ok = True
            for j, part in enumerate(head.parts):
                off, size = space.offsets[part], space.nvec[part]
                allowed = mask[r, off : off + size].copy()
                if head.pinned_at[kinds[r], j]:
                    allowed &= np.arange(size) == first[r, part]
                opt = int(head.options[a, j])
                ok &= bool(allowed.any()) if opt == ANY else bool(allowed[opt])
            out[r, a] = ok
    return out


def test_availability_is_its_definition_with_random_masks() -> None:
    space = ActionSpace.from_config(WorldConfig().decisions)
    batch, _ = make_batch(random_rows(120, seed=7))
    rng = np.random.default_rng(3)
    mask = rng.random(batch.mask.shape) < 0.6  # (not the rules' mask: options that do not apply allowed too)
    for off, size in zip(space.offsets, space.nvec, strict=True):  # every part keeps an allowed option
        empty = ~mask[:, off : off + size].any(axis=1)
        mask[empty, off + rng.integers(0, size, size=int(empty.sum()))] = True
    assert (~mask[:, space.offsets[1]]).any()  # (the first send slot forbidden in some rows)
    batch = ContextBatch(space, batch.columns, mask, batch.forbidden)
    kinds = np.asarray(batch.columns["kind"], dtype=np.intp)
    first = first_allowed_options(mask, space)
    assert len(set(kinds.tolist())) == 5
    for head in build_heads(space):
        got = head.available(mask, kinds, first)
        np.testing.assert_array_equal(got, _reference(head, mask, kinds, first), err_msg=head.name)
        for k in range(5):  # subsets of rows, as the bandit passes the rows where a head is active
            rows = np.flatnonzero(kinds == k)
            np.testing.assert_array_equal(head.available(mask[rows], kinds[rows], first[rows]), got[rows])
