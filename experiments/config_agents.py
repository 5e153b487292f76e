"""The agents of an experiment config: what to train (:class:`AgentConfig`) and its budget (:class:`TrainConfig`).

The agent kinds (deep RL trained by :func:`agents.train.train_policy`, bandits trained online) and the checks of
an agent's hyperparameters and vector-env settings against what its kind accepts (the SB3 constructor's
signature, or the bandit's own constructor).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from experiments.config_base import _NAME, _Section

__all__ = ["AGENT_KINDS", "BANDIT_KINDS", "DEEP_RL_KINDS", "GREEDY_KINDS", "AgentConfig", "TrainConfig"]

#: Agents trained by :func:`agents.train.train_policy` (Stable-Baselines3).
DEEP_RL_KINDS: tuple[str, ...] = ("maskable-ppo", "ppo", "dqn")
#: Agents trained online on the population simulator (:mod:`agents.online`).
BANDIT_KINDS: tuple[str, ...] = ("epsilon-greedy", "linucb", "linear-ts", "menu-ts")
AGENT_KINDS: tuple[str, ...] = (*DEEP_RL_KINDS, *BANDIT_KINDS)
#: Agents whose artifacts take the loading option ``deterministic`` (:func:`agents.artifact.load_policy`).
GREEDY_KINDS: tuple[str, ...] = (*DEEP_RL_KINDS, "menu-ts")

# SB3 constructor arguments that train_policy sets itself (a config may not).
_RESERVED_SB3 = ("env", "policy", "seed", "device", "tensorboard_log", "verbose", "_init_setup_model")


class TrainConfig(_Section):
    """An agent's training budget and checkpoints."""

    steps: int = Field(..., ge=1, description="Training budget in decisions (environment steps / transitions).")
    checkpoint_every: int = Field(
        10_000, ge=1, description="Write a resumable checkpoint after about this many decisions (at a boundary)."
    )
    months: int | None = Field(
        None, ge=1, le=120, description="Bandits: horizon of each online population run (default: env.months)."
    )
    n_envs: int | None = Field(
        None,
        ge=1,
        description="Deep RL: slots of regsim/ArrangementVec-v0 stepped together (default: 2048 for PPO and "
        "MaskablePPO, 16 for DQN).",
    )
    workers: int | None = Field(
        None,
        ge=1,
        description="Deep RL: processes the slots are split over (default: one per 2048 slots, at most one per "
        "core); changes the speed only, never the result.",
    )
    eval_arrangements: int = Field(
        0, ge=0, description="Deep RL: arrangements in train_policy's own check run after training (0: none)."
    )
    decision: Literal["arrangement", "menu"] = Field(
        "arrangement",
        description="Deep RL: the decision learned: the arrangement's (regsim/ArrangementVec-v0) or the "
        "self-service menu's (maskable-ppo only, on regsim/SelfServiceVec-v0; needs self_service.enabled; "
        "n_envs default 256, one process).",
    )


class AgentConfig(_Section):
    """One agent to train: its report name, kind, hyperparameters and budget."""

    name: str = Field(..., description="Report name; also the folder name under agents/ and tb/.")
    kind: Literal["maskable-ppo", "ppo", "dqn", "epsilon-greedy", "linucb", "linear-ts", "menu-ts"]
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict,
        description="SB3 constructor arguments (algo_kwargs) for deep RL, constructor arguments for bandits.",
    )
    train: TrainConfig
    deterministic: bool | None = Field(
        None,
        description="How the trained artifact decides in the evaluation: greedy (true: its best allowed action, "
        "propensity 1) or drawing from its distribution (false); default: the artifact's own (SB3 networks "
        "greedy, menu-ts as trained: drawing). The kinds whose artifacts take this loading option: deep RL and "
        "menu-ts (the online bandits explore and keep learning in the evaluation).",
    )

    @field_validator("name")
    @classmethod
    def _simple_name(cls, v: str) -> str:
        if not _NAME.match(v) or v.isdigit():
            raise ValueError(f"must be letters, digits, '-' or '_' (not only digits), got {v!r}")
        return v

    @model_validator(mode="after")
    def _hyperparameters_fit(self) -> AgentConfig:
        _check_hyperparameters(self.kind, self.hyperparameters)
        _check_slots(self.kind, self.train)
        if self.deterministic is not None and self.kind not in GREEDY_KINDS:
            raise ValueError(f"deterministic: applies to {list(GREEDY_KINDS)} only, not {self.kind!r}")
        return self


def _check_slots(kind: str, train: TrainConfig) -> None:
    """The vector-env settings a kind takes (each refused with what is allowed)."""
    deep = ("maskable-ppo", "ppo", "dqn")
    if train.decision == "menu" and kind != "maskable-ppo":
        raise ValueError(f"train.decision: 'menu' is learned by 'maskable-ppo' only, not {kind!r}")
    if train.decision == "menu" and train.workers not in (None, 1):
        raise ValueError(f"train.workers: the menu slots run in one process; allowed: 1, got {train.workers}")
    if kind not in deep:
        for name in ("n_envs", "workers"):
            if getattr(train, name) is not None:
                raise ValueError(f"train.{name}: applies to {list(deep)} only, not {kind!r}")
        return
    if train.workers is not None:
        from agents.train import DEFAULT_N_ENVS  # (imports torch: only when it is needed, as above)

        n_envs = train.n_envs or DEFAULT_N_ENVS[kind]
        if train.workers > n_envs:
            raise ValueError(f"train.workers: must be at most n_envs ({n_envs}), got {train.workers}")


def _check_hyperparameters(kind: str, hp: Mapping[str, Any]) -> None:
    if kind in BANDIT_KINDS:
        import agents

        if "seed" in hp:
            raise ValueError("hyperparameters: 'seed' is derived from the experiment's seed; remove it")
        try:
            agents.make(kind, **hp)
        except (agents.UnknownPolicyError, ValueError, TypeError) as exc:
            raise ValueError(f"hyperparameters: {exc}") from None
        return
    allowed = sorted(_sb3_arguments(kind))
    reserved = sorted(set(hp) & set(_RESERVED_SB3))
    if reserved:
        raise ValueError(f"hyperparameters: {reserved} are set by the runner; allowed: {allowed}")
    unknown = sorted(set(hp) - set(allowed))
    if unknown:
        raise ValueError(f"hyperparameters: {kind} takes no {unknown}; allowed: {allowed}")


@functools.lru_cache(maxsize=8)
def _sb3_arguments(kind: str) -> frozenset[str]:
    # The constructor's signature is the list of what SB3 accepts (imported here: torch is slow to import).
    from agents.sb3 import POLICIES

    params = inspect.signature(POLICIES[kind].model_class.__init__).parameters
    return frozenset(n for n in params if n not in ("self", *_RESERVED_SB3))
