"""What is needed to rebuild an SB3 policy network: its spec (``network.json``) and the artifact's file names.

:class:`NetworkSpec` records a network's architecture and spaces, validated when read back so that a malformed
or foreign ``network.json`` is refused before anything is built; :func:`weights_digest` names a network's
weights independently of the file format. The policies that build networks from a spec are in
:mod:`agents.sb3`.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.artifact import ArtifactError
from regsim.decision import PART_NAMES, ActionSpace

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ACTIVATIONS", "NETWORK", "WEIGHTS", "NetworkSpec", "load_weights", "weights_digest"]

#: Activation functions a network may use (torch.nn class names); anything else is refused when loading.
ACTIVATIONS: tuple[str, ...] = ("Tanh", "ReLU", "ELU", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Identity")

WEIGHTS = "weights.pt"
NETWORK = "network.json"


# ----------------------------------------------------------------------------------------------------------
# What is needed to rebuild a network
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NetworkSpec:
    """Architecture and spaces of a policy network (``network.json``): everything needed to rebuild it.

    Attributes:
        algorithm: Key of :data:`POLICIES` (``"ppo"``, ``"maskable-ppo"``, ``"dqn"``).
        feature_names: The observation's entries (:func:`regsim.features.feature_names` at training time).
        obs_low: Lower bounds of the observation ``Box``.
        obs_high: Upper bounds of the observation ``Box``.
        nvec: Options per action part (all five parts).
        option_labels: Labels of each part's options (:meth:`regsim.decision.ActionSpace.option_labels`), to
            refuse contexts of another action space with the same sizes.
        flat_parts: DQN only: the parts of the flattened action (see :class:`FlatActions`), else empty.
        net_arch: SB3's ``net_arch`` (a list of layer sizes, or ``{"pi": [...], "vf": [...]}``).
        activation_fn: Name of the ``torch.nn`` activation class (one of :data:`ACTIVATIONS`).
        share_features_extractor: Actor-critic only: SB3's ``share_features_extractor``.
    """

    algorithm: str
    feature_names: tuple[str, ...]
    obs_low: tuple[float, ...]
    obs_high: tuple[float, ...]
    nvec: tuple[int, ...]
    option_labels: tuple[tuple[str, ...], ...]
    flat_parts: tuple[str, ...]
    net_arch: Any
    activation_fn: str
    share_features_extractor: bool = True

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON data."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = NETWORK) -> NetworkSpec:
        """Validate JSON data as a spec.

        Raises:
            ArtifactError: A key is missing or unknown, or a value has the wrong shape (naming the key).
        """
        if not isinstance(data, dict):
            raise ArtifactError(f"{where}: expected a JSON object")
        names = set(cls.__dataclass_fields__)
        unknown, missing = sorted(set(data) - names), sorted(names - set(data) - {"share_features_extractor"})
        if unknown or missing:
            raise ArtifactError(f"{where}: unknown key(s) {unknown}, missing key(s) {missing}")
        try:
            spec = cls(
                algorithm=str(data["algorithm"]),
                feature_names=tuple(str(x) for x in data["feature_names"]),
                obs_low=tuple(float(x) for x in data["obs_low"]),
                obs_high=tuple(float(x) for x in data["obs_high"]),
                nvec=tuple(int(x) for x in data["nvec"]),
                option_labels=tuple(tuple(str(x) for x in part) for part in data["option_labels"]),
                flat_parts=tuple(str(x) for x in data["flat_parts"]),
                net_arch=data["net_arch"],
                activation_fn=str(data["activation_fn"]),
                share_features_extractor=bool(data.get("share_features_extractor", True)),
            )
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"{where}: malformed value: {exc}") from None
        if spec.activation_fn not in ACTIVATIONS:
            raise ArtifactError(f"{where}: activation_fn {spec.activation_fn!r} is not one of {list(ACTIVATIONS)}")
        if not (len(spec.obs_low) == len(spec.obs_high) == len(spec.feature_names)):
            raise ArtifactError(f"{where}: obs_low, obs_high and feature_names differ in length")
        if len(spec.nvec) != len(PART_NAMES) or len(spec.option_labels) != len(PART_NAMES):
            raise ArtifactError(f"{where}: nvec and option_labels need {len(PART_NAMES)} parts")
        if [len(o) for o in spec.option_labels] != list(spec.nvec):
            raise ArtifactError(f"{where}: option_labels do not match nvec {list(spec.nvec)}")
        return spec


def _labels(space: ActionSpace) -> tuple[tuple[str, ...], ...]:
    return tuple(space.option_labels(p) for p in range(len(PART_NAMES)))


def weights_digest(network: nn.Module) -> str:
    """SHA-256 over a network's parameter names and values (independent of the file format)."""
    digest = hashlib.sha256()
    for key, value in network.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_weights(network: nn.Module, folder: Path) -> None:
    """Load an artifact's ``weights.pt`` into ``network`` (built from its ``network.json``), strictly.

    Raises:
        ArtifactError: The file is not a plain state dict of tensors (``weights_only``: no code is unpickled), or
            it does not fit the network's architecture; naming the file.
    """
    import torch

    try:
        # weights_only=True: only tensors and plain containers are unpickled, never code.
        state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError or OSError here
        raise ArtifactError(f"{folder}: {WEIGHTS} is not a plain state dict: {exc}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArtifactError(f"{folder}: {WEIGHTS} is not a mapping of names to tensors")
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{folder}: {WEIGHTS} does not fit the architecture of {NETWORK}: {exc}") from None
