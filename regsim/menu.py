"""The self-service menu as a decision: what the bot may show a debtor in arrears, and the contract it answers.

A debtor who cannot pay follows a reminder's link to the self-service page (docs/mechanisms.md#mechanism-10):
a **menu point**. The bot's action there is the menu: for each of six *slots* (deferral, new plan, waiver of
collection costs, discount, debt counselling, custom solution) a *level* from the finite set in the config
(``self_service``), level 0 meaning "not shown". The debtor then chooses one of the options shown or closes
the page (:mod:`regsim.choice`).

The contract, beside (not inside) the arrangement decision's :class:`~regsim.decision.ContextBatch` and
:class:`~regsim.decision.DecisionBatch`, so that no existing policy, feature layout or env changes:

* :class:`MenuSpace`: the slots and their levels (``nvec``, flat ``offsets``, labels), from the config.
* :class:`MenuBatch`: the observable context of each menu point (the same :data:`~regsim.context.CONTEXT_COLUMNS`,
  built by the same code, with ``kind`` = -1: a menu is none of the arrangement's decision kinds), the
  product-form mask of allowed levels and, per menu rule, the levels it forbids (:class:`regsim.rules.MenuRuleSet`),
  so every capped option names its rule.
* :class:`MenuDecisionBatch`: the menus chosen, one level per slot, with the policy's probability of the whole
  menu (the product of its slots' probabilities for a policy that draws slots independently).
* :class:`MenuPolicy`: a policy that tailors menus has ``decide_menu(menus) -> MenuDecisionBatch``. The world
  calls it when present; a policy without it (every policy written before self-service) gets the rule-based
  default menu, :func:`default_menu` (every slot at the highest level its rules allow: fixed caps by history
  band, as seeds/002 describes), logged under the policy's name with propensity 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from regsim.choice import N_OPTIONS
from regsim.config_self_service import SelfServiceConfig
from regsim.context import ContextColumns

__all__ = [
    "SLOT_NAMES",
    "MenuBatch",
    "MenuDecisionBatch",
    "MenuOption",
    "MenuPolicy",
    "MenuSpace",
    "decide_menus",
    "default_menu",
]


class MenuOption(IntEnum):
    """What a debtor chose on the page; values are logged (``a_channel`` of a ``menu_choice`` event)."""

    CLOSE = 0
    """Closed the page (the outside option)."""
    DEFERRAL = 1
    PLAN = 2
    WAIVER = 3
    DISCOUNT = 4
    COUNSELLING = 5
    CUSTOM = 6


#: The slots of a menu, in order; slot ``k`` offers option ``MenuOption(k + 1)``.
SLOT_NAMES: tuple[str, ...] = ("deferral", "plan", "waiver", "discount", "counselling", "custom")
DEFERRAL_SLOT, PLAN_SLOT, WAIVER_SLOT, DISCOUNT_SLOT, COUNSELLING_SLOT, CUSTOM_SLOT = range(6)
assert 1 + len(SLOT_NAMES) == N_OPTIONS


@dataclass(frozen=True)
class MenuSpace:
    """The levels of each menu slot (level 0 of every slot: not shown).

    Args:
        deferral_days: Deferral levels in days (the first 0).
        plan_installments: New-plan levels in installments (the first 0).
        discounts: Discount levels as fractions of the open balance (the first 0).
    """

    deferral_days: tuple[int, ...]
    plan_installments: tuple[int, ...]
    discounts: tuple[float, ...]

    @classmethod
    def from_config(cls, config: SelfServiceConfig) -> MenuSpace:
        """The menu space of a world's ``self_service`` section."""
        return cls(tuple(config.deferral_days), tuple(config.plan_installments), tuple(config.discounts))

    @cached_property
    def nvec(self) -> tuple[int, ...]:
        """Levels per slot, as for ``gymnasium.spaces.MultiDiscrete``."""
        return (len(self.deferral_days), len(self.plan_installments), 2, len(self.discounts), 2, 2)

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """Start of each slot in the flat mask."""
        return tuple(int(x) for x in np.concatenate([[0], np.cumsum(self.nvec)[:-1]]))

    @cached_property
    def mask_size(self) -> int:
        """Length of the flat mask."""
        return int(sum(self.nvec))

    def level_labels(self, slot: int) -> tuple[str, ...]:
        """Human-readable labels of one slot's levels."""
        if slot == DEFERRAL_SLOT:
            return ("none", *(f"{d} days" for d in self.deferral_days[1:]))
        if slot == PLAN_SLOT:
            return ("none", *(f"{n} installments" for n in self.plan_installments[1:]))
        if slot == DISCOUNT_SLOT:
            return ("none", *(f"{r:.0%}" for r in self.discounts[1:]))
        return ("no", "yes")

    def scaled_terms(self, levels: NDArray[np.int64]) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
        """What the choice model sees of menus: options shown and their scaled terms, each ``(B, 7)``.

        Terms (docs/mechanisms.md#mechanism-10): deferral days / 30, plan installments / 12, the discount
        fraction; 0 for the options without a term and for the outside option (column 0).
        """
        levels = np.asarray(levels, dtype=np.int64).reshape(-1, len(SLOT_NAMES))
        shown = np.zeros((len(levels), N_OPTIONS), dtype=bool)
        shown[:, 0] = True
        shown[:, 1:] = levels > 0
        terms = np.zeros((len(levels), N_OPTIONS))
        terms[:, 1 + DEFERRAL_SLOT] = np.asarray(self.deferral_days, dtype=np.float64)[levels[:, DEFERRAL_SLOT]] / 30.0
        terms[:, 1 + PLAN_SLOT] = np.asarray(self.plan_installments, dtype=np.float64)[levels[:, PLAN_SLOT]] / 12.0
        terms[:, 1 + DISCOUNT_SLOT] = np.asarray(self.discounts, dtype=np.float64)[levels[:, DISCOUNT_SLOT]]
        return shown, terms


@dataclass
class MenuBatch:
    """Menu points: their observable context, the allowed levels, and the rule behind every capped one.

    Attributes:
        space: The menu space the mask refers to.
        menu_ids: Id of each menu point (logged as ``decision_id`` of its events).
        columns: The observable context (``kind`` is -1), each column of length ``B``.
        concessions: Discounts and waivers granted to each arrangement so far (observable: the ledger's).
        costs_waived: Whether each arrangement's collection costs were waived already.
        mask: Allowed levels, shape ``(B, space.mask_size)``; level 0 of every slot is always allowed.
        forbidden: Menu rule name to the levels it forbids, ``(B, space.mask_size)``; ``mask`` is the negation
            of their union.
    """

    space: MenuSpace
    menu_ids: NDArray[np.int64]
    columns: ContextColumns
    concessions: NDArray[np.int64]
    costs_waived: NDArray[np.bool_]
    mask: NDArray[np.bool_]
    forbidden: dict[str, NDArray[np.bool_]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.mask.shape[0])

    def slot_mask(self, slot: int) -> NDArray[np.bool_]:
        """The mask of one slot, shape ``(B, nvec[slot])``."""
        off, n = self.space.offsets[slot], self.space.nvec[slot]
        return self.mask[:, off : off + n]

    def masked_by(self, row: int) -> dict[tuple[int, int], tuple[str, ...]]:
        """For one menu point, ``(slot, level)`` of each capped level to the rules that cap it."""
        bounds = np.cumsum(self.space.nvec)
        out: dict[tuple[int, int], list[str]] = {}
        for name, f in self.forbidden.items():
            for j in np.flatnonzero(f[row]).tolist():
                slot = int(np.searchsorted(bounds, j, side="right"))
                out.setdefault((slot, j - self.space.offsets[slot]), []).append(name)
        return {k: tuple(v) for k, v in out.items()}

    def rule_names(self) -> list[str]:
        """Per menu point, the comma-separated names of the rules that capped something (as logged)."""
        names = sorted(self.forbidden)
        return [",".join(n for n in names if self.forbidden[n][i].any()) for i in range(len(self))]


@dataclass
class MenuDecisionBatch:
    """Menus for a :class:`MenuBatch`.

    Attributes:
        levels: The level of each slot, shape ``(B, 6)`` in :data:`SLOT_NAMES` order (0 = not shown).
        propensity: Probability the policy gave each whole menu, ``(B,)``.
    """

    levels: NDArray[np.int64]
    propensity: NDArray[np.float64]

    def __post_init__(self) -> None:
        self.levels = np.asarray(self.levels, dtype=np.int64).reshape(-1, len(SLOT_NAMES))
        self.propensity = np.asarray(self.propensity, dtype=np.float64).reshape(-1)
        if len(self.propensity) != len(self.levels):
            raise ValueError(f"propensity has {len(self.propensity)} rows but levels has {len(self.levels)}")

    def __len__(self) -> int:
        return int(self.levels.shape[0])


@runtime_checkable
class MenuPolicy(Protocol):
    """A policy that tailors self-service menus (the optional member of :class:`regsim.decision.Policy`)."""

    def decide_menu(self, menus: MenuBatch) -> MenuDecisionBatch:
        """The menu for each menu point; only allowed levels (``menus.mask``)."""
        ...


def default_menu(menus: MenuBatch) -> MenuDecisionBatch:
    """Today's rule-based menu: every slot at the highest level its rules allow (propensity 1)."""
    levels = np.zeros((len(menus), len(SLOT_NAMES)), dtype=np.int64)
    for slot in range(len(SLOT_NAMES)):
        m = menus.slot_mask(slot)
        levels[:, slot] = m.shape[1] - 1 - np.argmax(m[:, ::-1], axis=1)
    return MenuDecisionBatch(levels, np.ones(len(menus)))


def decide_menus(policy: object, menus: MenuBatch) -> MenuDecisionBatch:
    """Ask ``policy`` for menus: its ``decide_menu`` when it has one, else :func:`default_menu`."""
    if isinstance(policy, MenuPolicy):
        return policy.decide_menu(menus)
    return default_menu(menus)
