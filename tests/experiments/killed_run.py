"""``python -m tests.experiments.killed_run N ARGS...``: the ``regsim`` command, killed after its N-th checkpoint.

For the resume tests: the command line runs as usual, except that right after a checkpoint folder is written for
the N-th time (counted over the process, all agents together) the process kills itself with SIGKILL, as a crash
would, with nothing flushed or closed. The checkpoint writer is wrapped here, in the test's process only.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import agents.checkpoints


def _install(kill_after: int) -> None:
    original = agents.checkpoints.write_checkpoint_folder
    written = [0]

    def write_then_maybe_die(folder: Path, name: str, write: Any) -> Path:
        target = original(folder, name, write)
        written[0] += 1
        if written[0] >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return target

    # Every module that took the writer by name gets the wrapped one.
    for module in list(sys.modules.values()):
        if getattr(module, "write_checkpoint_folder", None) is original:
            module.write_checkpoint_folder = write_then_maybe_die  # type: ignore[attr-defined]


def main() -> int:
    import agents.online
    import agents.vector_training
    from experiments.cli import main as regsim

    del agents.online, agents.vector_training  # (imported so that their names of the writer are wrapped too)
    _install(int(sys.argv[1]))
    sys.argv = [sys.argv[0], *sys.argv[2:]]  # (the run records its command line as the user typed it)
    return regsim(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
