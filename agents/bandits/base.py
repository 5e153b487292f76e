"""The shared machinery of the linear contextual bandits: configuration, heads, decisions, learning, saving.

A :class:`LinearBandit` keeps one :class:`~agents.bandits.linear.RidgeArms` per head
(:mod:`agents.bandits.heads`) over the design matrix of :mod:`agents.bandits.design`. Subclasses only say how a
head picks an arm from the estimates and with what probability (:meth:`LinearBandit._choose`).

Decisions. For every head active in a row, the head picks one of the row's available arms; the row's action is
the heads' arms put together, with parts no active head sets at their first allowed option. The reported
propensity is the product over the active heads of the probability the head gave its arm (the heads choose
independently given the features).

Learning. The bandits are online learners in the sense of :mod:`regsim.feedback`: their positive
``feedback_window_days`` makes the world call :meth:`LinearBandit.update` every evening with the decisions whose
outcome window has closed. The reward is ``feedback_reward`` = ``"collected"`` (:func:`regsim.rewards.collected`:
euros collected in the window minus the decision's cost and a breakdown's cost, scaled by 0.01). Every head active
in a row updates the arm it chose with the row's reward, so each head learns the reward's dependence on its own
choice with the other heads' contributions as noise.

Pitfall of the shared reward: that noise is not stationary. As the other heads learn, their contribution to
the reward changes, and an arm that was tried early and then abandoned keeps an estimate from an era of
worse partners; with a deterministic rule (LinUCB) and long feedback delays this can leave a few contexts on
a second-best arm (see ``test_thompson_sampling_reaches_the_optimum_with_long_delays``). Randomised rules
(Thompson sampling, epsilon-greedy) decorrelate the heads' choices and suffer less. Decisions
whose window was cut short by the end of observation (``feedback.censored``) are dropped by default
(``censored="drop"``: their reward is truncated, a downward-biased sample) or used as they are
(``censored="use"``).

State. :meth:`LinearBandit.state_dict` returns plain arrays and scalars (statistics of every head, counters, the
action space and the exploration generator's state); :meth:`LinearBandit.save` writes them with ``numpy.savez``
(no pickle) beside a ``config.json`` of the constructor arguments, and :meth:`LinearBandit.load` restores a
policy that decides bit for bit as the saved one would have.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from agents.bandits.design import FeatureSet, design_columns, design_matrix, design_names
from agents.bandits.heads import Head, build_heads, first_allowed_options
from agents.bandits.linear import RidgeArms
from agents.base import BasePolicy
from regsim.config import SendSlot
from regsim.decision import PART_NAMES, ActionSpace, ContextBatch, DecisionBatch, Feedback
from regsim.features import FEATURE_VERSION, feature_names

__all__ = ["BanditConfig", "CensoredHandling", "LinearBandit", "load_bandit"]

CensoredHandling = Literal["drop", "use"]

#: File names of a saved bandit.
STATE_FILE, CONFIG_FILE = "state.npz", "config.json"

#: Scalars and arrays of a state dict.
StateValue = NDArray[Any] | int | float | str

#: A head's choice rule: (statistics, design rows, available arms) -> (chosen arm, its probability) per row.
Chooser = Callable[[RidgeArms, NDArray[np.float64], NDArray[np.bool_]], tuple[NDArray[np.int64], NDArray[np.float64]]]

#: Tag mixed into the seed of every bandit's exploration stream (ASCII "BAND").
_STREAM_TAG = 0x42414E44


@dataclass(frozen=True)
class BanditConfig:
    """Hyperparameters every bandit shares (validated on construction; errors name the field)."""

    feedback_window_days: float = 14.0
    """How long after a decision its reward is collected before the world feeds it back (days, > 0)."""
    censored: CensoredHandling = "drop"
    """What to do with decisions whose window was cut short by the end of observation: "drop" or "use"."""
    feature_set: FeatureSet = "compact"
    """Which shared features the heads see: "compact" (21 + bias) or "full" (64 + bias)."""
    seed: int = 0
    """Seed of the bandit's own exploration stream (independent of the world's streams), >= 0."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.feedback_window_days) and self.feedback_window_days > 0):
            raise ValueError(
                f"feedback_window_days must be a finite number of days > 0, got {self.feedback_window_days}"
            )
        if self.censored not in ("drop", "use"):
            raise ValueError(f"censored must be 'drop' or 'use', got {self.censored!r}")
        if self.feature_set not in ("compact", "full"):
            raise ValueError(f"feature_set must be 'compact' or 'full', got {self.feature_set!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")

    @staticmethod
    def _check_positive(name: str, value: float) -> None:
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value}")


_BANDITS: dict[str, type[LinearBandit]] = {}


class LinearBandit(BasePolicy):
    """Base of the linear contextual bandits (see the module docstring); not registered itself.

    Subclasses set ``name``, ``version`` and ``config_class``, build their config from keyword arguments,
    return the ridge penalty of their statistics from :meth:`_ridge`, and implement :meth:`_choose`.

    Attributes:
        config: The validated hyperparameters.
        feedback_window_days: Copied from the config; makes the world feed outcomes back (an online learner).
        heads: The heads, once an action space is known (first batch decided or learned from).
        arms: The ridge statistics of each head, by head name.
        decisions: Decisions taken so far (rows).
        learned: Feedback rows learned from so far.
        dropped: Censored feedback rows dropped so far.
    """

    name: ClassVar[str] = "linear-bandit"
    version: ClassVar[str] = "1"
    config_class: ClassVar[type[BanditConfig]] = BanditConfig

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _BANDITS[cls.name] = cls

    def __init__(self, config: BanditConfig) -> None:
        self.config = config
        self.feedback_window_days = config.feedback_window_days
        self.rng = np.random.default_rng(np.random.SeedSequence([config.seed, _STREAM_TAG]))
        self.dim = 1 + len(design_columns(config.feature_set))
        self.space: ActionSpace | None = None
        self.heads: tuple[Head, ...] = ()
        self.arms: dict[str, RidgeArms] = {}
        self.decisions = 0
        self.learned = 0
        self.dropped = 0
        # The last JSON of the space and of the generator's state, by what they encode (see state_dict).
        self._space_text: tuple[ActionSpace, str] | None = None
        self._rng_text: tuple[Mapping[str, Any], str] | None = None

    # ------------------------------------------------------------------------------------------------------
    # What subclasses provide
    # ------------------------------------------------------------------------------------------------------
    def _ridge(self) -> float:  # pragma: no cover - abstract
        """The ridge penalty of the heads' statistics."""
        raise NotImplementedError

    def _choose(
        self, arms: RidgeArms, X: NDArray[np.float64], available: NDArray[np.bool_]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:  # pragma: no cover - abstract
        """One head's choice in ``n`` rows: the arm (never an unavailable one) and its probability.

        Args:
            arms: The head's statistics.
            X: Design rows, shape ``(n, dim)``.
            available: Which arms each row may choose, shape ``(n, n_arms)``; every row has one at least.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------------
    # Deciding
    # ------------------------------------------------------------------------------------------------------
    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        """Decisions for a batch, each head exploring by the subclass's rule (vectorised over rows)."""
        return self._decide(contexts, self._choose)

    def exploit(self, contexts: ContextBatch) -> DecisionBatch:
        """Greedy decisions: in every head the available arm of highest estimated reward (propensity 1).

        Draws nothing from the exploration stream; ties go to the lowest arm index.
        """

        return self._decide(contexts, _greedy, count=False)

    def greedy_actions(self, contexts: ContextBatch, observations: NDArray[np.floating]) -> NDArray[np.int64]:
        """The greedy actions of :meth:`exploit`, with given feature rows in place of the contexts' own.

        For measuring what drives the bandit's choices (permutation importance,
        ``experiments.analysis.feature_importance``): the contexts supply the masks and decision kinds, the
        ``observations`` the features, so ``greedy_actions(c, regsim.features.features(c))`` equals
        ``exploit(c).actions``. Draws nothing and counts no decisions.

        Args:
            contexts: The decision contexts, ``B`` rows.
            observations: Feature rows in the layout of :func:`regsim.features.features`, shape ``(B, n)``.

        Returns:
            Actions, shape ``(B, 5)``.
        """
        obs = np.asarray(observations, dtype=np.float64)
        if obs.shape != (len(contexts), len(feature_names())):
            raise ValueError(f"observations must have shape {(len(contexts), len(feature_names()))}, got {obs.shape}")
        X = np.empty((len(contexts), self.dim), dtype=np.float64)
        X[:, 0] = 1.0  # the bias column of agents.bandits.design
        X[:, 1:] = obs[:, design_columns(self.config.feature_set)]
        return self._decide(contexts, _greedy, count=False, X=X).actions

    def _decide(
        self, contexts: ContextBatch, choose: Chooser, count: bool = True, X: NDArray[np.float64] | None = None
    ) -> DecisionBatch:
        n = len(contexts)
        if n == 0:
            return DecisionBatch(np.zeros((0, len(PART_NAMES)), dtype=np.int64), np.zeros(0))
        self._ensure_space(contexts.space)
        if X is None:
            X = design_matrix(contexts, self.config.feature_set)
        kinds = np.asarray(contexts.columns["kind"], dtype=np.intp)
        mask = contexts.mask
        first = first_allowed_options(mask, contexts.space)
        actions = first.copy()
        propensity = np.ones(n)
        for head in self.heads:
            active = head.active_at[kinds]
            if not active.any():
                continue
            rows = np.flatnonzero(active)
            whole = len(rows) == n
            available = head.available(
                mask if whole else mask[rows], kinds if whole else kinds[rows], first if whole else first[rows]
            )
            arm, p = choose(self.arms[head.name], X if whole else X[rows], available)
            head.write(actions, rows, arm, first if whole else first[rows])
            propensity[rows] *= p
        if count:
            self.decisions += n
        return DecisionBatch(actions, propensity)

    # ------------------------------------------------------------------------------------------------------
    # Learning
    # ------------------------------------------------------------------------------------------------------
    def update(self, feedback: Feedback) -> None:
        """Learn from matured decisions: every active head updates the arm it chose with the row's reward.

        Rows with ``feedback.censored`` are dropped unless the config says ``censored="use"``.

        Raises:
            ValueError: A reward is not finite, or the feedback's action space is not the bandit's.
        """
        rewards = np.asarray(feedback.rewards, dtype=np.float64)
        if not len(rewards):
            return
        if not np.isfinite(rewards).all():
            raise ValueError("feedback.rewards must be finite")
        contexts, actions = feedback.contexts, np.asarray(feedback.actions, dtype=np.int64)
        self._ensure_space(contexts.space)
        censored = np.asarray(feedback.censored, dtype=bool)
        if self.config.censored == "drop" and censored.any():
            keep = np.flatnonzero(~censored)
            self.dropped += len(rewards) - len(keep)
            if not len(keep):
                return
            contexts, actions, rewards = contexts.take(keep), actions[keep], rewards[keep]
        X = design_matrix(contexts, self.config.feature_set)
        kinds = np.asarray(contexts.columns["kind"], dtype=np.intp)
        for head in self.heads:
            rows = np.flatnonzero(head.active_at[kinds])
            arms = head.arms_of(actions[rows])
            ok = arms >= 0
            self.arms[head.name].update(arms[ok], X[rows[ok]], rewards[rows[ok]])
        self.learned += len(rewards)

    # ------------------------------------------------------------------------------------------------------
    # The action space (known from the first batch)
    # ------------------------------------------------------------------------------------------------------
    def _ensure_space(self, space: ActionSpace) -> None:
        if self.space is space:
            return
        if self.space is None:
            self._set_space(space)
            return
        if space != self.space:
            raise ValueError(f"{self.name}: contexts of action space {space} but the bandit was built for {self.space}")
        self.space = space  # an equal object (e.g. the world's, after loading): compare by identity next time

    def _set_space(self, space: ActionSpace) -> None:
        self.space = space
        self.heads = build_heads(space)
        self.arms = {h.name: RidgeArms(h.n_arms, self.dim, self._ridge()) for h in self.heads}

    # ------------------------------------------------------------------------------------------------------
    # State, saving and loading
    # ------------------------------------------------------------------------------------------------------
    def state_dict(self, arrays: bool = True) -> dict[str, StateValue]:
        """Everything that changes as the bandit decides and learns, as arrays and scalars (copies).

        Keys: ``policy`` (name), ``space`` (the action space as JSON, "" before the first batch), ``rng``
        (the exploration generator's ``bit_generator.state`` as JSON), the counters ``decisions``,
        ``learned``, ``dropped``, and ``{head}.{A,b,n,A_inv,theta,reward_sum}`` per head.

        Args:
            arrays: Include the statistics with a dimension (``A``, ``b``, ...). Without them the state is what
                changes on every decision (counters, generator, scalar sums): what a server saves per
                transaction while the statistics, which change only when the bandit learns, stay as saved.
        """
        # A server takes the small state on every transaction; the space and the generator's state seldom change
        # (LinUCB draws nothing), so their JSON is kept with what it encodes and written again only on a change.
        space_json = ""
        if self.space is not None:
            if self._space_text is None or self._space_text[0] is not self.space:
                self._space_text = (self.space, _space_json(self.space))
            space_json = self._space_text[1]
        rng = self.rng.bit_generator.state
        if self._rng_text is None or self._rng_text[0] != rng:
            self._rng_text = (rng, json.dumps(rng))
        rng_json = self._rng_text[1]
        state: dict[str, StateValue] = {
            "policy": self.name,
            "space": space_json,
            "rng": rng_json,
            "decisions": self.decisions,
            "learned": self.learned,
            "dropped": self.dropped,
        }
        for name, arms in self.arms.items():
            state.update(arms.state_dict(name, arrays))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (values may be 0-d arrays, as ``numpy.load`` returns them).

        Raises:
            ValueError: The state is another policy's, or lacks or misshapes an array.
        """
        policy = _scalar(state.get("policy"))
        if policy != self.name:
            raise ValueError(f"state is of policy {policy!r}, not {self.name!r}")
        space_json = str(_scalar(state["space"]))
        self.space, self.heads, self.arms = None, (), {}
        if space_json:
            self._set_space(_space_from_json(json.loads(space_json)))
            for name, arms in self.arms.items():
                arms.load_state_dict(state, name)
        self.rng.bit_generator.state = json.loads(str(_scalar(state["rng"])))
        self.decisions = int(_scalar(state["decisions"]))
        self.learned = int(_scalar(state["learned"]))
        self.dropped = int(_scalar(state["dropped"]))

    def save(
        self,
        folder: Path,
        *,
        rules_version: str | None = None,
        training: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> Path:
        """Write ``state.npz`` (arrays, no pickle), ``config.json`` and an artifact ``manifest.json``.

        The manifest (kind ``bandit-<name>``, see :mod:`agents.artifact`) records the feature and rule-set
        versions and the sha256 of both files, so :func:`agents.artifact.load_policy` verifies and loads it.

        Args:
            folder: The artifact folder (created if needed).
            rules_version: Version of the rule set the bandit learned under (default: the default world's).
            training: How it was trained (recorded).
            metrics: Its measured results (recorded).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.asarray(v) for k, v in self.state_dict().items()}
        np.savez(folder / STATE_FILE, allow_pickle=False, **arrays)
        meta = {
            "policy": self.name,
            "version": self.version,
            "config": asdict(self.config),
            "feature_version": FEATURE_VERSION,
            "design": list(design_names(self.config.feature_set)),
        }
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        from agents.artifact import write_manifest
        from regsim.config import RulesConfig

        (folder / "manifest.json").unlink(missing_ok=True)
        write_manifest(
            folder,
            kind=f"bandit-{self.name}",
            policy_name=self.name,
            policy_version=self.version,
            rules_version=rules_version if rules_version is not None else RulesConfig().version,
            training=training or {},
            metrics=metrics or {},
        )
        return folder

    @classmethod
    def load(cls, folder: Path) -> LinearBandit:
        """A bandit saved by :meth:`save` (called on the base class, the saved policy's class is used).

        Raises:
            ValueError: The folder holds another policy or version, or features of another layout.
        """
        folder = Path(folder)
        meta = json.loads((folder / CONFIG_FILE).read_text())
        target = _BANDITS.get(meta.get("policy", "")) if cls is LinearBandit else cls
        if target is None or meta.get("policy") != target.name:
            raise ValueError(f"{folder} holds policy {meta.get('policy')!r}, not {cls.name!r}")
        if meta.get("version") != target.version:
            raise ValueError(f"{folder} holds {target.name} version {meta.get('version')!r}, not {target.version!r}")
        if meta.get("feature_version") != FEATURE_VERSION:
            raise ValueError(
                f"{folder} was trained on features {meta.get('feature_version')!r}; this build has {FEATURE_VERSION!r}"
            )
        known = {f.name for f in fields(target.config_class)}
        config = dict(meta["config"])
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"{folder}/config.json has unknown hyperparameters {unknown}")
        policy = target(**config)
        with np.load(folder / STATE_FILE, allow_pickle=False) as data:
            policy.load_state_dict({k: data[k] for k in data.files})
        return policy

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def load_bandit(folder: Path) -> LinearBandit:
    """The bandit saved in ``folder``, whichever it is."""
    return LinearBandit.load(folder)


def register_artifact_loaders() -> None:
    """Register the loaders of the ``bandit-<name>`` artifact kinds (idempotent)."""
    from agents.artifact import Manifest, register_loader

    def loader(folder: Path, manifest: Manifest, **kwargs: Any) -> LinearBandit:
        if kwargs:
            raise TypeError(f"a bandit artifact takes no loading options; got {sorted(kwargs)}")
        return LinearBandit.load(folder)

    for name in ("epsilon-greedy", "linucb", "linear-ts"):
        with contextlib.suppress(ValueError):  # registered already (the module was imported twice)
            register_loader(f"bandit-{name}")(loader)


def masked_argmax(scores: NDArray[np.float64], available: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Per row, the available column of highest score (the lowest index among ties)."""
    return np.argmax(np.where(available, scores, -np.inf), axis=1).astype(np.int64)


def _greedy(
    arms: RidgeArms, X: NDArray[np.float64], available: NDArray[np.bool_]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The :data:`Chooser` of :meth:`LinearBandit.exploit`: the available arm of highest estimate, probability 1."""
    return masked_argmax(arms.mean(X), available), np.ones(X.shape[0])


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.ndarray) else value


@functools.lru_cache(maxsize=8)
def _space_json(space: ActionSpace) -> str:
    # A server saves the state on every transaction; the space, hashable and immutable, is the same each time.
    return json.dumps(_space_to_json(space))


def _space_to_json(space: ActionSpace) -> dict[str, Any]:
    return {
        "send_slots": [[s.day_offset, s.hour] for s in space.send_slots],
        "due_day_options": list(space.due_day_options),
        "deferral_days": list(space.deferral_days),
        "reduction_fractions": list(space.reduction_fractions),
    }


def _space_from_json(data: dict[str, Any]) -> ActionSpace:
    return ActionSpace(
        send_slots=tuple(SendSlot(day_offset=d, hour=h) for d, h in data["send_slots"]),
        due_day_options=tuple(int(x) for x in data["due_day_options"]),
        deferral_days=tuple(int(x) for x in data["deferral_days"]),
        reduction_fractions=tuple(float(x) for x in data["reduction_fractions"]),
    )
