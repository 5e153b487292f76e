"""What a policy may see at a decision point: the observable context, one row or a batch of many.

:class:`ContextBatch` holds, column-wise (:class:`ContextColumns`, described by :data:`CONTEXT_COLUMNS`), only
what production could observe about each arrangement at a decision point, plus the mask of allowed options and,
for each masked option, the rules that mask it. :class:`Context` is one row of it, with every column as a typed
attribute. Masks are *product-form*: each part's options are allowed or not independently of the other parts'
choices, which is what samplers that draw each part independently (sb3-contrib's ``MaskablePPO``) need; a rule
that is really joint (no robocall at night) is therefore applied conservatively (no send slot at night at all).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypedDict, cast, overload

import numpy as np
from numpy.typing import NDArray

from regsim.actions import ActionSpace, DecisionKind
from regsim.config import CHANNELS

__all__ = ["CONTEXT_COLUMNS", "Context", "ContextBatch", "ContextColumns"]

#: Observable columns of a :class:`ContextBatch`: name -> (dtype, per-row shape, meaning).
CONTEXT_COLUMNS: dict[str, tuple[type, tuple[int, ...], str]] = {
    "arrangement_id": (np.int64, (), "pseudonymous arrangement id"),
    "kind": (np.int8, (), "DecisionKind of the decision point"),
    "day": (np.int32, (), "days since the start of the run (production: since a fixed epoch)"),
    "day_of_month": (np.int8, (), "calendar day of the month of the decision, 1..31"),
    "weekday": (np.int8, (), "weekday of the decision, 0=Monday"),
    "installment": (np.int16, (), "index of the installment the decision is about, -1 if none"),
    "target_paid": (np.bool_, (), "that installment is already fully paid"),
    "n_installments": (np.int16, (), "installments in the current plan"),
    "installment_eur": (np.float64, (), "amount of the targeted (or next) installment, EUR"),
    "debt_eur": (np.float64, (), "debt when the arrangement was agreed, EUR"),
    "balance_eur": (np.float64, (), "amount still to pay, EUR"),
    "installments_paid": (np.int16, (), "installments fully paid"),
    "installments_due": (np.int16, (), "installments whose due date has passed"),
    "on_time": (np.int16, (), "installments fully paid by their due date"),
    "missed": (np.int16, (), "installments that were missed (unpaid after due date + grace)"),
    "overdue": (np.int16, (), "installments overdue now"),
    "days_to_due": (np.int32, (), "days until the targeted installment is due (negative: overdue)"),
    "due_day": (np.int8, (), "day of the month on which installments fall due"),
    "deferrals": (np.int16, (), "deferrals granted so far"),
    "reductions": (np.int16, (), "reductions granted so far"),
    "days_since_payment": (np.int32, (), "days since the last payment, -1 if none"),
    "last_payment_dom": (np.int8, (), "day of the month of the last payment, -1 if none"),
    "age_days": (np.int32, (), "days since the arrangement was agreed"),
    "prior_payments": (np.int16, (), "payments to the creditor before the arrangement"),
    "prior_late_share": (np.float64, (), "share of those that were late"),
    "prior_pay_dom": (np.int8, (), "most frequent day of the month of those payments, -1 if none"),
    "contacts_7d": (np.int16, (), "contacts planned or made in the last 7 days"),
    "days_since_contact": (np.int32, (), "days since the last contact, -1 if none"),
    "sent": (np.int16, (len(CHANNELS),), "messages sent per channel"),
    "delivered": (np.int16, (len(CHANNELS),), "messages known delivered (or calls answered) per channel"),
    "opened": (np.int16, (len(CHANNELS),), "'opened' signals per channel (email's is noisy: F6, docs/calibration.md)"),
    "clicked": (np.int16, (len(CHANNELS),), "payment-link clicks per channel"),
    "opted_out": (np.bool_, (len(CHANNELS),), "the debtor opted out of the channel"),
}


class ContextColumns(TypedDict):
    """The columns of a :class:`ContextBatch`, each an array of length ``B`` (``(B, len(CHANNELS))`` for the
    per-channel counters); their meanings are :data:`CONTEXT_COLUMNS`'."""

    arrangement_id: NDArray[np.int64]
    kind: NDArray[np.int8]
    day: NDArray[np.int32]
    day_of_month: NDArray[np.int8]
    weekday: NDArray[np.int8]
    installment: NDArray[np.int16]
    target_paid: NDArray[np.bool_]
    n_installments: NDArray[np.int16]
    installment_eur: NDArray[np.float64]
    debt_eur: NDArray[np.float64]
    balance_eur: NDArray[np.float64]
    installments_paid: NDArray[np.int16]
    installments_due: NDArray[np.int16]
    on_time: NDArray[np.int16]
    missed: NDArray[np.int16]
    overdue: NDArray[np.int16]
    days_to_due: NDArray[np.int32]
    due_day: NDArray[np.int8]
    deferrals: NDArray[np.int16]
    reductions: NDArray[np.int16]
    days_since_payment: NDArray[np.int32]
    last_payment_dom: NDArray[np.int8]
    age_days: NDArray[np.int32]
    prior_payments: NDArray[np.int16]
    prior_late_share: NDArray[np.float64]
    prior_pay_dom: NDArray[np.int8]
    contacts_7d: NDArray[np.int16]
    days_since_contact: NDArray[np.int32]
    sent: NDArray[np.int16]
    delivered: NDArray[np.int16]
    opened: NDArray[np.int16]
    clicked: NDArray[np.int16]
    opted_out: NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Context:
    """What production could observe about one arrangement at one decision point (a row of a batch).

    Every column of :data:`CONTEXT_COLUMNS` is an attribute (the per-channel counters as tuples in
    :data:`regsim.config.CHANNELS` order); ``mask`` is the flat allowed-options mask and ``masked_by`` maps
    ``(part, option)`` of each masked option to the names of the rules that mask it.
    """

    arrangement_id: int
    kind: int
    """:class:`~regsim.actions.DecisionKind` of the decision point."""
    day: int
    day_of_month: int
    weekday: int
    installment: int
    target_paid: bool
    n_installments: int
    installment_eur: float
    debt_eur: float
    balance_eur: float
    installments_paid: int
    installments_due: int
    on_time: int
    missed: int
    overdue: int
    days_to_due: int
    due_day: int
    deferrals: int
    reductions: int
    days_since_payment: int
    last_payment_dom: int
    age_days: int
    prior_payments: int
    prior_late_share: float
    prior_pay_dom: int
    contacts_7d: int
    days_since_contact: int
    sent: tuple[int, ...]
    delivered: tuple[int, ...]
    opened: tuple[int, ...]
    clicked: tuple[int, ...]
    opted_out: tuple[bool, ...]
    mask: NDArray[np.bool_]
    masked_by: dict[tuple[int, int], tuple[str, ...]]
    space: ActionSpace

    @property
    def kind_name(self) -> str:
        """The decision point's kind, by name (``"pre_due"``, ...)."""
        return DecisionKind(self.kind).name.lower()

    def allowed(self, part: int) -> NDArray[np.int64]:
        """Indices of the allowed options of one part."""
        off, n = self.space.offsets[part], self.space.nvec[part]
        return np.flatnonzero(self.mask[off : off + n])

    def batch(self) -> ContextBatch:
        """This context as a batch of one."""
        return ContextBatch.from_contexts([self])


#: The column attributes of a :class:`Context` (all but the mask, the rules and the space).
_COLUMN_FIELDS = tuple(f.name for f in fields(Context) if f.name not in ("mask", "masked_by", "space"))
#: The columns by name, as a type built once: a subscripted generic in a ``cast`` is built on every call (about
#: 2.6 us, paid per column per batch by :meth:`ContextBatch.concat`).
_ByName = dict[str, NDArray[Any]]
assert _COLUMN_FIELDS == tuple(CONTEXT_COLUMNS) == tuple(ContextColumns.__annotations__), "the columns agree"


@dataclass
class ContextBatch(Sequence[Context]):
    """Contexts of many decision points, column-wise (see :data:`CONTEXT_COLUMNS`).

    Attributes:
        space: The action space the mask refers to.
        columns: The columns, each of length ``B`` (or ``(B, k)``).
        mask: Allowed options, shape ``(B, space.mask_size)``.
        forbidden: Rule name to the options that rule forbids, shape ``(B, space.mask_size)``; ``mask`` is
            the negation of their union.
    """

    space: ActionSpace
    columns: ContextColumns
    mask: NDArray[np.bool_]
    forbidden: dict[str, NDArray[np.bool_]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.mask.shape[0])

    @overload
    def __getitem__(self, i: int) -> Context: ...
    @overload
    def __getitem__(self, i: slice) -> ContextBatch: ...
    def __getitem__(self, i: int | slice) -> Context | ContextBatch:
        if isinstance(i, slice):
            return self.take(np.arange(len(self))[i])
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        columns = self.by_name()
        values: dict[str, Any] = {
            k: tuple(columns[k][i].tolist()) if columns[k].ndim > 1 else columns[k][i].item() for k in _COLUMN_FIELDS
        }
        row_masked = {name: np.flatnonzero(f[i]) for name, f in self.forbidden.items()}
        masked_by: dict[tuple[int, int], list[str]] = {}
        bounds = np.cumsum(self.space.nvec)
        for name, flat in row_masked.items():
            for j in flat:
                part = int(np.searchsorted(bounds, j, side="right"))
                masked_by.setdefault((part, int(j) - self.space.offsets[part]), []).append(name)
        return Context(
            **values,
            mask=self.mask[i].copy(),
            masked_by={k: tuple(v) for k, v in masked_by.items()},
            space=self.space,
        )

    def __iter__(self) -> Iterator[Context]:
        for i in range(len(self)):
            yield self[i]

    def take(self, rows: NDArray[np.integer]) -> ContextBatch:
        """The sub-batch of the given rows."""
        return ContextBatch(
            space=self.space,
            columns=cast(ContextColumns, {k: v[rows] for k, v in self.by_name().items()}),
            mask=self.mask[rows],
            forbidden={k: v[rows] for k, v in self.forbidden.items()},
        )

    def by_name(self) -> dict[str, NDArray[Any]]:
        """The columns as a plain mapping, for code that goes through them by name (the features, the log)."""
        return cast(_ByName, self.columns)

    def part_mask(self, part: int) -> NDArray[np.bool_]:
        """The mask of one part, shape ``(B, nvec[part])``."""
        off, n = self.space.offsets[part], self.space.nvec[part]
        return self.mask[:, off : off + n]

    @classmethod
    def concat(cls, batches: Sequence[ContextBatch]) -> ContextBatch:
        """Stack batches of the same action space into one."""
        if not batches:
            raise ValueError("concat needs at least one batch")
        space = batches[0].space
        names = sorted({name for b in batches for name in b.forbidden})
        columns = [b.by_name() for b in batches]
        return cls(
            space=space,
            columns=cast(ContextColumns, {k: np.concatenate([c[k] for c in columns]) for k in columns[0]}),
            mask=np.concatenate([b.mask for b in batches]),
            forbidden={n: np.concatenate([b.forbidden.get(n, np.zeros_like(b.mask)) for b in batches]) for n in names},
        )

    @classmethod
    def from_contexts(cls, contexts: Sequence[Context]) -> ContextBatch:
        """Stack single contexts (e.g. built by a server from its database) into a batch."""
        if not contexts:
            raise ValueError("from_contexts needs at least one context")
        space = contexts[0].space
        columns: dict[str, NDArray[Any]] = {
            name: np.asarray([getattr(c, name) for c in contexts], dtype=dtype)
            for name, (dtype, _, _) in CONTEXT_COLUMNS.items()
        }
        mask = np.stack([c.mask for c in contexts])
        names = sorted({r for c in contexts for rules in c.masked_by.values() for r in rules})
        forbidden = {n: np.zeros_like(mask) for n in names}
        for row, c in enumerate(contexts):
            for (part, option), rules in c.masked_by.items():
                for r in rules:
                    forbidden[r][row, space.offsets[part] + option] = True
        return cls(space=space, columns=cast(ContextColumns, columns), mask=mask, forbidden=forbidden)
