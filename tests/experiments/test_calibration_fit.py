"""The MSM objective, the local linear model, its noise correction and the Gauss-Newton step
(experiments.calibration.fit), on synthetic moments with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.calibration.fit import (
    INVALID,
    LocalModel,
    Objective,
    gauss_newton_step,
    local_model,
    scaled_curvature,
)

RNG_SEED = 20


def test_objective_is_the_inverse_variance_sum() -> None:
    obj = Objective(np.array([0.5, 0.2, 0.1]), np.array([0.01, 0.04, 0.01]))
    sim = np.array([0.6, 0.2, np.nan])
    # (0.1^2 / 0.01) + 0 + 1 for the missing moment
    assert obj.value(sim) == pytest.approx(2.0)
    assert obj.value(np.full(3, np.nan)) == INVALID


def test_local_model_recovers_a_linear_map() -> None:
    rng = np.random.default_rng(RNG_SEED)
    jac = rng.normal(size=(6, 2))
    center, widths = np.array([0.3, 2.0]), np.array([0.5, 4.0])
    thetas = center + widths * rng.uniform(-0.2, 0.2, size=(12, 2))
    values = 0.4 + (thetas - center) @ jac.T
    model = local_model(thetas, values, center, widths)
    np.testing.assert_allclose(model.jacobian, jac, atol=1e-9)
    np.testing.assert_allclose(model.intercept, 0.4, atol=1e-9)
    assert model.residual_var.max() < 1e-20
    with pytest.raises(ValueError, match="at least 4 simulations"):
        local_model(thetas[:3], values[:3], center, widths)


def test_gauss_newton_solves_a_linear_problem_in_one_step() -> None:
    rng = np.random.default_rng(RNG_SEED)
    jac = rng.normal(size=(8, 2)) * 5
    truth, center, widths = np.array([0.1, -0.2]), np.zeros(2), np.ones(2)
    obj = Objective(jac @ truth, np.full(8, 1e-4))
    model = LocalModel(center, np.zeros(8), jac, np.zeros(8), np.eye(2), 10)
    np.testing.assert_allclose(gauss_newton_step(obj, model, widths), truth, rtol=1e-6)


def test_noise_correction_takes_off_what_pure_noise_adds() -> None:
    # Moments that do not depend on the parameters at all, only noise: the raw J'WJ is positive, the corrected
    # curvature is about zero on average.
    rng = np.random.default_rng(RNG_SEED)
    center, widths = np.zeros(2), np.ones(2)
    corrected, raw = [], []
    for _ in range(200):
        thetas = rng.uniform(-0.15, 0.15, size=(10, 2))
        values = rng.normal(0.0, 0.01, size=(10, 40))
        model = local_model(thetas, values, center, widths)
        obj = Objective(np.zeros(40), np.full(40, 1e-4))
        corrected.append(np.trace(scaled_curvature(obj, model, widths)))
        js = model.jacobian
        raw.append(np.trace(js.T @ js) / 1e-4)
    assert np.mean(raw) > 1000
    assert abs(np.mean(corrected)) < 0.1 * np.mean(raw)


def test_sized_world_keeps_each_resource_per_arrangement() -> None:
    from experiments.calibration.simulation import sized_world
    from regsim import WorldConfig

    base = WorldConfig()
    assert sized_world(base, 8_000, 8_000) is base
    small = sized_world(base, 50_000, 20_000)
    assert small.capacity.collector_minutes_per_call == pytest.approx(base.capacity.collector_minutes_per_call * 2.5)
    assert small.capacity.robocall_minutes_per_call == pytest.approx(base.capacity.robocall_minutes_per_call * 2.5)
    assert small.capacity.letters_per_day == round(base.capacity.letters_per_day / 2.5)
    assert small.capacity.collectors == base.capacity.collectors and small.population == base.population
    with pytest.raises(ValueError, match="arrangements"):
        sized_world(base, 0, 10)
