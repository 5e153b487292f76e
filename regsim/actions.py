"""The action space of the decision contract: decision points, the five parts of an action, and their options.

* :class:`DecisionKind` names the decision points (docs/architecture.md#decision-points).
* :class:`ActionSpace` fixes the five parts of an action (channel, send-time slot, due-day option, deferral
  option, reduction option) and their options; an action is five option indices. Which parts apply at which
  decision point is :meth:`ActionSpace.applicable`.
* :class:`MessagePurpose` and :data:`REMINDER_KINDS`: what a decision's message is for (only reminders are
  cancelled by a payment), defined once for the world, the rules, the oracle and the server.
* :class:`RuleViolation` is how a decision that breaks a business rule is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from regsim.config import CHANNELS, DecisionConfig, SendSlot

__all__ = [
    "CHANNEL",
    "DEFERRAL",
    "DUE_DAY",
    "PART_NAMES",
    "REDUCTION",
    "REMINDER_KINDS",
    "SEND_SLOT",
    "ActionSpace",
    "DecisionKind",
    "MessagePurpose",
    "RuleViolation",
    "message_purpose",
]


class DecisionKind(IntEnum):
    """The decision points of an arrangement (docs/architecture.md#decision-points)."""

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
