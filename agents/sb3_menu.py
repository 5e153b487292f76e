"""MaskablePPO menus: a network trained on ``regsim/SelfServiceVec-v0`` as a menu policy (``decide_menu``).

:func:`agents.train.train_policy` with ``decision="menu"`` trains sb3-contrib's MaskablePPO on the menu decision
(:class:`envs.sb3_menu_vec.SelfServiceSB3VecEnv`); :meth:`SB3MenuPolicy.from_model` wraps the trained network as
a policy that answers ``decide_menu`` (:class:`regsim.menu.MenuPolicy`) and hands every arrangement decision to
its base policy (``static-dunning`` by default, the one that answered them in training), as the other menu
policies of :mod:`agents.menus` do.

Deciding. The observation of a menu point is the env's (:func:`envs.self_service_vec.menu_observations`: the
features, concessions so far / 3, costs waived), one forward pass for the batch gives one logit per level of each
slot; the menu rules' mask (``menus.mask``) sets a capped level's logit to ``-inf`` and each slot's allowed levels
are renormalised, exactly sb3-contrib's ``MaskableMultiCategorical``. Deterministic (the default, as for the
arrangement networks of :mod:`agents.sb3`): each slot at its most probable allowed level, propensity 1. Sampled:
each slot drawn independently from the policy's own generator, the menu's propensity the product of its slots'.

Artifact (kind ``sb3-menu-maskable-ppo``): ``network.json`` (:class:`MenuNetworkSpec`: architecture, spaces,
observation entries, the menu's level labels and the base policy), ``weights.pt`` (a plain ``state_dict``, read
with ``weights_only=True``: loading cannot run code) and the manifest (:mod:`agents.artifact`).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from numpy.typing import NDArray
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch import nn

from agents.artifact import ArtifactError, Manifest, register_loader, write_manifest
from agents.menus import MENU_EXTRA, _MenuOnBase
from agents.sb3_network import ACTIVATIONS, NETWORK, WEIGHTS, load_weights, weights_digest
from envs.self_service_vec import menu_observations
from regsim.config import WorldConfig
from regsim.decision import ActionSpace
from regsim.features import FEATURE_VERSION, feature_names
from regsim.menu import SLOT_NAMES, MenuBatch, MenuDecisionBatch, MenuSpace

__all__ = ["MENU_KIND", "MenuNetworkSpec", "SB3MenuPolicy", "observation_names"]

#: The artifact kind of a MaskablePPO menu policy.
MENU_KIND = "sb3-menu-maskable-ppo"
_STREAM_TAG = 0x4D4D5050  # "MMPP", mixed into the sampling seed
_SPACE = ActionSpace.from_config(WorldConfig().decisions)
"""An arrangement action space, only to wrap menu points' columns for the features (which read the columns)."""


def observation_names() -> tuple[str, ...]:
    """The entries of a menu observation: the feature names, then :data:`agents.menus.MENU_EXTRA`."""
    return (*feature_names(), *MENU_EXTRA)


def _menu_labels(space: MenuSpace) -> tuple[tuple[str, ...], ...]:
    return tuple(space.level_labels(s) for s in range(len(SLOT_NAMES)))


def _zero_schedule(_: float) -> float:
    return 0.0


@dataclass(frozen=True)
class MenuNetworkSpec:
    """Architecture and spaces of a menu network (``network.json``): everything needed to rebuild it.

    Attributes:
        feature_version: The feature layout the observations were built with.
        observation_names: The observation's entries (:func:`observation_names` at training time).
        obs_low: Lower bounds of the observation ``Box``.
        obs_high: Upper bounds of the observation ``Box``.
        nvec: Levels per menu slot (:data:`regsim.menu.SLOT_NAMES` order).
        level_labels: Labels of each slot's levels, to refuse menus of another space with the same sizes.
        net_arch: SB3's ``net_arch``.
        activation_fn: Name of the ``torch.nn`` activation class (one of :data:`agents.sb3_network.ACTIVATIONS`).
        share_features_extractor: SB3's ``share_features_extractor``.
        base: The registered policy that takes the arrangement decisions (it did in training).
    """

    feature_version: str
    observation_names: tuple[str, ...]
    obs_low: tuple[float, ...]
    obs_high: tuple[float, ...]
    nvec: tuple[int, ...]
    level_labels: tuple[tuple[str, ...], ...]
    net_arch: Any
    activation_fn: str
    share_features_extractor: bool
    base: str

    @classmethod
    def from_json(cls, data: Any, where: str) -> MenuNetworkSpec:
        """Validate JSON data as a spec.

        Raises:
            ArtifactError: A key is missing or unknown, or a value is malformed (naming it).
        """
        if not isinstance(data, dict):
            raise ArtifactError(f"{where}: expected a JSON object")
        names = set(cls.__dataclass_fields__)
        unknown, missing = sorted(set(data) - names), sorted(names - set(data))
        if unknown or missing:
            raise ArtifactError(f"{where}: unknown key(s) {unknown}, missing key(s) {missing}")
        try:
            spec = cls(
                feature_version=str(data["feature_version"]),
                observation_names=tuple(str(x) for x in data["observation_names"]),
                obs_low=tuple(float(x) for x in data["obs_low"]),
                obs_high=tuple(float(x) for x in data["obs_high"]),
                nvec=tuple(int(x) for x in data["nvec"]),
                level_labels=tuple(tuple(str(x) for x in s) for s in data["level_labels"]),
                net_arch=data["net_arch"],
                activation_fn=str(data["activation_fn"]),
                share_features_extractor=bool(data["share_features_extractor"]),
                base=str(data["base"]),
            )
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"{where}: malformed value: {exc}") from None
        if spec.activation_fn not in ACTIVATIONS:
            raise ArtifactError(f"{where}: activation_fn {spec.activation_fn!r} is not one of {list(ACTIVATIONS)}")
        if not (len(spec.obs_low) == len(spec.obs_high) == len(spec.observation_names)):
            raise ArtifactError(f"{where}: obs_low, obs_high and observation_names differ in length")
        if len(spec.nvec) != len(SLOT_NAMES) or [len(s) for s in spec.level_labels] != list(spec.nvec):
            raise ArtifactError(f"{where}: nvec and level_labels need {len(SLOT_NAMES)} matching slots")
        return spec


class SB3MenuPolicy(_MenuOnBase):
    """A trained MaskablePPO menu network answering ``decide_menu`` (see the module docstring).

    Use :meth:`from_model` (after training) or :func:`agents.artifact.load_policy` (an artifact).

    Args:
        network: The SB3 policy network (``model.policy``), used on the CPU in evaluation mode.
        spec: Its architecture and spaces.
        name: Name logged with every menu (default: the artifact kind).
        version: Version logged (default: the first 12 hex digits of the weights' SHA-256).
        deterministic: Most probable allowed level per slot (propensity 1) or draws from the network's
            distribution.
        seed: Seed of the policy's own sampling stream (>= 0).

    Raises:
        ValueError: ``seed`` is negative, or the spec's base policy is a menu policy or unknown.
    """

    kind: ClassVar[str] = MENU_KIND

    def __init__(
        self,
        network: MaskableActorCriticPolicy,
        spec: MenuNetworkSpec,
        *,
        name: str | None = None,
        version: str | None = None,
        deterministic: bool = True,
        seed: int = 0,
    ) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        super().__init__(spec.base)
        self.network = network.to("cpu")
        self.network.set_training_mode(False)
        self.spec = spec
        self.name = name or self.kind  # type: ignore[misc]
        self.version = version or weights_digest(self.network)[:12]  # type: ignore[misc]
        self.deterministic = bool(deterministic)
        self.seed = int(seed)
        self.rng = np.random.default_rng(np.random.SeedSequence([self.seed, _STREAM_TAG]))
        nvec = np.asarray(spec.nvec)
        self._offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]]).astype(np.int64)

    def __repr__(self) -> str:
        mode = "deterministic" if self.deterministic else f"sampled, seed={self.seed}"
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r}, base={self.base_name!r}, {mode})"

    # -- making -------------------------------------------------------------------------------------------
    @classmethod
    def from_model(
        cls, model: BaseAlgorithm, *, menu_space: MenuSpace, base: str, deterministic: bool = True, seed: int = 0
    ) -> SB3MenuPolicy:
        """Wrap a (trained) MaskablePPO model of the menu env.

        Args:
            model: The model; its ``policy`` network is shared, not copied.
            menu_space: The menu space of the env it was trained on (``env.menu_space``).
            base: The base policy that answered the arrangement decisions in training.
            deterministic: See the class.
            seed: See the class.

        Raises:
            TypeError: The model is not a MaskablePPO.
            ValueError: The network is not an MLP on the menu observations, or its action space is not the menu's.
        """
        if type(model) is not MaskablePPO:
            raise TypeError(f"{cls.__name__} wraps MaskablePPO models, got {type(model).__name__}")
        network = model.policy
        params = network._get_constructor_parameters()
        extractor = params.get("features_extractor_class", FlattenExtractor)
        if extractor is not FlattenExtractor or params.get("features_extractor_kwargs"):
            raise ValueError(f"only MlpPolicy networks (FlattenExtractor) are supported, got {extractor.__name__}")
        box = network.observation_space
        names = observation_names()
        if not isinstance(box, spaces.Box) or box.shape != (len(names),):
            raise ValueError(f"the network's observations must be the {len(names)} menu entries, got {box}")
        nvec = tuple(int(n) for n in getattr(model.action_space, "nvec", ()))
        if nvec != tuple(menu_space.nvec):
            raise ValueError(f"the model's action space {model.action_space} is not the menu's {menu_space.nvec}")
        activation = params["activation_fn"].__name__
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation_fn {activation!r} is not one of {list(ACTIVATIONS)}")
        spec = MenuNetworkSpec(
            feature_version=FEATURE_VERSION,
            observation_names=names,
            obs_low=tuple(float(x) for x in box.low),
            obs_high=tuple(float(x) for x in box.high),
            nvec=nvec,
            level_labels=_menu_labels(menu_space),
            net_arch=json.loads(json.dumps(params["net_arch"])),
            activation_fn=activation,
            share_features_extractor=bool(getattr(network, "share_features_extractor", True)),
            base=base,
        )
        return cls(network, spec, deterministic=deterministic, seed=seed)

    @staticmethod
    def build_network(spec: MenuNetworkSpec) -> MaskableActorCriticPolicy:
        """A freshly initialised network of the spec's architecture (weights are loaded separately)."""
        obs = spaces.Box(np.array(spec.obs_low, dtype=np.float32), np.array(spec.obs_high, dtype=np.float32))
        return MaskableActorCriticPolicy(
            obs,
            spaces.MultiDiscrete(np.array(spec.nvec, dtype=np.int64)),
            _zero_schedule,
            net_arch=spec.net_arch,
            activation_fn=getattr(nn, spec.activation_fn),
            share_features_extractor=spec.share_features_extractor,
        )

    # -- deciding -----------------------------------------------------------------------------------------
    def logits(self, menus: MenuBatch) -> NDArray[np.float64]:
        """The network's level logits of menu points, ``(B, sum(nvec))``, unmasked."""
        obs = torch.from_numpy(np.ascontiguousarray(menu_observations(menus, _SPACE), dtype=np.float32))
        net: Any = self.network  # an actor-critic; its submodules are untyped attributes
        with torch.inference_mode():
            latent = net.mlp_extractor.forward_actor(net.pi_features_extractor(obs))
            out: NDArray[np.float64] = net.action_net(latent).numpy().astype(np.float64)
        return out

    def decide_menu(self, menus: MenuBatch) -> MenuDecisionBatch:
        """Per slot the most probable allowed level (deterministic) or a draw among the allowed levels.

        Raises:
            ValueError: The menus are of another menu space than the network's.
        """
        if tuple(menus.space.nvec) != self.spec.nvec or _menu_labels(menus.space) != self.spec.level_labels:
            raise ValueError(
                f"{self.name}: menus of levels {menus.space.nvec}, the network was trained on {self.spec.nvec}"
            )
        n = len(menus)
        levels = np.zeros((n, len(SLOT_NAMES)), dtype=np.int64)
        propensity = np.ones(n)
        if n == 0:
            return MenuDecisionBatch(levels, propensity)
        z = self.logits(menus)
        for slot, (off, k) in enumerate(zip(self._offsets.tolist(), self.spec.nvec, strict=True)):
            allowed = np.asarray(menus.mask[:, off : off + k], dtype=bool)
            zs = np.where(allowed, z[:, off : off + k], -np.inf)
            if self.deterministic:
                levels[:, slot] = np.argmax(zs, axis=1)
                continue
            p = np.exp(zs - zs.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            u = self.rng.random(n)
            pick = np.minimum((np.cumsum(p, axis=1) < u[:, None]).sum(axis=1), k - 1)
            while not allowed[np.arange(n), pick].all():  # (rounding at the top end: the last allowed level)
                bad = ~allowed[np.arange(n), pick]
                pick[bad] -= 1
            levels[:, slot] = pick
            propensity *= p[np.arange(n), pick]
        return MenuDecisionBatch(levels, propensity)

    # -- artifacts ----------------------------------------------------------------------------------------
    def save(self, folder: Path, *, rules_version: str, training: dict[str, Any], metrics: dict[str, Any]) -> Path:
        """Write ``network.json``, ``weights.pt`` and ``manifest.json`` to a new or empty folder.

        Raises:
            ArtifactError: The folder exists and is not empty.
        """
        folder = Path(folder)
        if folder.exists() and any(folder.iterdir()):
            raise ArtifactError(f"{folder}: not empty; an artifact is written to a new folder")
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}, folder / WEIGHTS)
        (folder / NETWORK).write_text(json.dumps(asdict(self.spec), indent=2) + "\n", encoding="utf-8")
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
    def load(cls, folder: Path, manifest: Manifest, *, deterministic: bool = True, seed: int = 0) -> SB3MenuPolicy:
        """Rebuild the policy from a verified artifact (the loader of its kind; use ``load_policy``).

        Raises:
            ArtifactError: ``network.json`` is malformed or of another feature layout, or ``weights.pt`` is not a
                plain state dict of this architecture.
        """
        folder = Path(folder)
        try:
            data = json.loads((folder / NETWORK).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{folder}: cannot read {NETWORK}: {exc}") from None
        spec = MenuNetworkSpec.from_json(data, where=str(folder / NETWORK))
        if spec.feature_version != FEATURE_VERSION or spec.observation_names != observation_names():
            raise ArtifactError(
                f"{folder}: trained on observations {spec.feature_version!r} that differ from the running code's "
                f"{FEATURE_VERSION!r} layout"
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


def _loader(folder: Path, manifest: Manifest, **kwargs: Any) -> SB3MenuPolicy:
    unknown = sorted(set(kwargs) - {"deterministic", "seed"})
    if unknown:
        raise TypeError(f"a {MENU_KIND} artifact takes the loading options deterministic and seed; got {unknown}")
    return SB3MenuPolicy.load(folder, manifest, **kwargs)


with contextlib.suppress(ValueError):  # registered already
    register_loader(MENU_KIND)(_loader)
