"""regsim: a SimPy simulator of debtors in payment arrangements, and the decision contract of the bots that
manage them.

The package knows nothing of Gymnasium, torch or HTTP; ``envs``, ``agents``, ``experiments`` and ``serving``
build on it.
"""

from regsim.config import ConfigError, WorldConfig, load_world_config, parse_world_config
from regsim.decision import (
    ActionSpace,
    Context,
    ContextBatch,
    Decision,
    DecisionBatch,
    DecisionKind,
    Feedback,
    Policy,
    RuleViolation,
)
from regsim.metrics import KPI_NAMES, kpis, kpis_by_segment
from regsim.simulate import SimulationResult, simulate
from regsim.world import World

__version__ = "0.1.0"

__all__ = [
    "KPI_NAMES",
    "ActionSpace",
    "ConfigError",
    "Context",
    "ContextBatch",
    "Decision",
    "DecisionBatch",
    "DecisionKind",
    "Feedback",
    "Policy",
    "RuleViolation",
    "SimulationResult",
    "World",
    "WorldConfig",
    "kpis",
    "kpis_by_segment",
    "load_world_config",
    "parse_world_config",
    "simulate",
]
