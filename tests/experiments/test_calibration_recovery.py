"""Validation by recovery, small: three parameters of the default world perturbed, a log of 4,000 arrangements
(6 months) simulated under ``epsilon-mixture``, calibrated from the default world with the default optimiser and
its budget; each true value must lie in its interval, and the moments must identify at least two of the three (so
that an interval as wide as the bounds does not pass for a recovery). The full table (ten parameters) is in
docs/calibration_fit.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.calibration.recovery import recover
from experiments.calibration.spec import load_spec
from regsim import WorldConfig

SPEC = Path(__file__).resolve().parents[2] / "configs" / "calibration" / "three_params.yaml"
TRUTH = {
    "population.types.forgetful.attention": 0.3,  # default 0.15
    "population.types.unwilling.share": 0.18,  # default 0.10
    "population.types.forgetful.notice.email": 0.3,  # default 0.17
}


@pytest.mark.statistical
def test_three_parameters_are_recovered_within_their_intervals() -> None:
    spec = load_spec(SPEC, WorldConfig())
    cal, rows = recover(spec, TRUTH, arrangements=4000, months=6, seed=1, log_seed=7)  # the default optimiser
    table = "\n".join(f"{r.path}: true {r.true} est {r.estimate:.4g} [{r.low:.4g}, {r.high:.4g}]" for r in rows)
    assert all(r.covered for r in rows), table
    assert sum(r.identified for r in rows) >= 2, table
    assert cal.fit.objective < 2.0 * cal.fit.objective_dof, table
