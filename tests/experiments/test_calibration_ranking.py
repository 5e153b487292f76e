"""The back-test's ranking of candidate policies (experiments.calibration.ranking): the rank agreement's
arithmetic, the policy that switches from the log's decisions to a candidate at the cut, and the ranking on a
small log from an exploring logger."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.compute as pc
import pytest

import agents
from experiments.calibration.ranking import SwitchAtCut, is_stochastic, rank_agreement, rank_candidates
from experiments.calibration.replaying import LoggedDecisions, NoAction
from experiments.calibration.report import ranking_sentence
from regsim import WorldConfig, simulate

WORLD = WorldConfig()


@pytest.fixture(scope="module")
def log():
    return simulate(WORLD, agents.make("epsilon-mixture", seed=5), arrangements=300, months=2, seed=5)


def test_rank_agreement_counts_pairs_ordered_alike() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert rank_agreement(a, a * 10) == (1.0, 1.0, True)
    tau, agree, best = rank_agreement(a, -a)
    assert (tau, agree, best) == (-1.0, 0.0, False)
    # One of six pairs swapped: tau = (5 - 1) / 6; NaN entries are left out.
    tau, agree, best = rank_agreement(np.array([1.0, 2.0, 3.0, 4.0, np.nan]), np.array([2.0, 1.0, 3.0, 4.0, 0.0]))
    assert tau == pytest.approx(4 / 6) and agree == pytest.approx(5 / 6) and best
    assert math.isnan(rank_agreement(np.array([1.0]), np.array([1.0]))[0])
    # A pair tied on one side counts half.
    assert rank_agreement(np.array([1.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0]))[1] == pytest.approx(2.5 / 3)
    with pytest.raises(ValueError, match="lengths differ"):
        rank_agreement(a, a[:2])


def test_the_ranking_summary_reads_n_a_where_fewer_than_two_candidates_compare() -> None:
    # One candidate (or OPE without support for the others): the agreement measures are None in the payload.
    rk = {
        "kendall_tau": None,
        "pair_agreement": None,
        "separated_pairs": 0,
        "separated_agreement": None,
        "same_best": False,
        "level": 0.9,
        "world_inside_ope_interval": 1,
        "candidates": [{"policy": "silent"}],
    }
    line = ranking_sentence(rk)
    assert "Kendall's tau n/a; pairs ordered alike n/a" in line and "0 pairs OPE separates, n/a ordered" in line
    rk |= {"kendall_tau": 0.5, "pair_agreement": 0.75, "separated_agreement": 1.0, "separated_pairs": 2}
    assert "tau 0.50; pairs ordered alike 75%; of the 2 pairs OPE separates, 100% ordered alike" in ranking_sentence(rk)


def test_switch_at_cut_hands_over_to_the_candidate_on_the_cut_day() -> None:
    policy = SwitchAtCut(NoAction(), agents.make("static-dunning"), cut=30.0)
    run = simulate(WORLD, policy, arrangements=200, months=2, seed=1)
    ev = run.events
    dec = pc.equal(ev.column("event").cast("string"), "decision")
    t = pc.filter(ev.column("time"), dec).to_numpy()
    channel = pc.filter(ev.column("a_channel"), dec).to_numpy()
    assert (channel[t < 30.0] == 0).all()  # no contact before the cut
    assert (channel[t >= 30.0] > 0).any()  # the candidate's reminders after it


def test_the_ranking_compares_ope_and_the_world_on_held_out_decisions(log) -> None:
    assert is_stochastic(log.events)
    assert not is_stochastic(simulate(WORLD, agents.make("static-dunning"), arrangements=50, months=1, seed=0).events)
    decisions = LoggedDecisions.from_log(log.events)
    r = rank_candidates(
        log.events,
        WORLD,
        WORLD,
        decisions,
        ("static-dunning", "random"),
        arrangements=300,
        months=2,
        cutoff_days=30.0,
        seed=0,
        n_bootstrap=50,
    )
    assert [c.policy for c in r.candidates] == ["static-dunning", "random"]
    for c in r.candidates:
        assert c.decisions > 0 and np.isfinite(c.world) and c.world_se > 0
        assert c.ope_low <= c.ope <= c.ope_high
    assert r.pair_agreement in (0.0, 1.0) and r.cutoff_days == 30.0
    assert 0 <= r.inside <= 2 and r.separated_pairs in (0, 1)
    with pytest.raises(ValueError, match="candidates: unknown"):
        rank_candidates(
            log.events, WORLD, WORLD, decisions, ("nope",), arrangements=10, months=2, cutoff_days=30.0, seed=0
        )
