"""Menu policies for self-service (issue 18, mechanism 10): the rule-based menu, no menu, and a learning menu.

A menu policy answers ``decide_menu(menus) -> MenuDecisionBatch`` (:class:`regsim.menu.MenuPolicy`) and delegates
every arrangement decision (``decide_batch``, ``update``) to a *base* policy, ``static-dunning`` by default, so that
two menu policies on the same base differ in their menus only.

* ``rule-based-menu`` (:class:`RuleBasedMenu`): today's menu, fixed caps by history band as seeds/002 describes.
  It *is* :func:`regsim.menu.default_menu` (every slot at the highest level its rules allow: 10 deferral days for
  a reliable payer, 3 for a frequent late payer, and so on), which is also what a policy without ``decide_menu``
  gets; registering it names it, so a run's log and report say which menu was shown.
* ``no-menu`` (:class:`NoMenu`): every slot at level 0, so the page offers nothing and the debtor closes it: the
  imposed plan, the comparison "against the imposed plan" of the issue.
* ``menu-ts`` (:class:`MenuThompson`): a contextual bandit over the menu decomposed into its six slots, one
  linear Thompson-sampling head per slot over that slot's levels (:class:`agents.bandits.linear.RidgeArms`, the
  bandits' ridge statistics), on the bandits' feature design (:mod:`agents.bandits.design`) plus two menu
  features (concessions granted so far / 3, collection costs waived 0/1).

Propensity of a menu (``menu-ts``). The heads draw independently given the features, so the probability of the
whole menu is exactly the product of the slots' probabilities. Each slot's probability (that its chosen level has
the highest posterior draw among the allowed levels) has no closed form and is *estimated* by Monte Carlo as
:class:`agents.bandits.thompson.LinearTS` does: ``propensity_samples`` further draws per row, the share in which
the chosen level wins, at least ``1 / propensity_samples``. A slot with one allowed level has probability 1 exactly.

Learning (``menu-ts``). A menu's reward is its arrangement's :func:`regsim.rewards.runoff_value` (0.01 x net
recovery, concessions and staff cases charged, + 3.0 per completion) from the menu's moment to the end of the
run: the verdict's objective, to go. It is known only from the log, so the policy keeps each menu it drew
(design row, levels, balance) and learns at the end of each training run from that run's event log
(:meth:`MenuThompson.learn_from_run`, called by :func:`agents.online.train_online`; or :meth:`learn_from_log`).
Arrangements still open when the run stops give a truncated reward: a run of fewer months than
:func:`regsim.runoff.covering_months` cuts some menus' values to go short, a run that long (what ``regsim run``
gives an agent without ``train.months`` or ``env.months``) follows every arrangement to its end or its run-off cap,
so each menu learns its run-off value to go. The target of the regression is the reward per EUR 100 of the balance
at the menu (at least EUR 100): the balance is known when the menu is drawn, so dividing by it changes no argmax at a
context while a discount's cost,
proportional to the balance, becomes a constant a linear head can fit. Every head updates the level it chose with
the menu's reward, the other slots' contributions acting as noise (the pitfall stated in :mod:`agents.bandits.base`).

State and artifact: ``state.npz`` (arrays, no pickle) with every head's statistics, the counters and the
exploration generator's state, ``config.json`` of the hyperparameters, and a manifest of kind ``menu-ts``
(:mod:`agents.artifact`); the loader takes ``deterministic`` (greedy menus, propensity 1, nothing recorded;
an experiment agent's ``deterministic: true`` evaluates it so: it learns only from whole training runs, so drawing
in an evaluation, where it learns nothing, only costs).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray

from agents.bandits.base import masked_argmax
from agents.bandits.design import FeatureSet, design_columns, design_matrix, design_names
from agents.bandits.linear import RidgeArms
from agents.bandits.thompson import win_probability
from agents.base import BasePolicy
from agents.registry import make, register
from regsim.config import WorldConfig
from regsim.context import Context
from regsim.decision import ActionSpace, ContextBatch, Decision, DecisionBatch, Feedback, Policy
from regsim.eventlog import EventType, event_codes
from regsim.features import FEATURE_VERSION
from regsim.menu import SLOT_NAMES, MenuBatch, MenuDecisionBatch, default_menu
from regsim.rewards import OUTCOME_EVENTS, EventChunk, RewardCosts, runoff_value, tally

if TYPE_CHECKING:
    from regsim.simulate import SimulationResult

__all__ = ["MenuThompson", "MenuThompsonConfig", "NoMenu", "RuleBasedMenu", "menu_rewards"]

_STATE, _CONFIG = "state.npz", "config.json"
_STREAM_TAG = 0x4D454E55  # ASCII "MENU", mixed into the exploration seed
#: Extra design columns of a menu point beyond the bandits' design: concessions so far / 3, costs waived.
MENU_EXTRA = ("concessions_granted", "costs_waived")


class _MenuOnBase(BasePolicy):
    """A menu policy: arrangement decisions are the base policy's (see the module docstring)."""

    def __init__(self, base: str) -> None:
        if base in _MENU_NAMES:
            raise ValueError(f"base: a menu policy cannot be the base; got {base!r}")
        self.base_name = base
        self.base: Policy = make(base)

    @property
    def feedback_window_days(self) -> float | None:  # type: ignore[override]
        return self.base.feedback_window_days

    @property
    def feedback_reward(self) -> str:  # type: ignore[override]
        return self.base.feedback_reward

    def decide(self, context: Context) -> Decision:
        return self.base.decide(context)

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        return self.base.decide_batch(contexts)

    def update(self, feedback: Feedback) -> None:
        self.base.update(feedback)


@register("rule-based-menu")
class RuleBasedMenu(_MenuOnBase):
    """Today's rule-based menu (:func:`regsim.menu.default_menu`: fixed caps by history band), propensity 1.

    Args:
        base: The registered policy that takes the arrangement's own decisions.
    """

    name: ClassVar[str] = "rule-based-menu"
    version: ClassVar[str] = "1"

    def __init__(self, *, base: str = "static-dunning") -> None:
        super().__init__(base)

    def decide_menu(self, menus: MenuBatch) -> MenuDecisionBatch:
        """Every slot at the highest level its rules allow."""
        return default_menu(menus)


@register("no-menu")
class NoMenu(_MenuOnBase):
    """No menu: every slot at level 0, so the debtor who follows the link can only close the page (the imposed plan).

    Args:
        base: The registered policy that takes the arrangement's own decisions.
    """

    name: ClassVar[str] = "no-menu"
    version: ClassVar[str] = "1"

    def __init__(self, *, base: str = "static-dunning") -> None:
        super().__init__(base)

    def decide_menu(self, menus: MenuBatch) -> MenuDecisionBatch:
        """Nothing shown."""
        return MenuDecisionBatch(np.zeros((len(menus), len(SLOT_NAMES)), dtype=np.int64), np.ones(len(menus)))


@dataclass(frozen=True)
class MenuThompsonConfig:
    """Hyperparameters of :class:`MenuThompson` (validated; errors name the field)."""

    base: str = "static-dunning"
    """The registered policy that takes the arrangement's own decisions."""
    prior_variance: float = 1.0
    """Prior variance of every reward coefficient (> 0)."""
    noise_variance: float = 1.0
    """Reward noise variance (> 0); larger explores more."""
    propensity_samples: int = 256
    """Posterior draws per row for a slot's propensity estimate (>= 1)."""
    feature_set: FeatureSet = "compact"
    """The bandits' shared features: "compact" or "full"."""
    feedback_window_days: float = 14.0
    """The arrangement decisions' feedback window (days, > 0), passed to the base policy's ``update``; it also
    marks the policy as one :func:`agents.online.train_online` trains."""
    deterministic: bool = False
    """Greedy menus (propensity 1) and nothing recorded for learning: for evaluating a trained policy."""
    seed: int = 0
    """Seed of the policy's own exploration stream (>= 0)."""

    def __post_init__(self) -> None:
        for name in ("prior_variance", "noise_variance", "feedback_window_days"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if isinstance(self.propensity_samples, bool) or not isinstance(self.propensity_samples, int):
            raise ValueError(f"propensity_samples must be an integer >= 1, got {self.propensity_samples!r}")
        if self.propensity_samples < 1:
            raise ValueError(f"propensity_samples must be an integer >= 1, got {self.propensity_samples!r}")
        if self.feature_set not in ("compact", "full"):
            raise ValueError(f"feature_set must be 'compact' or 'full', got {self.feature_set!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")


@register("menu-ts")
class MenuThompson(_MenuOnBase):
    """A learning menu: linear Thompson sampling per menu slot (see the module docstring).

    Args:
        base: The registered policy that takes the arrangement's own decisions.
        prior_variance: Prior variance of every reward coefficient.
        noise_variance: Reward noise variance.
        propensity_samples: Posterior draws per row for each slot's propensity estimate.
        feature_set: ``"compact"`` or ``"full"`` (:mod:`agents.bandits.design`).
        feedback_window_days: The base policy's feedback window (days).
        deterministic: Greedy menus, nothing recorded (evaluation).
        seed: Seed of the exploration stream.

    Version History:
        * v1: Initial version.
    """

    name: ClassVar[str] = "menu-ts"
    version: ClassVar[str] = "1"

    def __init__(
        self,
        *,
        base: str = "static-dunning",
        prior_variance: float = 1.0,
        noise_variance: float = 1.0,
        propensity_samples: int = 256,
        feature_set: FeatureSet = "compact",
        feedback_window_days: float = 14.0,
        deterministic: bool = False,
        seed: int = 0,
    ) -> None:
        self.config = MenuThompsonConfig(
            base, prior_variance, noise_variance, propensity_samples, feature_set, feedback_window_days,
            deterministic, seed,
        )  # fmt: skip
        super().__init__(base)
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_TAG]))
        self.dim = 1 + len(design_columns(feature_set)) + len(MENU_EXTRA)
        self.arms: dict[str, RidgeArms] = {}
        self.nvec: tuple[int, ...] = ()
        self.decisions = 0
        self.learned = 0
        self._pending: list[tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]] = []

    @property
    def feedback_window_days(self) -> float | None:  # type: ignore[override]
        return self.config.feedback_window_days

    # -- deciding -----------------------------------------------------------------------------------------
    def design(self, menus: MenuBatch) -> NDArray[np.float64]:
        """The design rows of menu points, ``(B, dim)``: bias, the bandits' features, then :data:`MENU_EXTRA`."""
        n = len(menus)
        ctx = ContextBatch(_SPACE, menus.columns, np.ones((n, _SPACE.mask_size), dtype=bool))
        base = design_matrix(ctx, self.config.feature_set)
        extra = np.stack([np.minimum(menus.concessions, 3) / 3.0, menus.costs_waived.astype(np.float64)], axis=1)
        return np.concatenate([base, extra], axis=1)

    def decide_menu(self, menus: MenuBatch) -> MenuDecisionBatch:
        """Per slot, the allowed level with the highest posterior draw (or the highest mean when deterministic)."""
        n = len(menus)
        self._ensure_space(menus)
        X = self.design(menus)
        levels = np.zeros((n, len(SLOT_NAMES)), dtype=np.int64)
        propensity = np.ones(n)
        for slot, slot_name in enumerate(SLOT_NAMES):
            arms, available = self.arms[slot_name], menus.slot_mask(slot)
            mean = arms.mean(X)
            if self.config.deterministic:
                levels[:, slot] = masked_argmax(mean, available)
                continue
            sd = np.sqrt(self.config.noise_variance * arms.variance(X))
            pick = masked_argmax(mean + sd * self.rng.standard_normal(mean.shape), available)
            levels[:, slot] = pick
            single = available.sum(axis=1) == 1
            p = np.ones(n)
            if not single.all():
                many = np.flatnonzero(~single)
                p[many] = self._propensity(mean[many], sd[many], available[many], pick[many])
            propensity *= p
        if not self.config.deterministic and n:
            self.decisions += n
            balance = np.asarray(menus.columns["balance_eur"], dtype=np.float64)
            self._pending.append((np.asarray(menus.menu_ids, dtype=np.int64).copy(), X, levels.copy(), balance.copy()))
        return MenuDecisionBatch(levels, propensity)

    def _propensity(
        self,
        mean: NDArray[np.float64],
        sd: NDArray[np.float64],
        available: NDArray[np.bool_],
        arm: NDArray[np.int64],
    ) -> NDArray[np.float64]:
        """Monte Carlo estimate of each row's probability that ``arm`` wins (as ``LinearTS._propensity``)."""
        return win_probability(mean, sd, available, arm, self.config.propensity_samples, self.rng)

    def _ensure_space(self, menus: MenuBatch) -> None:
        nvec = tuple(int(v) for v in menus.space.nvec)
        if not self.arms:
            self._set_space(nvec)
        elif nvec != self.nvec:
            raise ValueError(f"{self.name}: menus of levels {nvec} but the policy was built for {self.nvec}")

    def _set_space(self, nvec: tuple[int, ...]) -> None:
        ridge = self.config.noise_variance / self.config.prior_variance
        self.nvec = nvec
        self.arms = {s: RidgeArms(k, self.dim, ridge) for s, k in zip(SLOT_NAMES, nvec, strict=True)}

    # -- learning -----------------------------------------------------------------------------------------
    def learn_from_run(self, result: SimulationResult) -> int:
        """Learn from a finished run's log (see :meth:`learn_from_log`); returns the menus learned from."""
        return self.learn_from_log(result.events, RewardCosts.of(result.world.config))

    def learn_from_log(self, events: pa.Table, costs: RewardCosts) -> int:
        """Learn from the menus this policy drew in the run that logged ``events``, then forget them.

        Each menu's reward is :func:`menu_rewards` (run-off value to go), divided by its balance in EUR 100
        (at least 1); every slot's head updates the level it chose.

        Returns:
            The number of menus learned from.
        """
        if not self._pending:
            return 0
        ids = np.concatenate([p[0] for p in self._pending])
        X = np.concatenate([p[1] for p in self._pending])
        levels = np.concatenate([p[2] for p in self._pending])
        balance = np.concatenate([p[3] for p in self._pending])
        self._pending = []
        rewards = menu_rewards(events, ids, costs)
        known = np.isfinite(rewards)
        if not known.any():
            return 0
        target = rewards[known] / np.maximum(balance[known] / 100.0, 1.0)
        for slot, slot_name in enumerate(SLOT_NAMES):
            self.arms[slot_name].update(levels[known, slot], X[known], target)
        self.learned += int(known.sum())
        return int(known.sum())

    # -- state, saving, loading ---------------------------------------------------------------------------
    def state_dict(self, arrays: bool = True) -> dict[str, Any]:
        """Counters, the generator's state, the levels per slot and every head's statistics (copies)."""
        state: dict[str, Any] = {
            "policy": self.name,
            "nvec": np.asarray(self.nvec, dtype=np.int64),
            "rng": json.dumps(self.rng.bit_generator.state),
            "decisions": self.decisions,
            "learned": self.learned,
        }
        for slot_name, arms in self.arms.items():
            state.update(arms.state_dict(slot_name, arrays))
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (values may be 0-d arrays, as ``numpy.load`` returns them).

        Raises:
            ValueError: The state is another policy's, or an array is missing or misshaped.
        """
        if str(np.asarray(state.get("policy"))) != self.name:
            raise ValueError(f"state is of policy {state.get('policy')!r}, not {self.name!r}")
        nvec = tuple(int(v) for v in np.asarray(state["nvec"]).tolist())
        self.arms, self.nvec = {}, ()
        if nvec:
            self._set_space(nvec)
            for slot_name, arms in self.arms.items():
                arms.load_state_dict(dict(state), slot_name)
        self.rng.bit_generator.state = json.loads(str(np.asarray(state["rng"])))
        self.decisions = int(np.asarray(state["decisions"]))
        self.learned = int(np.asarray(state["learned"]))

    def save(
        self,
        folder: Path,
        *,
        rules_version: str | None = None,
        training: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> Path:
        """Write ``state.npz`` (no pickle), ``config.json`` and a manifest of kind ``menu-ts``."""
        from agents.artifact import write_manifest
        from regsim.config import RulesConfig

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / _STATE, allow_pickle=False, **{k: np.asarray(v) for k, v in self.state_dict().items()})
        meta = {
            "policy": self.name,
            "version": self.version,
            "config": asdict(self.config),
            "feature_version": FEATURE_VERSION,
            "design": [*design_names(self.config.feature_set), *MENU_EXTRA],
        }
        (folder / _CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
        (folder / "manifest.json").unlink(missing_ok=True)
        write_manifest(
            folder,
            kind=self.name,
            policy_name=self.name,
            policy_version=self.version,
            rules_version=rules_version if rules_version is not None else RulesConfig().version,
            training=training or {},
            metrics=metrics or {},
        )
        return folder

    @classmethod
    def load(cls, folder: Path, *, deterministic: bool | None = None, seed: int | None = None) -> MenuThompson:
        """A policy saved by :meth:`save`; ``deterministic`` and ``seed`` override the saved ones when given.

        Raises:
            ValueError: Another policy, version or feature layout, or unknown hyperparameters.
        """
        folder = Path(folder)
        meta = json.loads((folder / _CONFIG).read_text())
        if meta.get("policy") != cls.name or meta.get("version") != cls.version:
            raise ValueError(
                f"{folder} holds {meta.get('policy')!r} v{meta.get('version')}, not {cls.name} v{cls.version}"
            )
        if meta.get("feature_version") != FEATURE_VERSION:
            raise ValueError(
                f"{folder} was trained on features {meta.get('feature_version')!r}, not {FEATURE_VERSION!r}"
            )
        config = dict(meta["config"])
        unknown = sorted(set(config) - set(MenuThompsonConfig.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{folder}/config.json has unknown hyperparameters {unknown}")
        if deterministic is not None:
            config["deterministic"] = deterministic
        policy = cls(**config)
        with np.load(folder / _STATE, allow_pickle=False) as data:
            policy.load_state_dict({k: data[k] for k in data.files})
        if seed is not None:  # a new exploration stream, after the saved one was restored
            policy.rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_TAG]))
        return policy


_MENU_NAMES = frozenset({"rule-based-menu", "no-menu", "menu-ts"})
_SPACE = ActionSpace.from_config(WorldConfig().decisions)
"""An arrangement action space, only to wrap a menu point's columns for :func:`regsim.features.features`
(which reads the columns, not the space)."""


def menu_rewards(events: pa.Table, menu_ids: NDArray[np.int64], costs: RewardCosts) -> NDArray[np.float64]:
    """Per menu (its ``menu_shown`` event's ``decision_id``), :func:`regsim.rewards.runoff_value` of its
    arrangement's outcome events from the menu's moment on; NaN for an id the log does not show.

    The events at the menu's own moment (the concession of a discount chosen on the page) count.
    """
    codes = event_codes(events)
    arr = events.column("arrangement_id").to_numpy()
    time = events.column("time").to_numpy()
    dec = events.column("decision_id").to_numpy(zero_copy_only=False)
    shown = np.flatnonzero(codes == EventType.MENU_SHOWN)
    menus = pd.DataFrame({"menu": dec[shown].astype(np.int64), "arr": arr[shown], "t": time[shown]})
    menus = menus.drop_duplicates("menu").set_index("menu").reindex(np.asarray(menu_ids, dtype=np.int64))
    out = np.full(len(menu_ids), np.nan)
    seen = np.flatnonzero(menus["arr"].notna().to_numpy())
    if not len(seen):
        return out
    m = pd.DataFrame({"row": np.arange(len(seen)), "arr": menus["arr"].to_numpy()[seen].astype(np.int64)})
    m["t"] = menus["t"].to_numpy()[seen]
    wanted = np.flatnonzero(np.isin(codes, np.array([int(e) for e in OUTCOME_EVENTS])) & np.isin(arr, m["arr"]))
    ev = pd.DataFrame({"i": wanted, "arr": arr[wanted], "te": time[wanted]})
    pairs = ev.merge(m, on="arr")
    pairs = pairs[pairs["te"] >= pairs["t"]]
    chunks: list[EventChunk] = []
    cols = [n for n in ("amount_eur", "deferral_days", "collection_costs_eur") if n in events.column_names]
    for code in np.unique(codes[pairs["i"].to_numpy()]):
        sel = pairs[codes[pairs["i"].to_numpy()] == code]
        take = pa.array(sel["i"].to_numpy())
        values = {
            n: np.nan_to_num(events.column(n).take(take).to_numpy(zero_copy_only=False).astype(np.float64))
            for n in cols
        }
        chunks.append((EventType(int(code)), sel["row"].to_numpy(dtype=np.int64), values))
    o = tally(chunks, len(seen), np.zeros(len(seen)), np.zeros(len(seen)))
    out[seen] = runoff_value(o, costs)
    return out


def _register_loader() -> None:
    from agents.artifact import Manifest, register_loader

    def loader(folder: Path, manifest: Manifest, **kwargs: Any) -> MenuThompson:
        unknown = sorted(set(kwargs) - {"deterministic", "seed"})
        if unknown:
            raise TypeError(f"a menu-ts artifact takes the loading options deterministic and seed; got {unknown}")
        return MenuThompson.load(folder, **kwargs)

    with contextlib.suppress(ValueError):  # registered already
        register_loader("menu-ts")(loader)


_register_loader()
