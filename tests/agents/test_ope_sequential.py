"""Per-decision IS and DR over variable-length trajectories, on a small MDP whose value is computed exactly."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from agents.ope import TrajectoryFeedback
from agents.ope.estimators import ips
from agents.ope.inputs import BanditFeedback
from agents.ope.sequential import estimate_sequential, pddr, pddr_state, pdis

N_STATES, N_ACTIONS, HORIZON = 3, 2, 6


@dataclasses.dataclass(frozen=True)
class SmallMDP:
    """A finite MDP that ends after each step with probability ``1 - keep[s, a]``, and at the horizon."""

    start: np.ndarray  # (S,)
    reward: np.ndarray  # (S, A) expected reward
    transition: np.ndarray  # (S, A, S)
    keep: np.ndarray  # (S, A)
    logging: np.ndarray  # (S, A)
    target: np.ndarray  # (S, A)

    def q_values(self, gamma: float) -> np.ndarray:
        """Q_t(s, a) under the target, shape (HORIZON + 1, S, A); Q_HORIZON = 0."""
        q = np.zeros((HORIZON + 1, N_STATES, N_ACTIONS))
        for t in range(HORIZON - 1, -1, -1):
            v_next = (self.target * q[t + 1]).sum(axis=1)
            q[t] = self.reward + gamma * self.keep * (self.transition @ v_next)
        return q

    def true_value(self, gamma: float) -> float:
        return float(self.start @ (self.target * self.q_values(gamma)[0]).sum(axis=1))


def _mdp(seed: int = 0, *, deterministic: bool = False) -> SmallMDP:
    """A random small MDP; ``deterministic``: one next state per (s, a) and no early end (only actions vary)."""
    rng = np.random.default_rng(seed)
    logging = rng.dirichlet(np.full(N_ACTIONS, 5.0), size=N_STATES)
    transition = rng.dirichlet(np.ones(N_STATES), size=(N_STATES, N_ACTIONS))
    keep = rng.uniform(0.6, 0.9, size=(N_STATES, N_ACTIONS))
    if deterministic:
        transition = np.eye(N_STATES)[rng.integers(0, N_STATES, size=(N_STATES, N_ACTIONS))]
        keep = np.ones((N_STATES, N_ACTIONS))
    return SmallMDP(
        start=rng.dirichlet(np.ones(N_STATES)),
        reward=rng.normal(1.0, 1.0, size=(N_STATES, N_ACTIONS)),
        transition=transition,
        keep=keep,
        logging=logging,
        target=np.roll(logging, 1, axis=1) * 0.6 + 0.2,
    )


def _log(
    mdp: SmallMDP, n: int, rng: np.random.Generator, gamma: float = 1.0, *, noise_sd: float = 0.5
) -> TrajectoryFeedback:
    """Roll the logging policy out for ``n`` trajectories; q fields from the exact Q of the target."""
    q = mdp.q_values(gamma)
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("traj", "step", "r", "p", "pi", "q", "v", "v_next")}
    state = rng.choice(N_STATES, size=n, p=mdp.start)
    alive = np.arange(n)
    for t in range(HORIZON):
        s = state[alive]
        a = (rng.random(len(alive)) > mdp.logging[s, 0]).astype(int)
        nxt = np.array([rng.choice(N_STATES, p=mdp.transition[si, ai]) for si, ai in zip(s, a, strict=True)])
        cont = (rng.random(len(alive)) < mdp.keep[s, a]) & (t + 1 < HORIZON)
        v_next = np.where(cont, (mdp.target[nxt] * q[t + 1][nxt]).sum(axis=1), 0.0)
        for key, value in (
            ("traj", alive),
            ("step", np.full(len(alive), t)),
            ("r", mdp.reward[s, a] + rng.normal(0.0, noise_sd, size=len(alive))),
            ("p", mdp.logging[s, a]),
            ("pi", mdp.target[s, a]),
            ("q", q[t][s, a]),
            ("v", (mdp.target[s] * q[t][s]).sum(axis=1)),
            ("v_next", v_next),
        ):
            rows[key].append(value)
        state[alive] = nxt
        alive = alive[cont]
        if len(alive) == 0:
            break
    cat = {k: np.concatenate(v) for k, v in rows.items()}
    order = rng.permutation(len(cat["r"]))  # rows in no particular order: the estimators sort them
    return TrajectoryFeedback(
        trajectory=cat["traj"][order],
        step=cat["step"][order],
        reward=cat["r"][order],
        pscore=cat["p"][order],
        target_prob=cat["pi"][order],
        q_logged=cat["q"][order],
        q_target=cat["v"][order],
        v_next=cat["v_next"][order],
    )


@pytest.mark.statistical
@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_sequential_estimators_are_unbiased_on_a_small_mdp(gamma: float) -> None:
    mdp = _mdp()
    truth = mdp.true_value(gamma)
    names = ("pdis", "pddr", "pddr-v")
    covered = dict.fromkeys(names, 0)
    errors: dict[str, list[float]] = {name: [] for name in names}
    for seed in range(10):
        fb = _log(mdp, 600, np.random.default_rng(seed), gamma)
        assert fb.q_logged is not None and fb.q_target is not None and fb.v_next is not None
        # A wrong model, so that DR's unbiasedness is not the model's doing.
        # (V(s_{t+1}) shifted with V(s_t): the same wrong model at the next state, 0 where the trajectory ended.)
        wrong = dataclasses.replace(
            fb,
            q_logged=fb.q_logged + 1.0,
            q_target=fb.q_target + 1.0,
            v_next=np.where(fb.v_next != 0, fb.v_next + 1, 0),
        )
        for name, result in estimate_sequential(wrong, seed=seed, gamma=gamma, n_bootstrap=200).items():
            covered[name] += result.ci_low <= truth <= result.ci_high
            errors[name].append(result.value - truth)
    for name in names:
        err = np.asarray(errors[name])
        assert covered[name] >= 8, (name, covered[name])
        assert abs(err.mean()) < 3 * err.std(ddof=1) / math.sqrt(len(err)), (name, err.mean())


def test_an_exact_model_makes_per_decision_dr_far_tighter_than_pdis() -> None:
    # Where only the actions are random, an exact model leaves DR with the start state's variance alone.
    mdp = _mdp(deterministic=True)
    fb = _log(mdp, 2000, np.random.default_rng(1), noise_sd=0.0)
    results = estimate_sequential(fb, seed=0, n_bootstrap=200)
    width = {name: r.ci_high - r.ci_low for name, r in results.items()}
    assert width["pddr"] < 0.5 * width["pdis"]
    assert width["pddr-v"] < 0.5 * width["pdis"]
    assert results["pddr"].ci_low <= mdp.true_value(1.0) <= results["pddr"].ci_high
    assert results["pdis"].n_bootstrap == 200
    assert results["pdis"].diagnostics.n_clusters == 2000


def test_pddr_state_takes_the_next_steps_value_when_v_next_is_not_given() -> None:
    fb = _log(_mdp(), 300, np.random.default_rng(4))
    assert pddr_state(dataclasses.replace(fb, v_next=None)) == pytest.approx(pddr_state(fb), abs=1e-10)
    assert pddr_state(dataclasses.replace(fb, v_next=np.zeros(fb.m))) != pytest.approx(pddr_state(fb), abs=1e-3)


def test_one_step_trajectories_reduce_pdis_to_ips() -> None:
    rng = np.random.default_rng(2)
    n = 50
    pscore, target, reward = rng.uniform(0.2, 1, n), rng.uniform(0, 1, n), rng.normal(size=n)
    fb = TrajectoryFeedback(
        trajectory=np.arange(n), step=np.zeros(n, int), reward=reward, pscore=pscore, target_prob=target
    )
    bandit = BanditFeedback(cluster=np.arange(n), reward=reward, pscore=pscore, target_prob=target)
    assert pdis(fb) == pytest.approx(ips(bandit))


def test_pdis_weights_each_reward_by_the_decisions_before_it() -> None:
    # One trajectory of three steps: rho = 2, 2*0.5, 2*0.5*3; discount 0.5.
    fb = TrajectoryFeedback(
        trajectory=np.array([4, 4, 4]),
        step=np.array([2, 0, 1]),
        reward=np.array([1.0, 1.0, 1.0]),
        pscore=np.array([0.25, 0.5, 1.0]),
        target_prob=np.array([0.75, 1.0, 0.5]),
        q_logged=np.array([0.0, 0.0, 0.0]),
        q_target=np.array([1.0, 1.0, 1.0]),
        v_next=np.array([0.0, 1.0, 1.0]),
    )
    assert pdis(fb, gamma=0.5) == pytest.approx(2.0 + 0.5 * 1.0 + 0.25 * 3.0)
    # pddr: sum_t g^t [rho_t (r_t - q_t) + rho_{t-1} v_t], rho_{-1} = 1.
    assert pddr(fb, gamma=0.5) == pytest.approx((2 + 1) + 0.5 * (1 + 2) + 0.25 * (3 + 1))
    # pddr-v: v_0 + sum_t g^t rho_t (r_t + g v_{t+1} - v_t).
    assert pddr_state(fb, gamma=0.5) == pytest.approx(1 + 2 * 0.5 + 0.5 * 1 * 0.5 + 0.25 * 3 * (1 + 0 - 1))


def test_a_deterministic_logger_or_a_missing_model_is_refused() -> None:
    fb = _log(_mdp(), 100, np.random.default_rng(3))
    deterministic = dataclasses.replace(fb, pscore=np.ones(fb.m), target_prob=np.ones(fb.m))
    for result in estimate_sequential(deterministic, seed=0, n_bootstrap=10).values():
        assert math.isnan(result.value) and "deterministic" in (result.refused or "")
    no_model = dataclasses.replace(fb, q_logged=None, q_target=None)
    results = estimate_sequential(no_model, seed=0, n_bootstrap=10)
    assert math.isfinite(results["pdis"].value)
    assert "q_logged" in (results["pddr"].refused or "")
    assert "q_target" in (results["pddr-v"].refused or "")
    with pytest.raises(ValueError, match="q_logged"):
        pddr(no_model)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"step": [0, 2]}, "without gaps or repeats"),
        ({"step": [0, 0]}, "without gaps or repeats"),
        ({"step": [-1, 0]}, "step must be >= 0"),
        ({"pscore": [0.0, 1.0]}, "pscore must lie in"),
        ({"q_target": [1.0]}, "q_target must have the same length"),
        ({"trajectory": [0.5, 0.5]}, "trajectory must hold integers"),
    ],
)
def test_bad_trajectories_are_refused_naming_the_field(change: dict[str, list[float]], message: str) -> None:
    good = {"trajectory": [0, 0], "step": [0, 1], "reward": [1.0, 1.0], "pscore": [1.0, 0.5], "target_prob": [1.0, 1.0]}
    with pytest.raises(ValueError, match=message):
        TrajectoryFeedback(**{**good, **change})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gamma must lie in"):
        pdis(TrajectoryFeedback(**good), gamma=1.5)  # type: ignore[arg-type]
