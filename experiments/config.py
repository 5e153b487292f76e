"""The typed experiment config of ``regsim run``: what to train, what to compare, how to evaluate, what to write.

An experiment config is a YAML file (``configs/experiments/*.yaml``) validated as frozen pydantic sections
(:class:`ExperimentConfig`); unknown keys and bad values are refused with a :class:`ExperimentConfigError` that
names the dotted path of every offending field and what is allowed there, in the style of
:class:`regsim.config.ConfigError`.

Overrides (``regsim run CONFIG --set a.b.c=VALUE``, :func:`apply_override`) change any field before
validation: ``VALUE`` is parsed as YAML (``3``, ``0.5``, ``true``, ``[1, 2]``, ``{alpha: 2}``, ``null``), and the
path is checked against the schema, so a bad path names the path and the keys allowed at that level. Items of
``agents`` are addressed by their ``name`` (``agents.mppo.train.steps=512``) or by position
(``agents.0.train.steps=512``). Fields inside free-form mappings (``population.overrides``,
``agents.<name>.hyperparameters``, ``env.reward_kwargs``) may be created by ``--set``; they are validated by what
consumes them (the world config, the agent's constructor, the reward function) when the config is validated.
In ``sweep.grid`` and ``sweep.random``, whose keys are dotted paths themselves, the rest of the path is one key:
``--set sweep.grid.agents.mppo.train.steps=[1024, 4096]``.

Sweeps (:class:`SweepConfig`) use the same dotted paths for their ``grid`` and ``random`` fields; every trial's
config is built with :func:`apply_override` and validated before anything runs.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Sequence
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from experiments.config_agents import AGENT_KINDS, BANDIT_KINDS, DEEP_RL_KINDS, AgentConfig, TrainConfig
from experiments.config_base import _NAME, _Section
from experiments.config_sweep import RandomRange, SweepConfig
from regsim.config import ConfigError, WorldConfig, load_world_config

__all__ = [
    "AGENT_KINDS",
    "BANDIT_KINDS",
    "DEEP_RL_KINDS",
    "POPULATION_DIR",
    "AgentConfig",
    "EnvConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "ExperimentConfigError",
    "FeatureImportanceConfig",
    "OutputsConfig",
    "PopulationRef",
    "RandomRange",
    "SweepConfig",
    "TrainConfig",
    "apply_override",
    "load_experiment_config",
    "parse_experiment_config",
    "parse_override",
    "population_path",
]

#: Where population configs named by a bare name live.
POPULATION_DIR = Path(__file__).resolve().parent.parent / "configs" / "population"


class ExperimentConfigError(ValueError):
    """An experiment config or an override is invalid; the message names the dotted field path and what is allowed."""


def population_path(value: str) -> Path:
    """A population config: a YAML path, or the name of a file under ``configs/population/``."""
    p = Path(value)
    if p.suffix in (".yaml", ".yml"):
        return p
    return POPULATION_DIR / f"{value}.yaml"


# ---------------------------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------------------------
class PopulationRef(_Section):
    """The simulated world: a population config and overrides of its fields."""

    config: str = Field("default", description="A YAML path, or a name under configs/population/ (e.g. default).")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="World-config fields to replace, nested by section like the population YAML "
        "(e.g. {capacity: {collectors: 2}}); validated by regsim.config.",
    )

    @model_validator(mode="after")
    def _world_is_valid(self) -> PopulationRef:
        self.world()  # raises with the world config's own dotted paths
        return self

    def world(self) -> WorldConfig:
        """The validated world config (loaded once per distinct ``config`` and ``overrides``)."""
        return _world(self.config, yaml.safe_dump(self.overrides, sort_keys=True))


@functools.lru_cache(maxsize=32)
def _world(config: str, overrides_yaml: str) -> WorldConfig:
    path = population_path(config)
    if not path.is_file():
        known = sorted(p.stem for p in POPULATION_DIR.glob("*.yaml"))
        raise ValueError(f"population config {config!r} not found ({path}); names known: {known}, or a YAML path")
    world = load_world_config(path)
    overrides = yaml.safe_load(overrides_yaml) or {}
    bad = [k for k, v in overrides.items() if not isinstance(v, dict)]
    if bad:
        raise ValueError(f"overrides must map world-config sections to mappings of fields; not mappings: {bad}")
    try:
        return world.with_overrides(**overrides)
    except ConfigError as exc:
        # One line per offending world field, each named below population.overrides.
        found = [ln.strip() for ln in str(exc).splitlines() if not ln.startswith("invalid world config")]
        raise ValueError("\n".join(f"overrides.{ln}" for ln in found if ln)) from None


class EnvConfig(_Section):
    """The learning problem: the reward a learner optimises and the horizon of its episodes."""

    reward: str = Field(
        "runoff_value",
        description="A name in regsim.rewards.REWARDS (default: the run-off verdict's objective, net recovery x 0.01 "
        "plus 3.0 per completed plan).",
    )
    reward_kwargs: dict[str, float] = Field(
        default_factory=dict, description="Keyword arguments of the reward function (e.g. cost_weight)."
    )
    months: int | None = Field(
        None,
        ge=1,
        le=120,
        description="A fixed horizon of a training episode / online run (months); null (the default): run-off, "
        "a horizon that holds every arrangement's cap (regsim.runoff.covering_months), so episodes end with "
        "their arrangement.",
    )

    @model_validator(mode="after")
    def _reward_exists(self) -> EnvConfig:
        from regsim.rewards import REWARDS, reward_parameters

        if self.reward not in REWARDS:
            raise ValueError(f"reward: unknown {self.reward!r}; allowed: {sorted(REWARDS)}")
        params = reward_parameters(self.reward)
        unknown = sorted(set(self.reward_kwargs) - set(params))
        if unknown:
            raise ValueError(f"reward_kwargs: {self.reward!r} takes no {unknown}; allowed: {params or 'none'}")
        return self


class EvaluationConfig(_Section):
    """The paired evaluation (:func:`agents.evaluate.evaluate`) of every agent and policy against the baseline."""

    arrangements: int = Field(5000, ge=1, description="Arrangements per run.")
    months: int | None = Field(
        None,
        ge=1,
        le=120,
        description="A fixed horizon of each evaluation run (months of 30 days); null (the default): a run-off, "
        "each arrangement followed to its end or its cap (plan length + simulation.runoff_months_after_plan), "
        "the censored share reported.",
    )
    cap_factor: float = Field(
        1.0,
        gt=0.0,
        le=10.0,
        description="Stretch of the run-off cap (unit: factor); 1.5 checks that a verdict does not hinge on the cap. "
        "Only for a run-off (months null).",
    )
    seeds: int | list[int] = Field(
        5, description="A count K (K seeds derived from the top seed) or an explicit list of distinct seeds >= 0."
    )
    baseline: str = Field("static-dunning", description="Report name of the policy differences are taken to.")
    oracle: str | None = Field(
        None, description="'hindsight-oracle' (the upper reference of the gap closed, agents.hindsight), or null."
    )
    level: float = Field(0.95, gt=0.0, lt=1.0, description="Confidence level of the paired intervals.")
    segments: list[str] = Field(
        default_factory=lambda: ["debtor_type", "debt_eur"],
        description="Segmentations to report (names in agents.evaluate.DEFAULT_SEGMENTS); [] for 'all' only.",
    )

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, int):
            if v < 1:
                raise ValueError(f"a count must be >= 1, got {v}")
        elif not v or min(v) < 0 or len(set(v)) != len(v):
            raise ValueError(f"a list must hold distinct integers >= 0, got {v}")
        return v

    @model_validator(mode="after")
    def _cap_needs_runoff(self) -> EvaluationConfig:
        if self.months is not None and self.cap_factor != 1.0:
            raise ValueError(f"cap_factor ({self.cap_factor}) stretches the run-off cap; set months to null for it")
        return self

    @field_validator("segments")
    @classmethod
    def _segments(cls, v: list[str]) -> list[str]:
        from agents.evaluate import DEFAULT_SEGMENTS

        unknown = [s for s in v if s not in DEFAULT_SEGMENTS]
        if unknown:
            raise ValueError(f"unknown {unknown}; allowed: {sorted(DEFAULT_SEGMENTS)}")
        if len(set(v)) != len(v):
            raise ValueError(f"named more than once: {v}")
        return v


class FeatureImportanceConfig(_Section):
    """Permutation feature importance of each learned agent (``experiments.analysis.feature_importance``)."""

    enabled: bool = Field(True, description="Compute it.")
    arrangements: int = Field(300, ge=1, description="Arrangements of each simulated run.")
    months: int = Field(3, ge=1, le=120, description="Horizon of each simulated run (months).")
    repeats: int = Field(3, ge=1, description="Permutations per feature.")


class OutputsConfig(_Section):
    """What the run writes besides the evaluation tables."""

    tensorboard: bool = Field(True, description="TensorBoard event files under tb/<agent>/.")
    report: bool = Field(True, description="report.html at the end (experiments.report.write_report).")
    feature_importance: FeatureImportanceConfig = Field(default_factory=FeatureImportanceConfig)


class ExperimentConfig(_Section):
    """A whole experiment: the question, the world, the agents and policies, the evaluation and the outputs."""

    name: str = Field(..., description="Short name (shown in the report, default run folder runs/<name>).")
    question: str = Field(..., min_length=1, description="The question the experiment answers, in plain words.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="The one seed every random thing derives from.")
    population: PopulationRef = Field(default_factory=PopulationRef)
    env: EnvConfig = Field(default_factory=EnvConfig)
    agents: list[AgentConfig] = Field(default_factory=list)
    policies: list[str] = Field(
        default_factory=list,
        description="Registered policies to compare besides the agents (e.g. silent, one-step-oracle).",
    )
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    sweep: SweepConfig | None = None

    @field_validator("name")
    @classmethod
    def _simple_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"must be letters, digits, '-' or '_', got {v!r}")
        return v

    @field_validator("policies")
    @classmethod
    def _registered(cls, v: list[str]) -> list[str]:
        import agents

        known = agents.available()
        unknown = [p for p in v if p not in known]
        if unknown:
            raise ValueError(f"unknown {unknown}; allowed: {sorted(known)}")
        if len(set(v)) != len(v):
            raise ValueError(f"named more than once: {v}")
        return v

    @model_validator(mode="after")
    def _names(self) -> ExperimentConfig:
        import agents
        from agents.hindsight import HINDSIGHT_ORACLE

        names = [a.name for a in self.agents]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"agents: names used more than once: {twice}")
        clash = sorted(set(names) & set(self.policies))
        if clash:
            raise ValueError(f"agents: names {clash} are also in policies; give the agents other report names")
        compared = [*names, *self.policies]
        baseline = self.evaluation.baseline
        if baseline not in compared and baseline not in agents.available():
            raise ValueError(
                f"evaluation.baseline: {baseline!r} is neither an agent nor a registered policy; "
                f"allowed: {sorted({*compared, *agents.available()})}"
            )
        if self.evaluation.oracle not in (None, HINDSIGHT_ORACLE):  # the only upper reference no policy beats
            raise ValueError(
                f"evaluation.oracle: {self.evaluation.oracle!r} is not an upper reference; allowed: "
                f"[{HINDSIGHT_ORACLE!r}] or null (compare a policy such as 'one-step-oracle' among the policies)"
            )
        if not compared:
            raise ValueError("nothing to compare: give agents or policies")
        return self

    @property
    def compared(self) -> list[str]:
        """Report names of everything evaluated: agents, policies, then the baseline and oracle when missing."""
        names = [a.name for a in self.agents] + list(self.policies)
        for extra in (self.evaluation.baseline, self.evaluation.oracle):
            if extra is not None and extra not in names:
                names.append(extra)
        return names

    def agent(self, name: str) -> AgentConfig:
        """The agent of that report name."""
        for a in self.agents:
            if a.name == name:
                return a
        raise KeyError(f"no agent {name!r}; agents: {[a.name for a in self.agents]}")

    def to_yaml(self) -> str:
        """The resolved config as YAML (defaults filled), readable back by :func:`parse_experiment_config`."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------
def _unwrap(annotation: Any) -> Any:
    """The model class inside ``X | None``, or the annotation itself."""
    if get_origin(annotation) not in (Union, UnionType):
        return annotation
    args = [a for a in get_args(annotation) if a is not type(None)]
    return args[0] if len(args) == 1 else annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _agent_label(data: Any, index: int) -> str:
    try:
        name = data["agents"][index]["name"]
    except (KeyError, IndexError, TypeError):
        return str(index)
    return name if isinstance(name, str) and _NAME.match(name) else str(index)


def _allowed_at(loc: Sequence[int | str]) -> list[str] | None:
    """Field names allowed at ``loc`` (a path into the schema; list indices skipped)."""
    current: Any = ExperimentConfig
    for part in loc:
        if not _is_model(current):
            return None
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        annotation = _unwrap(field.annotation)
        if get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
        current = annotation
    return sorted(current.model_fields) if _is_model(current) else None


def _format_error(exc: ValidationError, data: Any, source: str) -> ExperimentConfigError:
    lines = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and "[" in p)]  # drop union-member tags
        shown = [
            _agent_label(data, p) if i == 1 and loc[0] == "agents" and isinstance(p, int) else str(p)
            for i, p in enumerate(loc)
        ]
        path = ".".join(shown) or "<root>"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_at(loc[:-1])
            lines.append(f"{path}: unknown field" + (f"; allowed: {allowed}" if allowed else ""))
        elif err["type"] == "missing":
            lines.append(f"{path}: required field missing")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            got = err.get("input")
            got_s = "" if isinstance(got, dict | list) else f" (got {got!r})"
            if err["type"] != "value_error":
                lines.append(f"{path}: {msg}{got_s}")
                continue
            # A section's own check names the field(s) at the start of each line: join them to the path.
            for line in msg.splitlines():
                line = line.strip()
                if re.match(r"^[\w.\-]+: ", line):
                    lines.append(line if path == "<root>" else f"{path}.{line}")
                elif line:
                    lines.append(f"{path}: {line}")
    return ExperimentConfigError(f"invalid experiment config ({source}):\n  " + "\n  ".join(lines))


# ---------------------------------------------------------------------------------------------------------------
# Loading and overriding
# ---------------------------------------------------------------------------------------------------------------
def parse_experiment_config(data: Any, source: str = "<dict>") -> ExperimentConfig:
    """Validate a nested mapping (as read from YAML) as an :class:`ExperimentConfig`.

    Raises:
        ExperimentConfigError: A field is unknown, missing or invalid; every one is named by its dotted path
            (agents by name) with what is allowed.
    """
    if not isinstance(data, dict):
        raise ExperimentConfigError(f"invalid experiment config ({source}): the top level must be a mapping")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise _format_error(exc, data, source) from None


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b.c=VALUE`` into the path and the value parsed as YAML.

    Raises:
        ExperimentConfigError: No ``=``, an empty path, or a value that is not YAML.
    """
    path, sep, raw = text.partition("=")
    path = path.strip()
    if not sep or not path or any(not p for p in path.split(".")):
        raise ExperimentConfigError(
            f"--set {text!r}: expected KEY=VALUE with a dotted KEY such as agents.mppo.train.steps"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ExperimentConfigError(f"--set {path}: the value is not YAML: {exc}") from None
    return path, value


def apply_override(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of the raw config ``data`` with the field at dotted ``path`` set to ``value`` (not yet validated).

    The path is checked against the schema as it is walked: an unknown key names the path so far and the keys
    allowed there; ``agents.<name or index>`` selects an agent. Inside free-form mappings any key may be set.

    Raises:
        ExperimentConfigError: The path does not exist in the schema.
    """
    out = copy.deepcopy(data)
    _set(out, ExperimentConfig, path.split("."), [], path, value)
    return out


def _set(node: Any, model: Any, parts: list[str], walked: list[str], path: str, value: Any) -> None:
    """Set ``parts`` below ``node`` (a raw mapping of schema ``model``; ``dict`` for a free-form mapping)."""
    part, rest = parts[0], parts[1:]
    where = ".".join(walked) or "<root>"
    if not isinstance(node, dict):
        raise ExperimentConfigError(f"--set {path}: {where} is not a mapping in the config")
    if _is_model(model):
        if part not in model.model_fields:
            raise ExperimentConfigError(
                f"--set {path}: {where}: unknown key {part!r}; allowed: {sorted(model.model_fields)}"
            )
        annotation = _unwrap(model.model_fields[part].annotation)
    else:
        annotation = Any
    here = [*walked, part]
    if not rest:
        node[part] = value
        return
    if get_origin(annotation) is list and _is_model(get_args(annotation)[0]):
        items = node.get(part)
        items = items if isinstance(items, list) else []
        names = [it.get("name") if isinstance(it, dict) else None for it in items]
        selector = rest[0]
        if selector in names:
            index = names.index(selector)
        elif selector.isdigit() and int(selector) < len(items):
            index = int(selector)
        else:
            raise ExperimentConfigError(
                f"--set {path}: {'.'.join(here)}: no item {selector!r}; allowed: names {names} or indices "
                f"0..{len(items) - 1}"
            )
        if len(rest) == 1:
            items[index] = value
        else:
            _set(items[index], get_args(annotation)[0], rest[1:], [*here, selector], path, value)
        return
    if get_origin(annotation) is dict and get_args(annotation)[1] is not Any:
        # A mapping keyed by dotted field paths (sweep.grid, sweep.random): the rest of the path is one key.
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node[part][".".join(rest)] = value
        return
    if _is_model(annotation):
        child_model: Any = annotation
    elif annotation is Any or get_origin(annotation) is dict:
        child_model = dict
    else:
        raise ExperimentConfigError(f"--set {path}: {'.'.join(here)} is a value; it has no key {rest[0]!r}")
    if not isinstance(node.get(part), dict):
        node[part] = {}
    _set(node[part], child_model, rest, here, path, value)


def read_config_data(path: str | Path) -> dict[str, Any]:
    """The raw mapping of an experiment YAML file.

    Raises:
        ExperimentConfigError: The file is missing, not YAML, or not a mapping.
    """
    p = Path(path)
    if not p.is_file():
        raise ExperimentConfigError(f"experiment config not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ExperimentConfigError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ExperimentConfigError(f"invalid experiment config ({p}): the top level must be a mapping")
    return data


def load_experiment_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Load an experiment YAML file, apply ``--set`` overrides (``KEY=VALUE`` strings) in order, and validate.

    Raises:
        ExperimentConfigError: The file, an override or the resulting config is invalid (the message names the
            dotted path).
    """
    data = read_config_data(path)
    for text in overrides:
        key, value = parse_override(text)
        data = apply_override(data, key, value)
    source = str(path) + (f" with --set {' '.join(overrides)}" if overrides else "")
    return parse_experiment_config(data, source=source)
