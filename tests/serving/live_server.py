"""A real server process for the browser tests: ``uvicorn --factory serving.app:app_from_env`` on a free port.

Shared by the staff pages' and the debtor page's Chromium tests; the server reads its settings from ``REGSIM_*``
environment variables, as in production.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def chromium() -> tuple[str, str] | None:
    """The system Chromium and its driver (Debian's ``chromium`` and ``chromium-driver``), or None."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def free_port() -> int:
    """A TCP port free on localhost now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(tmp_path: Path, settings: Mapping[str, str]) -> Iterator[str]:
    """Run the server with these ``REGSIM_*`` settings until the block ends; yields its base URL once ready.

    The server's output goes to ``tmp_path / "server.log"``, quoted in the failure if it exits or is not ready in
    60 s.
    """
    port = free_port()
    env = {**os.environ, **settings}
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "serving.app:app_from_env", "--port", str(port)]
    log_path = tmp_path / "server.log"
    log = log_path.open("w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"the server exited: {log_path.read_text()}")
            time.sleep(0.2)
        else:
            pytest.fail("the server did not become ready in 60 s")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
