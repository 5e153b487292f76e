"""Fixtures shared by the agents' tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Small MLPs run fastest on one thread (and far faster than on two on a busy machine)."""
    import torch  # here, so that the tests that need no torch do not import it

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
