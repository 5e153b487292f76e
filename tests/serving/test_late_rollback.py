"""A request whose transaction fails after its work: the online learner takes it once when it runs again.

The learner changes in memory while a transaction works (decisions registered for feedback, a late payment's
correction of the learned statistics, :meth:`serving.online.OnlineLearner.rederived`). When the transaction
fails, the writer forgets what the cache and the id counters took and makes the learner take the state the store holds
(:meth:`serving.online.OnlineLearner.reload`, from :meth:`serving.writer.Writer._redo` on PostgreSQL after a
failed overlapped commit, and from the serial path's failed transaction), so the request's second run (the
writer's redo, or the client sending it again after a 500) teaches it each thing once. Checked against an
independent in-order run of the stored log (:func:`tests.serving.test_late_learner._in_order_truth`); without
the reload the learner takes a late payment's correction twice and registers a decision twice for feedback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.serving.conftest import AUTH, make_settings
from tests.serving.test_late_learner import (
    _assert_same_statistics,
    _in_order_truth,
    _recording_taken,
    open_with_pre_due_decisions,
    poster,
)


def test_a_late_payment_whose_commit_fails_is_learned_once(
    postgres_server: Any, linucb_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL (overlapped commits): a late payment's commit, then a decision's, fails once; the writer's
    redo runs each again on the state the store holds."""
    import serving.writer as writer_module

    taken = _recording_taken(monkeypatch)
    real_commit = writer_module._commit
    fail_next = [False]
    failed = [0]

    def failing_commit(conn: Any, tx: Any) -> None:
        if fail_next[0]:
            fail_next[0] = False
            failed[0] += 1
            tx.rollback()
            conn.close()
            raise RuntimeError("the commit was lost")
        real_commit(conn, tx)

    monkeypatch.setattr(writer_module, "_commit", failing_commit)
    store = postgres_server.create_database("late_commit_failure")
    app = create_app(make_settings(store, policy=str(linucb_artifact)))
    with TestClient(app, headers=AUTH) as api:
        assert app.state.regsim.writer.overlap

        post = poster(api)

        open_with_pre_due_decisions(post, 3)
        post("/v1/clock", {"time": 56.0})  # the day-33 decisions matured at 47
        learner = app.state.regsim.online
        # Late, after the day-33 decision, within its window: its reward changes. The commit fails once.
        fail_next[0] = True
        assert post("/v1/events", {"arrangement_id": 1, "type": "payment", "amount_eur": 100.0, "time": 35.0})["late"]
        assert failed[0] == 1
        post("/v1/clock", {"time": 57.0})
        _assert_same_statistics(learner.policy, _in_order_truth(linucb_artifact, app.state.regsim.engine, 57, taken))
        # A decision whose group's commit fails once: registered for feedback once.
        fail_next[0] = True
        post("/v1/decisions", {"arrangement_id": 2, "kind": "missed", "time": 56.0})
        assert failed[0] == 2
        m = learner.matcher
        pending = m._ids[: m._n].tolist()
        assert len(pending) == len(set(pending)), pending
        post("/v1/clock", {"time": 72.0})  # the day-56 decision matures at 70
        truth = _in_order_truth(linucb_artifact, app.state.regsim.engine, learner.day, taken)
        _assert_same_statistics(learner.policy, truth)
        assert np.isfinite(learner.policy.learned)


def test_a_request_whose_transaction_fails_and_is_sent_again_is_learned_once(
    tmp_path: Path, linucb_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite (the serial writer): a late payment's transaction, then a decision's, fails after its work (the
    client is answered 500 and sends it again); the learner takes each once."""
    import serving.writer as writer_module

    taken = _recording_taken(monkeypatch)
    real_work = writer_module.Writer._work
    fail_next = [False]

    def failing_work(self: Any, conn: Any, group: Any) -> Any:
        out = real_work(self, conn, group)
        if fail_next[0]:
            fail_next[0] = False
            raise RuntimeError("the transaction failed after its work")
        return out

    monkeypatch.setattr(writer_module.Writer, "_work", failing_work)
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'store.db'}", policy=str(linucb_artifact)))
    with TestClient(app, headers=AUTH, raise_server_exceptions=False) as api:
        post = poster(api)

        def post_failing_once(path: str, body: dict[str, Any]) -> dict[str, Any]:
            fail_next[0] = True
            assert api.post(path, json=body).status_code == 500
            return post(path, body)

        open_with_pre_due_decisions(post, 3)
        post("/v1/clock", {"time": 56.0})
        learner = app.state.regsim.online
        late = {"arrangement_id": 1, "type": "payment", "amount_eur": 100.0, "time": 35.0}
        assert post_failing_once("/v1/events", late)["late"]
        post("/v1/clock", {"time": 57.0})
        _assert_same_statistics(learner.policy, _in_order_truth(linucb_artifact, app.state.regsim.engine, 57, taken))
        post_failing_once("/v1/decisions", {"arrangement_id": 2, "kind": "missed", "time": 57.0})
        m = learner.matcher
        pending = m._ids[: m._n].tolist()
        assert len(pending) == len(set(pending)), pending
        post("/v1/clock", {"time": 72.0})
        truth = _in_order_truth(linucb_artifact, app.state.regsim.engine, learner.day, taken)
        _assert_same_statistics(learner.policy, truth)
