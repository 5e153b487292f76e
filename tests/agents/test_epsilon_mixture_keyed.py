"""``epsilon-mixture``'s draws are keyed by decision point (``agents/ope/behaviour.py``): a decision does not depend
on which other decisions share its batch or came before it, and the keyed draws still follow the stated mixture."""

from __future__ import annotations

import numpy as np
import pytest

from agents.ope.behaviour import EpsilonMixture
from agents.ope.candidates import effective_actions, uniform_probabilities
from agents.ope.logged import LoggedDecisions, logged_decisions
from regsim import load_world_config, simulate
from regsim.context import ContextBatch
from tests.experiments.conftest import REPO

WORLD = load_world_config(REPO / "configs" / "population" / "default.yaml")


@pytest.fixture(scope="module")
def logged() -> LoggedDecisions:
    log = simulate(WORLD, EpsilonMixture(base="static-dunning", epsilon=0.3, seed=3), arrangements=80, months=3, seed=4)
    return logged_decisions(log.events, WORLD)


def _with_ids(contexts: ContextBatch, offset: int) -> ContextBatch:
    """The same contexts for other arrangements (ids shifted by ``offset``)."""
    columns = dict(contexts.by_name())
    columns["arrangement_id"] = columns["arrangement_id"] + offset
    return ContextBatch(space=contexts.space, columns=columns, mask=contexts.mask, forbidden=contexts.forbidden)  # type: ignore[arg-type]


def test_a_decision_does_not_depend_on_its_batch_or_on_the_decisions_before(logged: LoggedDecisions) -> None:
    """Each row decides alike alone, in a shuffled batch and after other batches; the log's own decisions are
    reproduced by a fresh mixture with the log's seed."""
    contexts = logged.contexts
    whole = EpsilonMixture(base="static-dunning", epsilon=0.3, seed=3).decide_batch(contexts)
    np.testing.assert_array_equal(whole.actions, logged.actions)
    order = np.random.default_rng(0).permutation(len(contexts))
    later = EpsilonMixture(base="static-dunning", epsilon=0.3, seed=3)
    later.decide_batch(contexts.take(order[: len(order) // 2]))  # decisions before: they must not shift any draw
    shuffled = later.decide_batch(contexts.take(order))
    np.testing.assert_array_equal(shuffled.actions, whole.actions[order])
    np.testing.assert_array_equal(shuffled.propensity, whole.propensity[order])
    other_seed = EpsilonMixture(base="static-dunning", epsilon=0.3, seed=4).decide_batch(contexts)
    assert np.mean(np.all(other_seed.actions == whole.actions, axis=1)) < 0.95


def test_the_keyed_draws_follow_the_stated_mixture(logged: LoggedDecisions) -> None:
    """Over many arrangements in the logged contexts, the share of decisions that are the base's and the share of
    each part's uniform options agree with the mixture's probabilities (4 binomial standard deviations)."""
    mixture = EpsilonMixture(base="static-dunning", epsilon=0.3, seed=11)
    replicas = 60
    batches = [_with_ids(logged.contexts, 1_000_000 * k) for k in range(replicas)]
    contexts = ContextBatch.concat(batches)
    decided = mixture.decide_batch(contexts)
    base = effective_actions(contexts, mixture.base.decide_batch(contexts).actions)
    is_base = np.all(decided.actions == base, axis=1)
    p_base = (1.0 - mixture.epsilon) + mixture.epsilon * uniform_probabilities(contexts, base)
    sd = np.sqrt(np.sum(p_base * (1.0 - p_base)))
    assert abs(is_base.sum() - p_base.sum()) < 4.0 * sd
    np.testing.assert_allclose(decided.propensity, mixture.action_probabilities(contexts, decided.actions))
    # Each channel's count against its expectation, sum over rows of (1 - eps)[base's] + eps / (allowed channels).
    mask = contexts.part_mask(0).astype(float)
    for channel in range(mask.shape[1]):
        p = (1.0 - mixture.epsilon) * (base[:, 0] == channel) + mixture.epsilon * mask[:, channel] / mask.sum(axis=1)
        count = np.sum(decided.actions[:, 0] == channel)
        assert abs(count - p.sum()) <= 4.0 * np.sqrt(np.sum(p * (1.0 - p))) + 1e-9, channel
