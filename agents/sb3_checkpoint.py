"""What every resumable SB3 training checkpoint holds: the model, its counters, and the global generators.

A checkpoint is a folder ``<prefix><transitions>`` written atomically
(:func:`agents.checkpoints.write_checkpoint_folder`) after an update. :func:`write_model_files` puts in it
SB3's save of the model (weights and optimizer state,
``model.zip``), ``progress.json`` (the training's identity, ``num_timesteps``, ``_n_updates`` and whatever the
training adds) and ``rng.json`` (the global generators SB3 draws from: :func:`global_rng_state`);
:func:`restore_model` finds the newest checkpoint of a folder, refuses one of another training, and restores the
model and its counters. The vector training adds its own state (the slots mid-episode).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from agents.checkpoints import latest_checkpoint

__all__ = ["global_rng_state", "restore_model", "set_global_rng_state", "write_model_files"]

MODEL, PROGRESS, RNG = "model.zip", "progress.json", "rng.json"


def global_rng_state() -> dict[str, Any]:
    """The generators Stable-Baselines3 draws from outside the model: torch's and NumPy's legacy global one
    (minibatch shuffling in ``RolloutBuffer.get``), as plain JSON-able values.

    Python's ``random`` is left out: SB3 only seeds it (``set_random_seed``, again when a resumed model is built)
    and never draws from it, so its state at a checkpoint is the seeded one.
    """
    # The legacy global generator is SB3's, not ours: saving and restoring it is the point here.
    np_state = cast(tuple[Any, ...], np.random.get_state(legacy=True))  # noqa: NPY002
    return {
        "torch": th.get_rng_state().numpy().tolist(),
        "numpy": [np_state[0], np.asarray(np_state[1]).tolist(), *(x for x in np_state[2:])],
    }


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`global_rng_state` returned (a ``"python"`` entry of older checkpoints is not needed)."""
    th.set_rng_state(th.tensor(state["torch"], dtype=th.uint8))
    name, keys, pos, has_gauss, cached = state["numpy"]
    legacy = (name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached))
    np.random.set_state(legacy)  # noqa: NPY002


def write_model_files(model: BaseAlgorithm, folder: Path, identity: dict[str, Any], **progress: Any) -> None:
    """Write ``model.zip``, ``progress.json`` (``identity``, the counters and ``progress``) and ``rng.json``."""
    model.save(folder / MODEL)
    record = {
        "identity": identity,
        "num_timesteps": int(model.num_timesteps),
        "n_updates": int(model._n_updates),
        **progress,
    }
    (folder / PROGRESS).write_text(json.dumps(record) + "\n", encoding="utf-8")
    (folder / RNG).write_text(json.dumps(global_rng_state()) + "\n", encoding="utf-8")


def restore_model(
    model: BaseAlgorithm, folder: Path, prefix: str, identity: dict[str, Any]
) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
    """Restore ``model`` (weights, optimizer, counters) from the newest checkpoint ``folder/<prefix>*``, if any.

    Returns:
        The checkpoint's folder, its ``progress.json`` and its global generator states (for
        :func:`set_global_rng_state`, once the training has restored the rest), or None without a checkpoint.

    Raises:
        ValueError: The checkpoint is of another training (its identity differs).
    """
    latest = latest_checkpoint(Path(folder), prefix)
    if latest is None:
        return None
    progress = json.loads((latest / PROGRESS).read_text(encoding="utf-8"))
    if progress["identity"] != identity:
        raise ValueError(f"checkpoint {latest} is of another training: {progress['identity']} != {identity}")
    # set_parameters loads the policy's weights and its optimizer's state; the counters are set by hand.
    model.set_parameters(str(latest / MODEL), exact_match=True, device="cpu")
    model.num_timesteps = int(progress["num_timesteps"])
    model._n_updates = int(progress["n_updates"])
    rng = json.loads((latest / RNG).read_text(encoding="utf-8"))
    return latest, progress, rng
