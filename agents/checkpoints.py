"""Checkpoint folders: written atomically, found by the progress in their name.

A training writes a checkpoint as a folder ``<prefix><progress>`` (decisions or transitions trained on so far):
its files are written into a temporary folder beside it, which is then renamed into place, so a process killed
at any moment leaves either the whole checkpoint or none of it. :func:`latest_checkpoint` finds the complete
checkpoint of most progress, from which a training resumes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["latest_checkpoint", "write_checkpoint_folder"]


def latest_checkpoint(folder: Path, prefix: str) -> Path | None:
    """The complete checkpoint of most progress in ``folder`` (``<prefix><progress>``), or None."""
    if not folder.is_dir():
        return None
    found = [(int(p.name[len(prefix) :]), p) for p in folder.glob(f"{prefix}*") if p.name[len(prefix) :].isdigit()]
    return max(found)[1] if found else None


def write_checkpoint_folder(folder: Path, name: str, write: Callable[[Path], None]) -> Path:
    """Write a checkpoint folder atomically: ``write(tmp)`` fills a temporary folder, renamed to ``folder/name``."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".{name}."))
    try:
        write(tmp)
        target = folder / name
        if target.exists():  # a checkpoint of the same progress (a resumed run repeating it): identical content
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
