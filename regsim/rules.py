"""Business rules as data (docs/calibration.md, "Real-world rules").

Each rule is a small object with a ``name`` and a vectorised ``forbid(batch)`` returning the options it
forbids for every row of a :class:`~regsim.decision.ContextBatch`. A :class:`RuleSet` built from
:class:`~regsim.config.RulesConfig` applies them all, records per rule what it masked (so every masked action
says why), and refuses decisions that choose a forbidden option with a
:class:`~regsim.decision.RuleViolation` naming the rule.

Rules see only the context's observable columns, so the server applies exactly the same rules to live
arrangements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray

from regsim.config import HistoryTier, RulesConfig
from regsim.config_self_service import SelfServiceConfig
from regsim.decision import (
    CHANNEL,
    DEFERRAL,
    PART_NAMES,
    REDUCTION,
    REMINDER_KINDS,
    SEND_SLOT,
    ActionSpace,
    ContextBatch,
    DecisionBatch,
    DecisionKind,
    RuleViolation,
)
from regsim.menu import (
    DEFERRAL_SLOT,
    DISCOUNT_SLOT,
    PLAN_SLOT,
    SLOT_NAMES,
    WAIVER_SLOT,
    MenuBatch,
    MenuDecisionBatch,
    MenuSpace,
)

__all__ = ["MenuRule", "MenuRuleSet", "Rule", "RuleSet"]

_REMINDER_KINDS = np.array(sorted(REMINDER_KINDS), dtype=np.int64)


class Rule(Protocol):
    """A business rule: which options it forbids in each row of a batch."""

    @property
    def name(self) -> str:
        """The rule's name, as recorded for every option it masks."""
        ...

    def forbid(self, batch: ContextBatch) -> NDArray[np.bool_]:
        """Forbidden options, shape ``(B, mask_size)``."""
        ...


def _empty(batch: ContextBatch) -> NDArray[np.bool_]:
    return np.zeros((len(batch), batch.space.mask_size), dtype=bool)


def _part_slice(space: ActionSpace, part: int) -> slice:
    off = space.offsets[part]
    return slice(off, off + space.nvec[part])


def _on_time_share(batch: ContextBatch | MenuBatch) -> NDArray[np.float64]:
    """Share of due installments paid on time; 1.0 (top tier) for an arrangement with none due yet."""
    due = batch.columns["installments_due"].astype(np.float64)
    on_time = batch.columns["on_time"].astype(np.float64)
    return np.where(due > 0, on_time / np.maximum(due, 1.0), 1.0)


def _tier_cap(share: NDArray[np.float64], tiers: tuple[HistoryTier, ...]) -> NDArray[np.float64]:
    cap = np.full(share.shape, tiers[-1].value)
    for tier in reversed(tiers[:-1]):
        cap = np.where(share >= tier.min_on_time_share, tier.value, cap)
    return cap


@dataclass(frozen=True)
class NotApplicable:
    """Parts that do not apply at a decision point allow only their "no change" option."""

    table: NDArray[np.bool_]
    name: ClassVar[str] = "not_applicable"

    def forbid(self, batch: ContextBatch) -> NDArray[np.bool_]:
        return ~self.table[batch.columns["kind"].astype(np.int64)]


@dataclass(frozen=True)
class ContactCap:
    """At most ``max_per_week`` contacts per debtor in any 7 days."""

    max_per_week: int
    name: ClassVar[str] = "contact_cap"

    def forbid(self, batch: ContextBatch) -> NDArray[np.bool_]:
        out = _empty(batch)
        capped = batch.columns["contacts_7d"] >= self.max_per_week
        sl = _part_slice(batch.space, CHANNEL)
        out[capped, sl.start + 1 : sl.stop] = True
        return out


@dataclass(frozen=True)
class QuietHours:
    """No contact before ``before`` or from ``after`` on (a send slot at such an hour is masked).

    Quiet *days* do not mask: a message whose slot falls on one is sent on the next allowed day at the same
    hour (see :meth:`RuleSet.send_time`), as dunning systems queue them. The mask is therefore the same at
    every decision point. When every slot is at a quiet hour, slot 0 is left allowed and every contact
    channel is forbidden instead, so that "no contact" remains a valid action.
    """

    before: int
    after: int
    name: ClassVar[str] = "quiet_hours"

    def forbid(self, batch: ContextBatch) -> NDArray[np.bool_]:
        out = _empty(batch)
        hours = np.array([s.hour for s in batch.space.send_slots])
        bad = np.broadcast_to((hours < self.before) | (hours >= self.after), (len(batch), len(hours))).copy()
        none_left = bad.all(axis=1)
        bad[none_left, 0] = False
        out[:, _part_slice(batch.space, SEND_SLOT)] = bad
        ch = _part_slice(batch.space, CHANNEL)
        out[none_left, ch.start + 1 : ch.stop] = True
        return out


@dataclass(frozen=True)
class OptOut:
    """No contact through a channel the debtor opted out of."""

    name: ClassVar[str] = "opt_out"

    def forbid(self, batch: ContextBatch) -> NDArray[np.bool_]:
        out = _empty(batch)
        sl = _part_slice(batch.space, CHANNEL)
        out[:, sl.start + 1 : sl.stop] = batch.columns["opted_out"].astype(bool)
        return out


@dataclass(frozen=True)
class PaidInstallment:
    """Never a reminder for an installment already paid (status sync)."""

    name: ClassVar[str] = "paid_installment"

    def forbid(self, batch: ContextBatch) -> NDArray[np.bool_]:
        out = _empty(batch)
        hit = batch.columns["target_paid"].astype(bool) & np.isin(batch.columns["kind"], _REMINDER_KINDS)
        sl = _part_slice(batch.space, CHANNEL)
        out[hit, sl.start + 1 : sl.stop] = True
        return out


@dataclass(frozen=True)
class DeferralCap:
    """Deferral days capped by payment history, and a cap on deferrals per arrangement."""

    tiers: tuple[HistoryTier, ...]
    max_count: int
    name: ClassVar[str] = "deferral_cap"

    def forbid(self, batch: ContextBatch) -> NDArray[np.bool_]:
        out = _empty(batch)
        days = np.array(batch.space.deferral_days, dtype=np.float64)
        cap = _tier_cap(_on_time_share(batch), self.tiers)
        cap = np.where(batch.columns["deferrals"] >= self.max_count, 0.0, cap)
        out[:, _part_slice(batch.space, DEFERRAL)] = days[None, :] > cap[:, None]
        return out


@dataclass(frozen=True)
class ReductionCap:
    """Reduction capped by payment history, a cap on reductions, and on the plan's total length."""

    tiers: tuple[HistoryTier, ...]
    max_count: int
    max_total_installments: int
    name: ClassVar[str] = "reduction_cap"

    def forbid(self, batch: ContextBatch) -> NDArray[np.bool_]:
        out = _empty(batch)
        fractions = np.array(batch.space.reduction_fractions, dtype=np.float64)
        cap = _tier_cap(_on_time_share(batch), self.tiers)
        cap = np.where(batch.columns["reductions"] >= self.max_count, 0.0, cap)
        too_much = fractions[None, :] > cap[:, None] + 1e-12
        # A reduction re-spreads the balance over more installments; the plan may not grow past the cap.
        amount = np.maximum(batch.columns["installment_eur"], 1e-9)[:, None] * (1.0 - fractions[None, :])
        new_total = batch.columns["installments_paid"][:, None] + np.ceil(
            batch.columns["balance_eur"][:, None] / amount - 1e-9
        )
        too_long = (new_total > self.max_total_installments) & (fractions[None, :] > 0)
        out[:, _part_slice(batch.space, REDUCTION)] = too_much | too_long
        return out


class RuleSet:
    """The business rules of a world, applied to batches of contexts.

    Args:
        config: The rules section of the world config.
        space: The action space the masks refer to.
    """

    def __init__(self, config: RulesConfig, space: ActionSpace) -> None:
        self.config = config
        self.space = space
        self.version = config.version
        rules: list[Rule] = [NotApplicable(space.applicable())]
        if config.contact_cap_enabled:
            rules.append(ContactCap(config.max_contacts_per_week))
        if config.quiet_hours_enabled:
            rules.append(QuietHours(config.quiet_before_hour, config.quiet_from_hour))
        if config.opt_out_enabled:
            rules.append(OptOut())
        if config.paid_installment_enabled:
            rules.append(PaidInstallment())
        if config.history_caps_enabled:
            rules.append(DeferralCap(config.max_deferral_days, config.max_deferrals))
            rules.append(ReductionCap(config.max_reduction, config.max_reductions, config.max_total_installments))
        self.rules: tuple[Rule, ...] = tuple(rules)

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the active rules, in the order they are applied."""
        return tuple(r.name for r in self.rules)

    def apply(self, batch: ContextBatch) -> ContextBatch:
        """Fill ``batch.mask`` and ``batch.forbidden`` from the rules (in place; returns the batch).

        Option 0 of each part ("no contact / no change"; slot 0) is never forbidden except by the
        applicability table, which always allows it, so every row keeps at least one valid action.
        """
        forbidden = {rule.name: rule.forbid(batch) for rule in self.rules}
        keep = np.zeros(self.space.mask_size, dtype=bool)
        for part, off in enumerate(self.space.offsets):
            if part != SEND_SLOT:
                keep[off] = True
        union = np.zeros((len(batch), self.space.mask_size), dtype=bool)
        for name, f in forbidden.items():
            f &= ~keep
            forbidden[name] = f
            union |= f
        batch.forbidden = {k: v for k, v in forbidden.items() if v.any()}
        batch.mask = ~union
        return batch

    def send_time(
        self, day: int | NDArray[np.int64], weekday: int | NDArray[np.int64], slots: NDArray[np.integer]
    ) -> NDArray[np.float64]:
        """When each slot's message goes out: the slot's time, moved past quiet days (same hour).

        ``day`` and ``weekday`` are the decision's, or each decision's own (aligned with ``slots``).
        """
        t = slot_send_time(self.space, np.full(len(slots), day), slots)
        if not (self.config.quiet_hours_enabled and self.config.quiet_weekdays):
            return t
        quiet = np.zeros(7, dtype=bool)
        quiet[list(self.config.quiet_weekdays)] = True
        if quiet.all():
            return t
        for _ in range(7):
            on_quiet = quiet[(weekday + np.floor(t).astype(np.int64) - day) % 7]
            if not on_quiet.any():
                break
            t = t + on_quiet
        return t

    def normalise(self, batch: ContextBatch, decisions: DecisionBatch) -> DecisionBatch:
        """Decisions with their no-effect parts canonical (see :meth:`ActionSpace.normalise`)."""
        if len(decisions) != len(batch):
            raise ValueError(f"{len(decisions)} decisions for {len(batch)} contexts")
        first_slot = np.argmax(batch.part_mask(SEND_SLOT), axis=1).astype(np.int64)
        actions = self.space.normalise(batch.columns["kind"], decisions.actions, first_slot)
        return DecisionBatch(actions, decisions.propensity)

    def check(self, batch: ContextBatch, decisions: DecisionBatch) -> None:
        """Refuse decisions that choose a masked option.

        Raises:
            RuleViolation: For the first offending row, naming the rule(s), the part, the option and the
                allowed options of that part.
        """
        if len(decisions) != len(batch):
            raise ValueError(f"{len(decisions)} decisions for {len(batch)} contexts")
        nvec = np.array(self.space.nvec)
        acts = decisions.actions
        out_of_range = (acts < 0) | (acts >= nvec[None, :])
        if out_of_range.any():
            row, part = map(int, np.argwhere(out_of_range)[0])
            raise RuleViolation(
                f"decision {row}: {PART_NAMES[part]}={int(acts[row, part])} is not an option; "
                f"allowed: 0..{int(nvec[part]) - 1}",
                rules=("action_space",),
            )
        flat = acts + np.array(self.space.offsets)[None, :]
        ok = np.take_along_axis(batch.mask, flat, axis=1)
        if ok.all():
            return
        row, part = map(int, np.argwhere(~ok)[0])
        option = int(acts[row, part])
        rules = [name for name, f in batch.forbidden.items() if f[row, flat[row, part]]]
        labels = self.space.option_labels(part)
        allowed = [labels[j] for j in np.flatnonzero(batch.part_mask(part)[row])]
        kind = DecisionKind(int(batch.columns["kind"][row])).name
        raise RuleViolation(
            f"decision for arrangement {int(batch.columns['arrangement_id'][row])} at {kind} breaks rule "
            f"{' and '.join(repr(r) for r in rules)}: {PART_NAMES[part]}={labels[option]!r} is masked; "
            f"allowed {PART_NAMES[part]}: {allowed}",
            rules=rules,
        )


def slot_send_time(space: ActionSpace, day: NDArray[np.integer], slot: NDArray[np.integer]) -> NDArray[np.float64]:
    """Send time (days since the start) of each decision's slot, before any quiet-day shift."""
    offsets = np.array([s.day_offset for s in space.send_slots], dtype=np.float64)
    hours = np.array([s.hour for s in space.send_slots], dtype=np.float64)
    return np.asarray(day, dtype=np.float64) + offsets[slot] + hours[slot] / 24.0


# ==========================================================================================================
# Menu rules (self-service, regsim.menu): the same style, on a MenuBatch's levels
# ==========================================================================================================
class MenuRule(Protocol):
    """A business rule of the self-service menu: which levels it forbids in each row of a menu batch."""

    @property
    def name(self) -> str:
        """The rule's name, as recorded for every level it caps."""
        ...

    def forbid(self, batch: MenuBatch) -> NDArray[np.bool_]:
        """Forbidden levels, shape ``(B, space.mask_size)``."""
        ...


def _slot_slice(space: MenuSpace, slot: int) -> slice:
    off = space.offsets[slot]
    return slice(off, off + space.nvec[slot])


def _menu_empty(batch: MenuBatch) -> NDArray[np.bool_]:
    return np.zeros((len(batch), batch.space.mask_size), dtype=bool)


@dataclass(frozen=True)
class MenuDeferralCap:
    """Deferral days capped by payment history (seeds/002: reliable 10 days, frequent late payer 3), and no
    deferral once ``max_count`` deferrals were granted (the arrangement rules' ``max_deferrals``)."""

    tiers: tuple[HistoryTier, ...]
    max_count: int
    name: ClassVar[str] = "menu_deferral_cap"

    def forbid(self, batch: MenuBatch) -> NDArray[np.bool_]:
        out = _menu_empty(batch)
        days = np.array(batch.space.deferral_days, dtype=np.float64)
        cap = _tier_cap(_on_time_share(batch), self.tiers)
        cap = np.where(batch.columns["deferrals"] >= self.max_count, 0.0, cap)
        out[:, _slot_slice(batch.space, DEFERRAL_SLOT)] = days[None, :] > cap[:, None]
        return out


@dataclass(frozen=True)
class MenuPlanCap:
    """A new plan's length capped by payment history, and the whole plan by ``max_total_installments``."""

    tiers: tuple[HistoryTier, ...]
    max_total_installments: int
    name: ClassVar[str] = "menu_plan_cap"

    def forbid(self, batch: MenuBatch) -> NDArray[np.bool_]:
        out = _menu_empty(batch)
        n = np.array(batch.space.plan_installments, dtype=np.float64)
        cap = _tier_cap(_on_time_share(batch), self.tiers)
        total = batch.columns["installments_paid"].astype(np.float64)[:, None] + n[None, :]
        out[:, _slot_slice(batch.space, PLAN_SLOT)] = (n[None, :] > cap[:, None]) | (
            total > self.max_total_installments
        )
        return out


@dataclass(frozen=True)
class MenuDiscountCap:
    """The discount capped by payment history (the seed's "maximum discount")."""

    tiers: tuple[HistoryTier, ...]
    name: ClassVar[str] = "menu_discount_cap"

    def forbid(self, batch: MenuBatch) -> NDArray[np.bool_]:
        out = _menu_empty(batch)
        fractions = np.array(batch.space.discounts, dtype=np.float64)
        cap = _tier_cap(_on_time_share(batch), self.tiers)
        out[:, _slot_slice(batch.space, DISCOUNT_SLOT)] = fractions[None, :] > cap[:, None] + 1e-12
        return out


@dataclass(frozen=True)
class MenuWaiverRule:
    """A waiver of collection costs only from an on-time share, and never twice."""

    min_on_time_share: float
    name: ClassVar[str] = "menu_waiver_rule"

    def forbid(self, batch: MenuBatch) -> NDArray[np.bool_]:
        out = _menu_empty(batch)
        no = (_on_time_share(batch) < self.min_on_time_share) | batch.costs_waived
        out[no, batch.space.offsets[WAIVER_SLOT] + 1] = True
        return out


@dataclass(frozen=True)
class MenuConcessionCap:
    """At most ``max_count`` concessions (discounts and waivers) per arrangement."""

    max_count: int
    name: ClassVar[str] = "menu_concession_cap"

    def forbid(self, batch: MenuBatch) -> NDArray[np.bool_]:
        out = _menu_empty(batch)
        full = batch.concessions >= self.max_count
        out[full, batch.space.offsets[WAIVER_SLOT] + 1] = True
        sl = _slot_slice(batch.space, DISCOUNT_SLOT)
        out[full, sl.start + 1 : sl.stop] = True
        return out


class MenuRuleSet:
    """The business rules of the self-service menu, applied to menu batches.

    Args:
        config: The ``self_service`` section (the menu's caps).
        rules: The ``rules`` section (the arrangement caps the menu shares: deferrals, plan length).
        space: The menu space the masks refer to.
    """

    def __init__(self, config: SelfServiceConfig, rules: RulesConfig, space: MenuSpace) -> None:
        self.space = space
        self.rules: tuple[MenuRule, ...] = (
            MenuDeferralCap(config.max_deferral_days, rules.max_deferrals),
            MenuPlanCap(config.max_plan_installments, rules.max_total_installments),
            MenuWaiverRule(config.waiver_min_on_time_share),
            MenuDiscountCap(config.max_discount),
            MenuConcessionCap(config.max_concessions),
        )

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the menu rules, in the order they are applied."""
        return tuple(r.name for r in self.rules)

    def apply(self, batch: MenuBatch) -> MenuBatch:
        """Fill ``batch.mask`` and ``batch.forbidden`` (in place; returns the batch); level 0 stays allowed."""
        keep = np.zeros(self.space.mask_size, dtype=bool)
        keep[list(self.space.offsets)] = True
        union = np.zeros((len(batch), self.space.mask_size), dtype=bool)
        forbidden = {}
        for rule in self.rules:
            f = rule.forbid(batch) & ~keep
            if f.any():
                forbidden[rule.name] = f
                union |= f
        batch.forbidden = forbidden
        batch.mask = ~union
        return batch

    def check(self, batch: MenuBatch, menus: MenuDecisionBatch) -> None:
        """Refuse menus that show a capped level.

        Raises:
            RuleViolation: For the first offending row, naming the rule(s), the slot, the level and the levels
                that slot allows.
        """
        if len(menus) != len(batch):
            raise ValueError(f"{len(menus)} menus for {len(batch)} menu points")
        nvec = np.array(self.space.nvec)
        lv = menus.levels
        bad = (lv < 0) | (lv >= nvec[None, :])
        if bad.any():
            row, slot = map(int, np.argwhere(bad)[0])
            raise RuleViolation(
                f"menu {row}: {SLOT_NAMES[slot]}={int(lv[row, slot])} is not a level; allowed: 0..{nvec[slot] - 1}",
                rules=("menu_space",),
            )
        flat = lv + np.array(self.space.offsets)[None, :]
        ok = np.take_along_axis(batch.mask, flat, axis=1)
        if ok.all():
            return
        row, slot = map(int, np.argwhere(~ok)[0])
        rules = [name for name, f in batch.forbidden.items() if f[row, flat[row, slot]]]
        labels = self.space.level_labels(slot)
        allowed = [labels[j] for j in np.flatnonzero(batch.slot_mask(slot)[row])]
        raise RuleViolation(
            f"menu for arrangement {int(batch.columns['arrangement_id'][row])} breaks rule "
            f"{' and '.join(repr(r) for r in rules)}: {SLOT_NAMES[slot]}={labels[int(lv[row, slot])]!r} is capped; "
            f"allowed {SLOT_NAMES[slot]}: {allowed}",
            rules=rules,
        )
