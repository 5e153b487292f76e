"""The decision contract: decision points, what a policy may see, what it may answer, and the policy protocol.

Used unchanged by the simulator, the Gymnasium envs, the agents and the server, so that what was trained is
what is served.

* :class:`DecisionKind` names the decision points of DOMAIN.md.
* :class:`ActionSpace` fixes the five parts of an action (channel, send-time slot, due-day option, deferral
  option, reduction option) and their options; an action is five option indices.
* :class:`ContextBatch` holds, column-wise, only what production could observe about each arrangement at a
  decision point, plus the mask of allowed options and, for each masked option, the rules that mask it.
  :class:`Context` is one row of it.
* :class:`Decision` / :class:`DecisionBatch` are a policy's answer, with the probability the policy gave it.
* :class:`Policy` is the protocol the simulator calls at every decision point.

Masks are *product-form*: each part's options are allowed or not independently of the other parts' choices,
which is what samplers that draw each part independently (sb3-contrib's ``MaskablePPO``) need; a rule that
is really joint (no robocall at night) is therefore applied conservatively (no send slot at night at all).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, overload, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from regsim.config import CHANNELS, DecisionConfig, SendSlot

if TYPE_CHECKING:
    from regsim.ground_truth import GroundTruthView

__all__ = [
    "CONTEXT_COLUMNS",
    "PART_NAMES",
    "ActionSpace",
    "Context",
    "ContextBatch",
    "Decision",
    "DecisionBatch",
    "DecisionKind",
    "Feedback",
    "LearningPolicy",
    "MessagePurpose",
    "Policy",
    "REMINDER_KINDS",
    "RuleViolation",
    "StateValue",
    "message_purpose",
]


class DecisionKind(IntEnum):
    """The decision points of an arrangement (DOMAIN.md "Decision points")."""

    PLAN_CREATED = 0
    """The arrangement was agreed: choose the due day, and a confirmation message or none."""
    PRE_DUE = 1
    """An installment falls due in a few days: announce it or stay silent; a deferral may be granted."""
    MISSED = 2
    """An installment was not paid by its due date: remind, defer, reduce or escalate."""
    FOLLOW_UP = 3
    """A missed installment is still unpaid some days later: the same options as at MISSED."""
    PAYMENT_RECEIVED = 4
    """A payment completed an installment: thank or confirm, or stay silent."""


#: The decision points at which a message is a reminder: a payment of the installment it is about cancels it,
#: and a rule forbids one about an installment already paid.
REMINDER_KINDS: frozenset[DecisionKind] = frozenset({DecisionKind.PRE_DUE, DecisionKind.MISSED, DecisionKind.FOLLOW_UP})


class MessagePurpose(IntEnum):
    """What a decision's message is for; only reminders are cancelled by a payment."""

    REMINDER = 0
    CONFIRMATION = 1
    """Sent when a plan is set up."""
    THANK_YOU = 2
    """Sent after an installment was paid."""


def message_purpose(kinds: NDArray[np.integer]) -> NDArray[np.int64]:
    """The :class:`MessagePurpose` of the message a decision of each kind sends."""
    return _PURPOSE_OF_KIND[np.asarray(kinds, dtype=np.int64)]


_PURPOSE_OF_KIND = np.array(
    [
        MessagePurpose.REMINDER
        if k in REMINDER_KINDS
        else MessagePurpose.CONFIRMATION
        if k == DecisionKind.PLAN_CREATED
        else MessagePurpose.THANK_YOU
        for k in DecisionKind
    ],
    dtype=np.int64,
)
_PURPOSE_OF_KIND.flags.writeable = False

#: The parts of an action, in the order of the flat mask and of the ``MultiDiscrete`` action.
PART_NAMES: tuple[str, ...] = ("channel", "send_slot", "due_day", "deferral", "reduction")
CHANNEL, SEND_SLOT, DUE_DAY, DEFERRAL, REDUCTION = range(5)


class RuleViolation(ValueError):  # noqa: N818  (the issue and the API name it so: "a rule violation")
    """A decision chose an option that a business rule masks; the message names the rule(s)."""

    def __init__(self, message: str, rules: Sequence[str] = ()) -> None:
        # Both arguments go to ``args`` so that the error can be rebuilt from them (SimPy re-raises errors
        # from inside a process as ``type(exc)(*exc.args)``; pickling does the same).
        super().__init__(message, tuple(rules))
        self.rules = tuple(rules)

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class ActionSpace:
    """The options of each action part.

    Option 0 of every part except ``send_slot`` means "no contact / no change". The channel part's options
    are ``("none", *CHANNELS)``; the due-day part's options are ``("keep", *due_day_options)``.

    Args:
        send_slots: When a message is sent, relative to the decision day.
        due_day_options: Days of the month the due day may be set to at plan creation.
        deferral_days: Deferral options in days, the first 0.
        reduction_fractions: Reduction options as fractions of the installment, the first 0.
    """

    send_slots: tuple[SendSlot, ...]
    due_day_options: tuple[int, ...]
    deferral_days: tuple[int, ...]
    reduction_fractions: tuple[float, ...]

    @classmethod
    def from_config(cls, config: DecisionConfig) -> ActionSpace:
        """The action space of a world's decision config."""
        return cls(
            send_slots=tuple(config.send_slots),
            due_day_options=tuple(config.due_day_options),
            deferral_days=tuple(config.deferral_options),
            reduction_fractions=tuple(config.reduction_options),
        )

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Names of the channel options; index 0 is ``"none"``."""
        return ("none", *CHANNELS)

    @cached_property  # the space is frozen; the rules ask for it at every batch
    def nvec(self) -> tuple[int, ...]:
        """Number of options per part, as for ``gymnasium.spaces.MultiDiscrete``."""
        return (
            1 + len(CHANNELS),
            len(self.send_slots),
            1 + len(self.due_day_options),
            len(self.deferral_days),
            len(self.reduction_fractions),
        )

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """Start of each part in the flat mask."""
        return tuple(int(x) for x in np.concatenate([[0], np.cumsum(self.nvec)[:-1]]))

    @cached_property
    def mask_size(self) -> int:
        """Length of the flat mask (the sum of :attr:`nvec`)."""
        return int(sum(self.nvec))

    def option_labels(self, part: int) -> tuple[str, ...]:
        """Human-readable labels of one part's options."""
        if part == CHANNEL:
            return self.channel_names
        if part == SEND_SLOT:
            return tuple(f"day+{s.day_offset} {s.hour:02d}:00" for s in self.send_slots)
        if part == DUE_DAY:
            return ("keep", *(f"day {d}" for d in self.due_day_options))
        if part == DEFERRAL:
            return tuple(f"{d} days" for d in self.deferral_days)
        return tuple(f"{r:.0%}" for r in self.reduction_fractions)

    @cached_property
    def applicable_table(self) -> NDArray[np.bool_]:
        """:meth:`applicable`, computed once (read-only)."""
        table = self.applicable()
        table.flags.writeable = False
        return table

    def applicable(self) -> NDArray[np.bool_]:
        """Which options apply at each decision kind, shape ``(len(DecisionKind), mask_size)``.

        Every channel and send slot applies everywhere (business rules may still mask them). The due day is
        chosen only at plan creation, a deferral only before or after a due date, a reduction only after a
        miss; elsewhere these parts allow only option 0 and whatever is chosen there is ignored (see
        :meth:`normalise`).
        """
        table = np.zeros((len(DecisionKind), self.mask_size), dtype=bool)
        off, nvec = self.offsets, self.nvec

        def allow(kind: DecisionKind, part: int, options: Sequence[int] | None = None) -> None:
            for o in range(nvec[part]) if options is None else options:
                table[kind, off[part] + o] = True

        for kind in DecisionKind:
            allow(kind, CHANNEL)
            allow(kind, SEND_SLOT)
            allow(kind, DUE_DAY, [0])
            allow(kind, DEFERRAL, [0])
            allow(kind, REDUCTION, [0])
        allow(DecisionKind.PLAN_CREATED, DUE_DAY)
        for kind in REMINDER_KINDS:  # before or after a due date
            allow(kind, DEFERRAL)
        for kind in (DecisionKind.MISSED, DecisionKind.FOLLOW_UP):
            allow(kind, REDUCTION)
        return table

    def normalise(
        self, kinds: NDArray[np.integer], actions: NDArray[np.int64], first_slot: NDArray[np.int64]
    ) -> NDArray[np.int64]:
        """Actions with the parts that have no effect set to their canonical option.

        A part that does not apply at a decision kind (e.g. a deferral at a thank-you) is set to 0, and the
        send slot of a decision without contact to ``first_slot`` (the first allowed slot): neither changes
        what happens, so a policy is not refused for them, and the log records what was applied.
        """
        table = self.applicable_table[np.asarray(kinds, dtype=np.int64)]
        out = np.array(actions, dtype=np.int64, copy=True)
        for part in (DUE_DAY, DEFERRAL, REDUCTION):
            off, n = self.offsets[part], self.nvec[part]
            only_none = ~table[:, off + 1 : off + n].any(axis=1)
            out[only_none, part] = 0
        out[:, SEND_SLOT] = np.where(out[:, CHANNEL] == 0, first_slot, out[:, SEND_SLOT])
        return out


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
    "opened": (np.int16, (len(CHANNELS),), "'opened' signals per channel (email's is noisy, F6)"),
    "clicked": (np.int16, (len(CHANNELS),), "payment-link clicks per channel"),
    "opted_out": (np.bool_, (len(CHANNELS),), "the debtor opted out of the channel"),
}


@dataclass(frozen=True, slots=True)
class Context:
    """What production could observe about one arrangement at one decision point (a row of a batch).

    Attributes mirror :data:`CONTEXT_COLUMNS`; ``mask`` is the flat allowed-options mask and ``masked_by``
    maps ``(part, option)`` of each masked option to the names of the rules that mask it.
    """

    values: dict[str, Any]
    mask: NDArray[np.bool_]
    masked_by: dict[tuple[int, int], tuple[str, ...]]
    space: ActionSpace

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def kind_name(self) -> str:
        """The decision point's kind, by name (``"pre_due"``, ...)."""
        return DecisionKind(int(self.values["kind"])).name.lower()

    def allowed(self, part: int) -> NDArray[np.int64]:
        """Indices of the allowed options of one part."""
        off, n = self.space.offsets[part], self.space.nvec[part]
        return np.flatnonzero(self.mask[off : off + n])

    def batch(self) -> ContextBatch:
        """This context as a batch of one."""
        return ContextBatch.from_contexts([self])


@dataclass
class ContextBatch(Sequence[Context]):
    """Contexts of many decision points, column-wise (see :data:`CONTEXT_COLUMNS`).

    Attributes:
        space: The action space the mask refers to.
        columns: Column name to array of length ``B`` (or ``(B, k)``).
        mask: Allowed options, shape ``(B, space.mask_size)``.
        forbidden: Rule name to the options that rule forbids, shape ``(B, space.mask_size)``; ``mask`` is
            the negation of their union.
    """

    space: ActionSpace
    columns: dict[str, NDArray[Any]]
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
        values = {k: (v[i].tolist() if v.ndim > 1 else v[i].item()) for k, v in self.columns.items()}
        row_masked = {name: np.flatnonzero(f[i]) for name, f in self.forbidden.items()}
        masked_by: dict[tuple[int, int], list[str]] = {}
        bounds = np.cumsum(self.space.nvec)
        for name, flat in row_masked.items():
            for j in flat:
                part = int(np.searchsorted(bounds, j, side="right"))
                masked_by.setdefault((part, int(j) - self.space.offsets[part]), []).append(name)
        return Context(
            values=values,
            mask=self.mask[i].copy(),
            masked_by={k: tuple(v) for k, v in masked_by.items()},
            space=self.space,
        )

    def __iter__(self) -> Iterator[Context]:
        for i in range(len(self)):
            yield self[i]

    def __getattr__(self, name: str) -> NDArray[Any]:
        columns = self.__dict__.get("columns")
        if columns is not None and name in columns:
            return columns[name]
        raise AttributeError(name)

    def take(self, rows: NDArray[np.integer]) -> ContextBatch:
        """The sub-batch of the given rows."""
        return ContextBatch(
            space=self.space,
            columns={k: v[rows] for k, v in self.columns.items()},
            mask=self.mask[rows],
            forbidden={k: v[rows] for k, v in self.forbidden.items()},
        )

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
        return cls(
            space=space,
            columns={k: np.concatenate([b.columns[k] for b in batches]) for k in batches[0].columns},
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
            name: np.asarray([c.values[name] for c in contexts], dtype=dtype)
            for name, (dtype, _, _) in CONTEXT_COLUMNS.items()
        }
        mask = np.stack([c.mask for c in contexts])
        names = sorted({r for c in contexts for rules in c.masked_by.values() for r in rules})
        forbidden = {n: np.zeros_like(mask) for n in names}
        for row, c in enumerate(contexts):
            for (part, option), rules in c.masked_by.items():
                for r in rules:
                    forbidden[r][row, space.offsets[part] + option] = True
        return cls(space=space, columns=columns, mask=mask, forbidden=forbidden)


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy's answer at one decision point.

    Attributes:
        channel: Channel option (0 = no contact, then :data:`regsim.config.CHANNELS` in order).
        send_slot: Send-time slot option (ignored when ``channel == 0``).
        due_day: Due-day option (0 = keep).
        deferral: Deferral option (0 = none).
        reduction: Reduction option (0 = none).
        propensity: Probability the policy gave this action (1.0 for a deterministic policy).
    """

    channel: int = 0
    send_slot: int = 0
    due_day: int = 0
    deferral: int = 0
    reduction: int = 0
    propensity: float = 1.0

    def action(self) -> tuple[int, int, int, int, int]:
        """The five option indices, in :data:`PART_NAMES` order."""
        return (self.channel, self.send_slot, self.due_day, self.deferral, self.reduction)


@dataclass
class DecisionBatch(Sequence[Decision]):
    """Decisions for a :class:`ContextBatch`, column-wise.

    Attributes:
        actions: Option indices, shape ``(B, 5)`` in :data:`PART_NAMES` order.
        propensity: Probability of each chosen action under the policy, shape ``(B,)``.
    """

    actions: NDArray[np.int64]
    propensity: NDArray[np.float64]

    def __post_init__(self) -> None:
        self.actions = np.asarray(self.actions, dtype=np.int64).reshape(-1, len(PART_NAMES))
        self.propensity = np.asarray(self.propensity, dtype=np.float64).reshape(-1)
        if len(self.propensity) != len(self.actions):
            raise ValueError(f"propensity has {len(self.propensity)} rows but actions has {len(self.actions)}")

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @overload
    def __getitem__(self, i: int) -> Decision: ...
    @overload
    def __getitem__(self, i: slice) -> DecisionBatch: ...
    def __getitem__(self, i: int | slice) -> Decision | DecisionBatch:
        if isinstance(i, slice):
            return DecisionBatch(self.actions[i], self.propensity[i])
        a = self.actions[i]
        return Decision(int(a[0]), int(a[1]), int(a[2]), int(a[3]), int(a[4]), float(self.propensity[i]))

    @classmethod
    def from_decisions(cls, decisions: Sequence[Decision]) -> DecisionBatch:
        """Stack single decisions."""
        if isinstance(decisions, DecisionBatch):
            return decisions
        actions = np.array([d.action() for d in decisions], dtype=np.int64).reshape(-1, len(PART_NAMES))
        return cls(actions, np.array([d.propensity for d in decisions], dtype=np.float64))

    @classmethod
    def none(cls, n: int) -> DecisionBatch:
        """``n`` decisions that contact nobody and change nothing."""
        return cls(np.zeros((n, len(PART_NAMES)), dtype=np.int64), np.ones(n))


@dataclass(frozen=True)
class Feedback:
    """What an online learner is told about earlier decisions once their outcome window has closed.

    Attributes:
        decision_ids: Ids of the decisions (as logged).
        contexts: The contexts the decisions were taken in.
        actions: The actions taken, shape ``(B, 5)``.
        propensity: The probabilities the policy gave them.
        rewards: The observed rewards.
        censored: True where the window was cut short (the run or the arrangement ended first).
    """

    decision_ids: NDArray[np.int64]
    contexts: ContextBatch
    actions: NDArray[np.int64]
    propensity: NDArray[np.float64]
    rewards: NDArray[np.float64]
    censored: NDArray[np.bool_]


@runtime_checkable
class Policy(Protocol):
    """What the simulator (and the server) calls at each decision point.

    A policy never sees latent debtor state; it must choose only allowed options (``contexts.mask``), and
    the caller refuses a decision that breaks a rule with :class:`RuleViolation`. Besides deciding, a policy
    says whether it learns online (``feedback_window_days``: the world and the server then feed it matured
    outcomes through :meth:`update`, rewarded by ``feedback_reward``) and whether it reads the simulator's ground
    truth (``requires_ground_truth``: refused outside simulation; the world binds the view before it decides).
    :class:`agents.base.BasePolicy` gives every member but :meth:`decide_batch` a default.
    """

    @property
    def name(self) -> str:
        """The policy's registered name (logged with every decision)."""
        ...

    @property
    def version(self) -> str:
        """The policy's version (logged with every decision)."""
        ...

    @property
    def feedback_window_days(self) -> float | None:
        """Days after a decision its outcome is collected and fed to :meth:`update`; ``None``: never fed."""
        ...

    @property
    def feedback_reward(self) -> str:
        """The reward of the fed-back outcomes: a name in :data:`regsim.rewards.REWARDS`."""
        ...

    @property
    def requires_ground_truth(self) -> bool:
        """Whether the policy reads latent state (simulation only)."""
        ...

    def bind_ground_truth(self, view: GroundTruthView) -> None:
        """Called by the world before the first decision of a policy that ``requires_ground_truth``."""
        ...

    def decide(self, context: Context) -> Decision:
        """The decision for one context."""
        ...

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        """Decisions for many contexts at once, in order."""
        ...

    def update(self, feedback: Feedback) -> None:
        """Learn from matured outcomes (a no-op for fixed policies)."""
        ...


StateValue = NDArray[Any] | int | float | str
"""A value of a learning policy's state: an array, or a plain scalar."""


@runtime_checkable
class LearningPolicy(Policy, Protocol):
    """A policy that learns online and whose whole learning state can be read and restored exactly."""

    def state_dict(self, arrays: bool = True) -> dict[str, StateValue]:
        """Everything that changes as the policy decides and learns (``arrays=False``: the small part only)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        ...
