"""The policy runner's time budget: on the worker thread, and on the inline path once calls are proven fast."""

from __future__ import annotations

import threading
import time

import pytest

from agents.base import BasePolicy
from regsim.context import ContextBatch
from regsim.decision import DecisionBatch
from serving.policies import PolicyRunner
from tests.regsim.test_rules import make_batch

BUDGET_S = 0.05


class _Scripted(BasePolicy):
    """Answers "no contact", sleeping as long as its script says for each call (then not at all)."""

    name = "test-scripted"

    def __init__(self, sleeps: list[float] | None = None) -> None:
        self.sleeps = list(sleeps or [])
        self.threads: list[str] = []

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        self.threads.append(threading.current_thread().name)
        if self.sleeps:
            time.sleep(self.sleeps.pop(0))
        return DecisionBatch.none(len(contexts))


class _Fallback(_Scripted):
    name = "test-fallback"


def _runner(active: _Scripted, inline_after: int = 4) -> tuple[PolicyRunner, ContextBatch]:
    batch, rules = make_batch([{}, {}])
    return PolicyRunner(active, _Fallback(), None, rules, BUDGET_S, inline_after=inline_after), batch


def test_calls_move_inline_after_enough_fast_ones_and_back_to_the_thread_after_a_slow_one() -> None:
    active = _Scripted([0.0] * 4 + [BUDGET_S * 0.5])  # 4 fast calls, then one within the budget but not fast
    runner, batch = _runner(active)
    try:
        results = [runner.decide(batch) for _ in range(10)]
    finally:
        runner.close()
    caller = threading.current_thread().name
    assert all(r.fallback_reason is None and r.policy == "test-scripted" for r in results)
    # Calls 1-4 on the worker thread; the 5th inline (slow, but in time: its answer stands); 6-9 back on the
    # worker thread until four in a row are fast again; the 10th inline.
    inline = [t == caller for t in active.threads]
    assert inline == [False] * 4 + [True] + [False] * 4 + [True]


def test_an_inline_call_over_the_budget_is_discarded_and_the_fallback_answers() -> None:
    active = _Scripted([0.0] * 4 + [BUDGET_S * 2])
    runner, batch = _runner(active)
    try:
        results = [runner.decide(batch) for _ in range(6)]
    finally:
        runner.close()
    assert [r.fallback_reason for r in results] == [None] * 4 + ["timeout", None]
    assert results[4].policy == "test-fallback"
    assert active.threads[4] == threading.current_thread().name  # (it ran inline)
    assert active.threads[5] != threading.current_thread().name  # the next call is guarded again


def test_a_stuck_call_on_the_worker_thread_is_cut_at_the_budget() -> None:
    active = _Scripted([BUDGET_S * 4])
    runner, batch = _runner(active)
    try:
        started = time.perf_counter()
        result = runner.decide(batch)
        waited = time.perf_counter() - started
    finally:
        runner.close()
    assert result.fallback_reason == "timeout" and result.policy == "test-fallback"
    assert waited < BUDGET_S * 3


def test_inline_after_zero_keeps_every_call_on_the_worker_thread() -> None:
    active = _Scripted()
    runner, batch = _runner(active, inline_after=0)
    try:
        for _ in range(40):
            runner.decide(batch)
    finally:
        runner.close()
    assert threading.current_thread().name not in active.threads


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [("budget_s", {"budget_s": 0.0}), ("inline_after", {"inline_after": -1}), ("inline_below", {"inline_below": 1.5})],
)
def test_bad_settings_are_refused_naming_the_field(field: str, kwargs: dict[str, float]) -> None:
    _, rules = make_batch([{}])
    values: dict[str, float] = {"budget_s": BUDGET_S, **kwargs}
    with pytest.raises(ValueError, match=field):
        PolicyRunner(_Scripted(), _Scripted(), None, rules, **values)  # type: ignore[arg-type]
