"""Stable-Baselines3 models (PPO, sb3-contrib's MaskablePPO, DQN) as policies of the decision contract.

A trained SB3 model becomes a :class:`~regsim.decision.Policy` with :meth:`SB3Policy.from_model`; saved as an
artifact (:mod:`agents.artifact`) with :meth:`SB3Policy.save`, it is loaded back with
:func:`agents.artifact.load_policy` (kinds ``"sb3-ppo"``, ``"sb3-maskable-ppo"``, ``"sb3-dqn"``). Serving never
touches SB3's ``model.save`` zip: the artifact holds the network's architecture and spaces (``network.json``)
and a plain ``state_dict`` (``weights.pt``), read with ``torch.load(..., weights_only=True)`` into a freshly
built network, so loading an artifact cannot execute code.

Decisions (:meth:`SB3Policy.decide_batch`) are vectorised: ``features(contexts)`` (the module the env used in
training), one forward pass of the network for the whole batch, then a choice per row in NumPy:

* Actor-critic policies (PPO, MaskablePPO) output one logit per option of each of the five parts. The mask of
  the context (``contexts.mask``) is applied to the logits (a masked option's logit is set to ``-inf``) and
  each part's allowed options renormalised: for part ``j`` with logits ``z_j`` and allowed set ``A_j``,
  ``pi_j(o) = exp(z_j[o]) / sum_{o' in A_j} exp(z_j[o'])`` for ``o`` in ``A_j`` and 0 otherwise. This is
  exactly sb3-contrib's ``MaskableMultiCategorical``. In sampled mode each part is drawn independently and the
  propensity of the action is ``prod_j pi_j(a_j)``; in deterministic mode each part takes its most probable
  allowed option and the propensity is 1.
* DQN outputs one Q-value per action of a *flattened* action space over some parts (see
  :class:`agents.flat_actions.FlatActions`); masked flat actions get ``Q = -inf``. Deterministic mode takes the
  greedy allowed action; sampled mode is epsilon-greedy over the allowed flat actions, with propensity
  ``1 - eps + eps / k`` for the greedy action and ``eps / k`` for any other (``k`` allowed flat actions).

How masks relate to training:

* **MaskablePPO** is trained with the env's ``action_masks()`` (the same product-form mask as
  ``contexts.mask``), so training and serving sample from the same masked distribution.
* **PPO** and **DQN** are not mask-aware: they are trained on ``invalid_action="fallback"``, where the env
  replaces each masked part by its lowest allowed option (no contact / no change). A masked option therefore
  had, in training, the consequences of that fallback, and the network may still prefer it. At decision time
  the mask is applied to the logits / Q-values as above, so a masked option is *never chosen*; the decision
  is the best *allowed* option by the network's own preferences. (This can differ from what SB3's
  ``predict`` followed by the env's fallback would do: that maps a preferred masked option to the lowest
  allowed one, which is rarely the best allowed one.)

Exploration randomness comes from the policy's own generator, seeded by ``seed`` (independent of the world's
streams), so the same seed and the same contexts give the same decisions.

Threads: the networks are small MLPs, for which torch's intra-op threads only add synchronisation; on a busy
machine a forward pass of 100 rows took 12-70 ms with two threads against 0.2 ms with one. Processes that
decide (evaluation, the server) should call ``torch.set_num_threads(1)`` once at start-up; the policy does not
change process-wide settings itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from gymnasium import spaces
from numpy.typing import NDArray
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from agents.artifact import ArtifactError, Manifest, register_loader, write_manifest
from agents.base import FixedPolicy
from agents.flat_actions import DEFAULT_DQN_PARTS, FlatActions
from agents.sb3_network import ACTIVATIONS, NETWORK, WEIGHTS, NetworkSpec, _labels, load_weights, weights_digest
from regsim.decision import PART_NAMES, ActionSpace, ContextBatch, DecisionBatch
from regsim.features import FEATURE_LAYOUT, feature_names, features

__all__ = [
    "ACTIVATIONS",
    "NETWORK",
    "POLICIES",
    "WEIGHTS",
    "NetworkSpec",
    "SB3DQNPolicy",
    "SB3MaskablePPOPolicy",
    "SB3PPOPolicy",
    "SB3Policy",
    "weights_digest",
]

P = TypeVar("P", bound="SB3Policy")


def _zero_schedule(_: float) -> float:
    return 0.0


# ----------------------------------------------------------------------------------------------------------
# The policies
# ----------------------------------------------------------------------------------------------------------
class SB3Policy(FixedPolicy):
    """A trained SB3 network answering the decision contract (base of the three algorithm wrappers).

    Use :meth:`from_model` (after training) or :func:`agents.artifact.load_policy` (an artifact).

    Args:
        network: The SB3 policy network (``model.policy``), used on the CPU in evaluation mode.
        spec: Its architecture and spaces.
        name: Name logged with every decision (default: the artifact kind).
        version: Version logged with every decision (default: the first 12 hex digits of the weights'
            SHA-256, so that two different networks never share a version).
        deterministic: Most probable allowed action (propensity 1) or a draw from the policy's distribution.
        seed: Seed of the policy's own exploration stream.

    Raises:
        ValueError: ``seed`` is negative.
    """

    algorithm: ClassVar[str]
    kind: ClassVar[str]
    model_class: ClassVar[type[BaseAlgorithm]]
    network_class: ClassVar[type[BasePolicy]]
    _stream_tag: ClassVar[int]

    def __init__(
        self,
        network: BasePolicy,
        spec: NetworkSpec,
        *,
        name: str | None = None,
        version: str | None = None,
        deterministic: bool = True,
        seed: int = 0,
    ) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.network = network.to("cpu")
        self.network.set_training_mode(False)
        self.spec = spec
        self.name: str = name or self.kind
        self.version: str = version or weights_digest(self.network)[:12]
        self.deterministic = bool(deterministic)
        self.seed = int(seed)
        self.rng = np.random.default_rng(np.random.SeedSequence([self.seed, self._stream_tag]))
        self._space_ok: ActionSpace | None = None

    def __repr__(self) -> str:
        mode = "deterministic" if self.deterministic else f"sampled, seed={self.seed}"
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r}, {mode})"

    # -- making -------------------------------------------------------------------------------------------
    @classmethod
    def _spec(cls, network: BasePolicy, space: ActionSpace, flat_parts: tuple[str, ...]) -> NetworkSpec:
        params = network._get_constructor_parameters()
        extractor = params.get("features_extractor_class", FlattenExtractor)
        if extractor is not FlattenExtractor or params.get("features_extractor_kwargs"):
            raise ValueError(f"only MlpPolicy networks (FlattenExtractor) are supported, got {extractor.__name__}")
        activation = params["activation_fn"].__name__
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation_fn {activation!r} is not one of {list(ACTIVATIONS)}")
        box = network.observation_space
        if not isinstance(box, spaces.Box) or box.shape != (len(FEATURE_LAYOUT),):
            raise ValueError(f"the network's observations must be the {len(FEATURE_LAYOUT)} features, got {box}")
        net_arch = params["net_arch"]
        return NetworkSpec(
            algorithm=cls.algorithm,
            feature_names=feature_names(),
            obs_low=tuple(float(x) for x in box.low),
            obs_high=tuple(float(x) for x in box.high),
            nvec=tuple(int(n) for n in space.nvec),
            option_labels=_labels(space),
            flat_parts=flat_parts,
            net_arch=json.loads(json.dumps(net_arch)),
            activation_fn=activation,
            share_features_extractor=bool(getattr(network, "share_features_extractor", True)),
        )

    @classmethod
    def from_model(
        cls: type[P],
        model: BaseAlgorithm,
        *,
        space: ActionSpace,
        action_parts: Sequence[str] | None = None,
        name: str | None = None,
        version: str | None = None,
        deterministic: bool = True,
        seed: int = 0,
    ) -> P:
        """Wrap a (trained) SB3 model of this class's algorithm.

        Args:
            model: The model; its ``policy`` network is shared, not copied.
            space: The action space of the env it was trained on (``env.unwrapped.space``).
            action_parts: DQN only: the parts its flattened action chooses (default :data:`DEFAULT_DQN_PARTS`).
            name: See the class.
            version: See the class.
            deterministic: See the class.
            seed: See the class.

        Raises:
            TypeError: The model is not of this class's algorithm.
            ValueError: The network is not an MLP on the features, or its action space does not fit ``space``.
        """
        if type(model) is not cls.model_class:
            raise TypeError(f"{cls.__name__} wraps {cls.model_class.__name__} models, got {type(model).__name__}")
        spec = cls._spec(model.policy, space, cls._flat_parts(model, space, action_parts))
        return cls(model.policy, spec, name=name, version=version, deterministic=deterministic, seed=seed)

    @classmethod
    def _flat_parts(
        cls, model: BaseAlgorithm, space: ActionSpace, action_parts: Sequence[str] | None
    ) -> tuple[str, ...]:
        if action_parts is not None:
            raise ValueError(f"action_parts applies to DQN only, not {cls.algorithm}")
        nvec = getattr(model.action_space, "nvec", None)
        if nvec is None or tuple(int(n) for n in nvec) != tuple(space.nvec):
            raise ValueError(f"the model's action space {model.action_space} does not match nvec {space.nvec}")
        return ()

    @classmethod
    def build_network(cls, spec: NetworkSpec) -> BasePolicy:
        """A freshly initialised network of the spec's architecture (weights are loaded separately)."""
        obs = spaces.Box(np.array(spec.obs_low, dtype=np.float32), np.array(spec.obs_high, dtype=np.float32))
        activation = getattr(nn, spec.activation_fn)
        return cls._build(spec, obs, activation)

    @classmethod
    def _build(cls, spec: NetworkSpec, obs: spaces.Box, activation: type[nn.Module]) -> BasePolicy:
        return cls.network_class(
            obs,
            spaces.MultiDiscrete(np.array(spec.nvec, dtype=np.int64)),
            _zero_schedule,
            net_arch=spec.net_arch,
            activation_fn=activation,
            share_features_extractor=spec.share_features_extractor,
        )

    # -- artifacts ----------------------------------------------------------------------------------------
    def save(self, folder: Path, *, rules_version: str, training: dict[str, Any], metrics: dict[str, Any]) -> Path:
        """Write the policy as an artifact: ``network.json``, ``weights.pt`` and ``manifest.json``.

        Args:
            folder: A new or empty folder.
            rules_version: The rule set the policy was trained under (``config.rules.version``).
            training: The training configuration, recorded in the manifest.
            metrics: Evaluation results, recorded in the manifest.

        Returns:
            The folder.

        Raises:
            ArtifactError: The folder exists and is not empty.
        """
        folder = Path(folder)
        if folder.exists() and any(folder.iterdir()):
            raise ArtifactError(f"{folder}: not empty; an artifact is written to a new folder")
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}
        torch.save(state, folder / WEIGHTS)
        (folder / NETWORK).write_text(json.dumps(self.spec.to_json(), indent=2) + "\n", encoding="utf-8")
        write_manifest(
            folder,
            kind=self.kind,
            policy_name=self.name,
            policy_version=self.version,
            rules_version=rules_version,
            training=training,
            metrics=metrics,
        )
        return folder

    @classmethod
    def load(cls: type[P], folder: Path, manifest: Manifest, *, deterministic: bool = True, seed: int = 0) -> P:
        """Rebuild the policy from a verified artifact (the loader of :attr:`kind`; use ``load_policy``).

        Raises:
            ArtifactError: ``network.json`` is malformed, is for another algorithm or another feature layout,
                or ``weights.pt`` is not a plain state dict of this architecture.
        """
        folder = Path(folder)
        try:
            data = json.loads((folder / NETWORK).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{folder}: cannot read {NETWORK}: {exc}") from None
        spec = NetworkSpec.from_json(data, where=str(folder / NETWORK))
        if spec.algorithm != cls.algorithm:
            raise ArtifactError(f"{folder}: {NETWORK} is for {spec.algorithm!r}, not {cls.algorithm!r}")
        if spec.feature_names != feature_names():
            raise ArtifactError(
                f"{folder}: the network's feature names differ from the running code's layout "
                f"(same version, different entries: was FEATURE_VERSION bumped?)"
            )
        network = cls.build_network(spec)
        load_weights(network, folder)
        return cls(
            network,
            spec,
            name=manifest.policy_name,
            version=manifest.policy_version,
            deterministic=deterministic,
            seed=seed,
        )

    # -- deciding -----------------------------------------------------------------------------------------
    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        """Decisions for a batch: features, one forward pass, a masked choice per row (see the module).

        Raises:
            ValueError: The contexts' action space is not the one the network was trained on, or a row has a
                part with no allowed option.
        """
        self._check_space(contexts.space)
        n = len(contexts)
        if n == 0:
            return DecisionBatch(np.zeros((0, len(PART_NAMES)), dtype=np.int64), np.zeros(0))
        mask = np.asarray(contexts.mask, dtype=bool)
        scores = self.scores(features(contexts))
        actions, propensity = self._choose(scores, mask)
        return DecisionBatch(actions, propensity)

    def scores(self, observations: NDArray[np.float32]) -> NDArray[np.float64]:
        """The network's raw outputs (logits or Q-values) for feature rows ``(B, n_features)``, unmasked."""
        obs = torch.from_numpy(np.ascontiguousarray(observations, dtype=np.float32))
        with torch.inference_mode():
            out = self._forward(obs)
        return out.numpy().astype(np.float64)

    def greedy_actions(self, contexts: ContextBatch, observations: NDArray[np.floating]) -> NDArray[np.int64]:
        """Deterministic actions (the most probable / greedy allowed one) for given feature rows.

        For measuring what drives the network's choices (permutation importance,
        ``experiments.analysis.feature_importance``): the contexts supply the masks, the ``observations`` the
        network's input, so ``greedy_actions(c, regsim.features.features(c))`` equals ``decide_batch(c).actions``
        of the deterministic mode, whatever mode the policy is in. Draws nothing from the exploration stream.

        Args:
            contexts: The decision contexts, ``B`` rows.
            observations: Feature rows in the layout of :func:`regsim.features.features`, shape ``(B, n)``.

        Returns:
            Actions, shape ``(B, 5)``.
        """
        self._check_space(contexts.space)
        if np.shape(observations) != (len(contexts), len(self.spec.feature_names)):
            raise ValueError(
                f"observations must have shape {(len(contexts), len(self.spec.feature_names))}, "
                f"got {np.shape(observations)}"
            )
        if len(contexts) == 0:
            return np.zeros((0, len(PART_NAMES)), dtype=np.int64)
        mode = self.deterministic
        self.deterministic = True  # _choose reads the mode; restored below, so the policy is left as it was
        try:
            scores = self.scores(np.asarray(observations, dtype=np.float32))
            actions, _ = self._choose(scores, np.asarray(contexts.mask, dtype=bool))
        finally:
            self.deterministic = mode
        return actions

    def _check_space(self, space: ActionSpace) -> None:
        if space is self._space_ok:
            return
        if tuple(space.nvec) != self.spec.nvec or _labels(space) != self.spec.option_labels:
            raise ValueError(
                f"{self.name} {self.version} was trained on action options {self.spec.option_labels}, "
                f"the contexts offer {_labels(space)}"
            )
        self._space_ok = space

    def _forward(self, obs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _choose(
        self, scores: NDArray[np.float64], mask: NDArray[np.bool_]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:  # pragma: no cover - abstract
        raise NotImplementedError


def _masked_softmax(z: NDArray[np.float64], allowed: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Softmax over the last axis restricted to ``allowed`` (0 elsewhere); every slice needs an allowed entry."""
    z = np.where(allowed, z, -np.inf)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _draw(p: NDArray[np.float64], u: NDArray[np.float64]) -> NDArray[np.int64]:
    """Inverse-CDF draws over the last axis of ``p`` with uniforms ``u`` (shape ``p.shape[:-1]``).

    Never returns an index of probability 0: the first index whose cumulative sum exceeds ``u * total``.
    """
    cum = np.cumsum(p, axis=-1)
    return np.argmax(cum > u[..., None] * cum[..., -1:], axis=-1).astype(np.int64)


class _ActorCritic(SB3Policy):
    """PPO and MaskablePPO: per-part masked categoricals over the action logits."""

    def __init__(self, network: BasePolicy, spec: NetworkSpec, **kwargs: Any) -> None:
        super().__init__(network, spec, **kwargs)
        # Padded (part, option) -> flat index table, so that all parts are handled in one set of array ops.
        nvec = np.array(spec.nvec)
        width = int(nvec.max())
        offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])
        option = np.arange(width)[None, :]
        self._valid = option < nvec[:, None]
        self._index = np.where(self._valid, offsets[:, None] + option, 0)

    def _forward(self, obs: torch.Tensor) -> torch.Tensor:
        net: Any = self.network  # an ActorCriticPolicy; its submodules are untyped attributes
        latent = net.mlp_extractor.forward_actor(net.pi_features_extractor(obs))
        logits: torch.Tensor = net.action_net(latent)
        return logits

    def probabilities(self, contexts: ContextBatch) -> NDArray[np.float64]:
        """Per-part masked option probabilities, shape ``(B, 5, max options)`` (0 for padding and masked)."""
        scores = self.scores(features(contexts))
        return _masked_softmax(scores[:, self._index], contexts.mask[:, self._index] & self._valid)

    def _choose(
        self, scores: NDArray[np.float64], mask: NDArray[np.bool_]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        allowed = mask[:, self._index] & self._valid
        if not allowed.any(axis=2).all():
            rows, parts = np.nonzero(~allowed.any(axis=2))
            raise ValueError(f"row {rows[0]}: part {PART_NAMES[parts[0]]!r} has no allowed option")
        n = len(scores)
        if self.deterministic:
            z = np.where(allowed, scores[:, self._index], -np.inf)
            return np.argmax(z, axis=2).astype(np.int64), np.ones(n)
        p = _masked_softmax(scores[:, self._index], allowed)
        actions = _draw(p, self.rng.random((n, len(PART_NAMES))))
        propensity = np.take_along_axis(p, actions[:, :, None], axis=2)[:, :, 0].prod(axis=1)
        return actions, propensity


class SB3PPOPolicy(_ActorCritic):
    """PPO (trained without masks, on the env's fallback) with the mask applied to its logits when deciding."""

    algorithm: ClassVar[str] = "ppo"
    kind: ClassVar[str] = "sb3-ppo"
    model_class: ClassVar[type[BaseAlgorithm]] = PPO
    network_class: ClassVar[type[BasePolicy]] = ActorCriticPolicy
    _stream_tag: ClassVar[int] = 0x50504F


class SB3MaskablePPOPolicy(_ActorCritic):
    """sb3-contrib's MaskablePPO: the masked per-part categoricals it was trained with."""

    algorithm: ClassVar[str] = "maskable-ppo"
    kind: ClassVar[str] = "sb3-maskable-ppo"
    model_class: ClassVar[type[BaseAlgorithm]] = MaskablePPO
    network_class: ClassVar[type[BasePolicy]] = MaskableActorCriticPolicy
    _stream_tag: ClassVar[int] = 0x4D50504F


class SB3DQNPolicy(SB3Policy):
    """DQN over a flattened action (:class:`FlatActions`): greedy, or epsilon-greedy, among allowed actions.

    Args:
        network: See :class:`SB3Policy`.
        spec: See :class:`SB3Policy`; ``spec.flat_parts`` names the flattened parts.
        epsilon: Exploration probability in sampled mode (SB3's default final epsilon).
        **kwargs: See :class:`SB3Policy`.
    """

    algorithm: ClassVar[str] = "dqn"
    kind: ClassVar[str] = "sb3-dqn"
    model_class: ClassVar[type[BaseAlgorithm]] = DQN
    network_class: ClassVar[type[BasePolicy]] = DQNPolicy
    _stream_tag: ClassVar[int] = 0x44514E

    def __init__(self, network: BasePolicy, spec: NetworkSpec, *, epsilon: float = 0.05, **kwargs: Any) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        super().__init__(network, spec, **kwargs)
        self.epsilon = float(epsilon)
        self.flat = FlatActions.from_names(spec.nvec, spec.flat_parts)

    @classmethod
    def _flat_parts(
        cls, model: BaseAlgorithm, space: ActionSpace, action_parts: Sequence[str] | None
    ) -> tuple[str, ...]:
        flat = FlatActions.from_names(space.nvec, tuple(action_parts or DEFAULT_DQN_PARTS))
        n = getattr(model.action_space, "n", None)
        if n is None or int(n) != flat.size:
            raise ValueError(
                f"the model's action space {model.action_space} is not Discrete({flat.size}) of {flat.names}"
            )
        return flat.names

    @classmethod
    def _build(cls, spec: NetworkSpec, obs: spaces.Box, activation: type[nn.Module]) -> BasePolicy:
        flat = FlatActions.from_names(spec.nvec, spec.flat_parts)
        return DQNPolicy(
            obs, spaces.Discrete(flat.size), _zero_schedule, net_arch=spec.net_arch, activation_fn=activation
        )

    @classmethod
    def load(
        cls,
        folder: Path,
        manifest: Manifest,
        *,
        deterministic: bool = True,
        seed: int = 0,
        epsilon: float = 0.05,
    ) -> SB3DQNPolicy:
        """As :meth:`SB3Policy.load`, with the sampled mode's ``epsilon``."""
        policy = super().load(folder, manifest, deterministic=deterministic, seed=seed)
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        policy.epsilon = float(epsilon)
        return policy

    def _forward(self, obs: torch.Tensor) -> torch.Tensor:
        net: Any = self.network  # a DQNPolicy
        q: torch.Tensor = net.q_net(obs)
        return q

    def _choose(
        self, scores: NDArray[np.float64], mask: NDArray[np.bool_]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        allowed = self.flat.flat_mask(mask)
        k = allowed.sum(axis=1)
        if (k == 0).any():
            raise ValueError(f"row {int(np.argmin(k))}: no allowed action among {self.flat.names}")
        n = len(scores)
        greedy = np.argmax(np.where(allowed, scores, -np.inf), axis=1).astype(np.int64)
        if self.deterministic:
            return self.flat.to_multi(greedy, mask), np.ones(n)
        explore = self.rng.random(n) < self.epsilon
        # The r-th allowed flat action, r uniform in [0, k): a vectorised draw over rows.
        r = np.floor(self.rng.random(n) * k).astype(np.int64)
        uniform = np.argmax(np.cumsum(allowed, axis=1) > r[:, None], axis=1).astype(np.int64)
        index = np.where(explore, uniform, greedy)
        propensity = np.where(index == greedy, 1.0 - self.epsilon + self.epsilon / k, self.epsilon / k)
        return self.flat.to_multi(index, mask), propensity


#: The wrapped algorithms by name (the ``algorithm`` argument of :func:`agents.train.train_policy`).
POLICIES: dict[str, type[SB3Policy]] = {
    cls.algorithm: cls for cls in (SB3PPOPolicy, SB3MaskablePPOPolicy, SB3DQNPolicy)
}

for _cls in POLICIES.values():
    register_loader(_cls.kind)(_cls.load)
