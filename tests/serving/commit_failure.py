"""A writer whose commit fails once, on purpose: the lost-commit tests of the overlapped PostgreSQL path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class CommitFailure:
    """Counts the writer's commits; the one numbered ``fail_at`` is rolled back, its connection closed, and
    raises, as a commit lost with its connection would (``-1``: none fails)."""

    commits: int = 0
    fail_at: int = -1

    def fail_after(self, n: int) -> None:
        """Fail the ``n``-th commit from now."""
        self.fail_at = self.commits + n


def fail_a_commit(monkeypatch: pytest.MonkeyPatch) -> CommitFailure:
    """Patch ``serving.writer._commit`` (for the test's duration) to fail the commit :class:`CommitFailure` names."""
    import serving.writer as writer_module

    real_commit = writer_module._commit
    failure = CommitFailure()

    def failing_commit(conn: Any, tx: Any) -> None:
        failure.commits += 1
        if failure.commits == failure.fail_at:
            tx.rollback()
            conn.close()
            raise RuntimeError("the commit was lost")
        real_commit(conn, tx)

    monkeypatch.setattr(writer_module, "_commit", failing_commit)
    return failure
