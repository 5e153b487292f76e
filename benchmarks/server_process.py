"""Run an ASGI app factory under uvicorn in a child process: one worker, optionally pinned to a core.

Shared by the server benchmark (:mod:`benchmarks.bench_server`) and the durability test
(``tests/serving/test_durability.py``), which both need the real server as production runs it
(``uvicorn --factory serving.app:app_from_env``, settings from ``REGSIM_*`` environment variables) rather
than an in-process test client.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx

__all__ = ["UvicornProcess", "free_port"]

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class UvicornProcess:
    """``python -m uvicorn --factory APP`` in a child process, one worker, access log off (or a given command).

    Args:
        app: ``module:factory`` of a zero-argument app factory.
        env: Extra environment variables (e.g. ``REGSIM_STORE``); the rest is inherited.
        port: TCP port on 127.0.0.1; default a free one.
        cpu: Pin the server to this core with ``taskset`` (ignored when ``taskset`` is missing).
        health_path: ``GET`` path that answers 200 once the app's lifespan has run.
        start_timeout_s: Seconds :meth:`start` waits for ``health_path``.
        argv: Run this command line instead of uvicorn (e.g. ``regsim serve ...``, the command as users run it);
            it must listen on ``port`` of 127.0.0.1. ``app`` then only names it in messages.
        root: The source tree the child runs from (its working directory, first on its ``PYTHONPATH``); default
            this repository (the A/B benchmark runs an older checkout of it beside the current one).

    The child's stdout and stderr go to a temporary log file whose tail is in every error message.
    """

    def __init__(
        self,
        app: str,
        *,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        cpu: int | None = None,
        health_path: str = "/healthz",
        start_timeout_s: float = 60.0,
        argv: list[str] | None = None,
        root: Path = REPO,
    ) -> None:
        self.app = app
        self.root = root
        self.argv = argv
        self.env = dict(env or {})
        self.port = port if port is not None else free_port()
        self.cpu = cpu
        self.health_path = health_path
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._log = Path(tempfile.mkstemp(prefix="uvicorn-", suffix=".log")[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The command line (uvicorn through this interpreter, so the same virtual environment)."""
        if self.argv is not None:
            argv = list(self.argv)
        else:
            argv = [sys.executable, "-m", "uvicorn", "--factory", self.app]
            argv += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
            argv += ["--no-access-log", "--log-level", "warning"]
        if self.cpu is not None and shutil.which("taskset") is not None:
            argv = ["taskset", "-c", str(self.cpu), *argv]
        return argv

    def start(self) -> UvicornProcess:
        """Start the child and wait until ``health_path`` answers 200.

        Raises:
            RuntimeError: The child exited or did not become healthy in time (the message has its log).
        """
        env = {**os.environ, **self.env}
        # One thread per numeric library: the server has one core; oversubscribing it only adds contention.
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.root), env.get("PYTHONPATH")]))
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.start_timeout_s
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.app} exited with code {self.process.returncode}:\n{self.log_tail()}")
                try:
                    if client.get(self.health_path).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"{self.app} not healthy after {self.start_timeout_s} s:\n{self.log_tail()}")
                time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the child has used so far, from ``/proc`` (0.0 where there is none).

        On a shared machine a server's requests per second depend on how much of its core it got; its CPU time
        per request does not (much), so the server benchmark reports both.
        """
        if self.process is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the child's combined stdout/stderr."""
        return self._log.read_text(errors="replace")[-chars:] if self._log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the child (no shutdown handlers run: a crash, as far as the app can tell) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (uvicorn's graceful shutdown, lifespan exit), SIGKILL if it does not exit in time."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        """Stop the child and remove its log."""
        self.stop()
        self._log.unlink(missing_ok=True)

    def __enter__(self) -> UvicornProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
