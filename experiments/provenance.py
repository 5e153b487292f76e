"""What a run folder records about how it was made, and the seeds every random thing derives from.

Seeds. A run has one top seed (the config's ``seed``). Every random thing gets its own seed from
:func:`derive_seed`: ``numpy.random.SeedSequence(top, spawn_key=purpose)``, the purpose a tuple of words
("train", agent name, "sb3") hashed to integers, so streams of different purposes are independent, adding an
agent never shifts another agent's seed, and the mapping is stable across versions of Python (no ``hash()``).
:class:`SeedBook` hands them out and remembers each by purpose, so ``run.json`` lists them all.

``run.json`` (:class:`RunRecord`): the command line, config path, top seed and derived seeds, package versions,
the git commit and whether the tree was dirty (read with ``git --no-optional-locks``, which never writes to the
repository; null outside a checkout or without git), Python, platform, start and finish times, status and
wall time. It is written atomically, at the start (status "running") and at the end ("finished" or "failed").
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "PACKAGES",
    "RunRecord",
    "SeedBook",
    "atomic_write_bytes",
    "atomic_write_text",
    "derive_seed",
    "git_state",
    "package_versions",
]

#: Distributions whose versions ``run.json`` records.
PACKAGES: tuple[str, ...] = (
    "regsim",
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "simpy",
    "pydantic",
    "torch",
    "gymnasium",
    "stable-baselines3",
    "sb3-contrib",
    "ray",
)

REPO = Path(__file__).resolve().parent.parent


def _words(purpose: tuple[str | int, ...]) -> tuple[int, ...]:
    digest = hashlib.sha256("\x1f".join(str(p) for p in purpose).encode()).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))


def derive_seed(top: int, *purpose: str | int) -> int:
    """A seed in ``[0, 2**31)`` for one purpose, from the top seed (see the module docstring).

    31 bits, because NumPy's legacy ``np.random.seed`` (which Stable-Baselines3 calls) takes 32-bit seeds and
    some consumers treat seeds as signed.
    """
    seq = np.random.SeedSequence(int(top), spawn_key=_words(purpose))
    return int(seq.generate_state(1, np.uint32)[0] >> np.uint32(1))


@dataclass
class SeedBook:
    """Derives seeds from one top seed and records each by its purpose (``"train/mppo/sb3"``)."""

    top: int
    seeds: dict[str, Any] = field(default_factory=dict)

    def seed(self, *purpose: str | int) -> int:
        """The seed of ``purpose``, recorded."""
        value = derive_seed(self.top, *purpose)
        self.seeds["/".join(str(p) for p in purpose)] = value
        return value

    def seed_list(self, count: int, *purpose: str | int) -> list[int]:
        """``count`` distinct seeds for ``purpose`` (item k derives from ``(*purpose, k)``), recorded as a list."""
        values: list[int] = []
        k = 0
        while len(values) < count:
            v = derive_seed(self.top, *purpose, k)
            if v not in values:  # a collision of 31-bit draws is astronomically rare but cheap to rule out
                values.append(v)
            k += 1
        self.seeds["/".join(str(p) for p in purpose)] = values
        return values

    def record(self, key: str, value: Any) -> None:
        """Record a seed that was given rather than derived (e.g. an explicit list in the config)."""
        self.seeds[key] = value


@functools.lru_cache(maxsize=4)
def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` (null when not installed); read once per process."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.lru_cache(maxsize=4)
def git_state(root: Path = REPO) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout at ``root``, read once per process (the
    state the run's code was loaded from).

    ``--no-optional-locks`` keeps ``git status`` from refreshing the index, so reading the state never takes
    the repository's lock or changes a file (another process may be committing).
    """

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", "-C", str(root), *args],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip() or None, "dirty": None if status is None else bool(status.strip())}


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """The content of ``run.json``; :meth:`write` after every change."""

    path: Path
    config_path: str
    seed: int
    seeds: dict[str, Any]
    command: list[str] = field(default_factory=lambda: [Path(sys.argv[0]).name, *sys.argv[1:]])
    started: str = field(default_factory=_now)
    finished: str | None = None
    status: Literal["running", "finished", "failed"] = "running"
    wall_seconds: float | None = None
    resumed: list[dict[str, Any]] = field(default_factory=list)
    _t0: float = field(default_factory=time.perf_counter, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object of the run-folder contract, plus ``resumed``: when and how each ``--resume`` ran."""
        return {
            "command": self.command,
            "config_path": self.config_path,
            "seed": self.seed,
            "seeds": self.seeds,
            "packages": dict(package_versions()),
            "git": dict(git_state()),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "started": self.started,
            "finished": self.finished,
            "status": self.status,
            "wall_seconds": self.wall_seconds,
            "resumed": self.resumed,
        }

    def write(self) -> Path:
        """Write ``run.json`` atomically."""
        return atomic_write_text(self.path, json.dumps(self.as_dict(), indent=2) + "\n")

    def finish(self, status: Literal["finished", "failed"]) -> Path:
        """Mark the run finished or failed, with the wall time of this process, and write."""
        self.status = status
        self.finished = _now()
        self.wall_seconds = round(time.perf_counter() - self._t0, 3)
        return self.write()

    @classmethod
    def load(cls, path: Path) -> RunRecord:
        """The record of a run created but not executed yet (e.g. a sweep's trial), to execute it."""
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            path=path,
            config_path=str(data.get("config_path", "")),
            seed=int(data["seed"]),
            seeds=dict(data.get("seeds", {})),
            command=list(data.get("command", [])),
            started=str(data.get("started") or _now()),
            resumed=list(data.get("resumed", [])),
        )

    @classmethod
    def resume(cls, path: Path) -> RunRecord:
        """The record of an earlier run, marked running again: its command and start kept, this process's command
        line and start time appended to ``resumed``."""
        record = cls.load(path)
        record.resumed.append({"at": _now(), "command": [Path(sys.argv[0]).name, *sys.argv[1:]]})
        return record
