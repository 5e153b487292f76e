"""The decision contract: decision points, what a policy may see, what it may answer, and the policy protocol.

Used unchanged by the simulator, the Gymnasium envs, the agents and the server, so that what was trained is
what is served.

* :mod:`regsim.actions`: the decision points (:class:`DecisionKind`) and the five-part action
  (:class:`ActionSpace`); the purpose of each decision's message (:class:`MessagePurpose`).
* :mod:`regsim.context`: what a policy may see (:class:`Context`, :class:`ContextBatch`): only what production
  could observe, with the mask of allowed options and the rule behind every masked one.
* Here: a policy's answer (:class:`Decision`, :class:`DecisionBatch`, with the probability the policy gave it),
  what an online learner is told later (:class:`Feedback`), and the protocol every policy answers
  (:class:`Policy`; :class:`LearningPolicy` for one whose learning state is saved and restored).

* Self-service menus (:mod:`regsim.menu`, docs/mechanisms.md#mechanism-10) are a decision beside this one, with
  their own :class:`~regsim.menu.MenuSpace`, :class:`~regsim.menu.MenuBatch` and
  :class:`~regsim.menu.MenuDecisionBatch`: a policy may add ``decide_menu(menus)`` (the
  :class:`~regsim.menu.MenuPolicy` protocol); one without it is answered by the rule-based default menu. Nothing
  of the five-part action, the contexts or the feature layout changes.

Every name of the contract can be imported from this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, overload, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from regsim.actions import (
    CHANNEL,
    DEFERRAL,
    DUE_DAY,
    PART_NAMES,
    REDUCTION,
    REMINDER_KINDS,
    SEND_SLOT,
    ActionSpace,
    DecisionKind,
    MessagePurpose,
    RuleViolation,
    message_purpose,
)
from regsim.context import CONTEXT_COLUMNS, Context, ContextBatch, ContextColumns

if TYPE_CHECKING:
    from regsim.ground_truth import GroundTruthView

__all__ = [
    "CHANNEL",
    "CONTEXT_COLUMNS",
    "DEFERRAL",
    "DUE_DAY",
    "PART_NAMES",
    "REDUCTION",
    "REMINDER_KINDS",
    "SEND_SLOT",
    "ActionSpace",
    "Context",
    "ContextBatch",
    "ContextColumns",
    "Decision",
    "DecisionBatch",
    "DecisionKind",
    "Feedback",
    "LearningPolicy",
    "MessagePurpose",
    "Policy",
    "RuleViolation",
    "StateValue",
    "message_purpose",
]


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
    :class:`agents.base.BasePolicy` gives every member but :meth:`decide_batch` a default. An optional member,
    ``decide_menu`` (:class:`regsim.menu.MenuPolicy`), tailors self-service menus; it is not part of this
    protocol, so every policy written before self-service still is one.
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
