"""Groups of single decisions work on the replay cache's own state (``ReplayCache.in_place``), not on a copy.

What that must keep: the cache holds what the store holds. A refused decision point is put back
(``tests/serving/test_writer.py::test_a_group_accepts_and_refuses_each_request_on_its_own`` checks the cache
after one whose bookkeeping booked installments), and a group whose transaction fails after working in place,
on the serial path or on PostgreSQL's overlapped path, leaves no trace in the cache: the requests run again
decide on the state the store holds, and the cache then equals the state rebuilt from the store.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving import schemas
from serving.app import create_app
from serving.cache import Workspace
from serving.writer import Outcome, WriteOp
from tests.serving.commit_failure import fail_a_commit
from tests.serving.conftest import AUTH, make_settings

_BOOK_COLUMNS = ("row", "decision", "message_id", "state", "channel", "installment", "send_time")


def _register_and_plan(client: TestClient, ids: list[int]) -> None:
    for aid in ids:
        body = {"arrangement_id": aid, "time": 0.0, "debt_eur": 900.0 + aid, "n_installments": 4, "due_day": 5}
        assert client.post("/v1/arrangements", json=body).status_code == 201
    asks = [{"arrangement_id": a, "kind": "plan_created", "time": 0.0} for a in ids]
    assert client.post("/v1/decisions/batch", json={"decisions": asks}).status_code == 200


def _state(ws: Workspace, ids: list[int]) -> dict[str, Any]:
    """The arrangements' rows, per-row arrays and messages, comparable between two workspaces."""
    part = ws.replay.subset(ids)
    book = part.ledger.book_of_messages
    out: dict[str, Any] = {f"ledger.{k}": v for k, v in part.ledger.row_arrays().items()}
    # (by decision: a book's order is how its messages arrived, which a copy and a reload need not share)
    order = np.lexsort((book.message_id[: book.n], book.decision[: book.n]))
    out.update({f"book.{k}": getattr(book, k)[: book.n][order] for k in _BOOK_COLUMNS})
    out["info"] = [vars(ws.info[a]) for a in ids]
    return out


def _assert_cache_is_the_store(app: Any, ids: list[int]) -> None:
    st = app.state.regsim
    cached = _state(st.cache.in_place(None, []), ids)
    st.cache.clear()
    with st.engine.connect() as conn:
        rebuilt = _state(st.cache.in_place(conn, ids), ids)  # (loaded into the cache: the next requests use it)
    assert cached.keys() == rebuilt.keys()
    for name, value in cached.items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(value, rebuilt[name], equal_nan=True), name
        else:
            assert value == rebuilt[name], name


def test_a_group_of_decisions_that_fails_after_its_work_leaves_the_cache_as_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The serial path: the group's transaction fails after deciding in place, and is run again one by one."""
    import serving.writer as writer_module

    app = create_app(make_settings(f"sqlite:///{tmp_path / 'store.db'}"))
    with TestClient(app, headers=AUTH) as client:
        ids = [1, 2, 3]
        _register_and_plan(client, ids)
        st = app.state.regsim
        real, failed = writer_module.Writer._work, list[int]()

        def failing_once(self: Any, conn: Any, group: list[WriteOp]) -> Any:
            out = real(self, conn, group)
            if len(group) > 1 and not failed:
                assert out[1].in_place  # (the path under test)
                failed.append(len(group))
                raise RuntimeError("the group's transaction fails after its work")
            return out

        monkeypatch.setattr(writer_module.Writer, "_work", failing_once)
        group = [WriteOp("decide", schemas.DecisionIn(arrangement_id=a, kind="pre_due", time=3.0)) for a in ids]
        results = st.writer._run(group)
        assert failed == [3] and [type(r) for r in results] == [Outcome] * 3
        _assert_cache_is_the_store(app, ids)
        # And the next decisions, on the cache again, are those a cold start gives.
        again = client.post("/v1/decisions", json={"arrangement_id": 2, "kind": "pre_due", "time": 4.0})
        assert again.status_code == 200, again.text
        _assert_cache_is_the_store(app, ids)


def test_a_failed_overlapped_commit_leaves_the_cache_as_the_store(postgres_server: Any, monkeypatch: Any) -> None:
    """PostgreSQL's overlapped path: one commit fails among concurrent single decisions (worked on in place)."""
    failure = fail_a_commit(monkeypatch)
    app = create_app(make_settings(postgres_server.create_database("in_place_commit_failure")))
    ids = list(range(1, 17))
    errors: list[str] = []
    with TestClient(app, headers=AUTH) as client:
        assert app.state.regsim.writer.overlap
        _register_and_plan(client, ids)
        failure.fail_after(3)

        def post(aid: int) -> None:
            for k in range(3):
                r = client.post("/v1/decisions", json={"arrangement_id": aid, "kind": "pre_due", "time": 3.0 + k})
                if r.status_code != 200:
                    errors.append(r.text)

        threads = [threading.Thread(target=post, args=(a,)) for a in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failure.commits > failure.fail_at and not errors, errors[:3]
        _assert_cache_is_the_store(app, ids)
