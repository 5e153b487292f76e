"""The common ground of the experiment config's sections: the strict, frozen pydantic base and the name rule.

Every section of :class:`experiments.config.ExperimentConfig` derives from :class:`_Section` (unknown keys refused,
frozen, defaults validated); report names (of the experiment and of its agents) follow :data:`_NAME`.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

__all__: list[str] = []

# Names become folder names (agents/<name>/, tb/<name>/) and --set path parts, so keep them simple.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
