"""Layering: the simulator core knows nothing of Gymnasium, torch, HTTP or the packages built on it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REGSIM = REPO / "regsim"

#: Top-level packages regsim must never import (directly or through its dependencies).
FORBIDDEN = (
    "gymnasium",
    "gym",
    "torch",
    "stable_baselines3",
    "sb3_contrib",
    "tensorboard",
    "fastapi",
    "uvicorn",
    "starlette",
    "sqlalchemy",
    "alembic",
    "envs",
    "agents",
    "serving",
    "experiments",
)

_IMPORT_ALL = """
import json, pkgutil, importlib, sys
import regsim
for info in pkgutil.walk_packages(regsim.__path__, "regsim."):
    importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


def _top_level(module: str) -> str:
    return module.split(".", 1)[0]


@pytest.mark.parametrize("code", ["import regsim", _IMPORT_ALL], ids=["package", "every_module"])
def test_importing_regsim_loads_no_forbidden_package(code: str) -> None:
    script = code if "json.dumps" in code else code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    loaded = {_top_level(m) for m in json.loads(out.stdout.strip().splitlines()[-1])}
    assert "regsim" in loaded
    assert not loaded & set(FORBIDDEN), sorted(loaded & set(FORBIDDEN))


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def test_regsim_source_imports_no_forbidden_package() -> None:
    files = sorted(REGSIM.rglob("*.py"))
    assert len(files) > 10
    offending = [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for path in files
        for line, module in _imports(path)
        if _top_level(module) in FORBIDDEN
    ]
    assert not offending, "\n".join(offending)


def test_the_import_scanner_sees_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import torch\nfrom gymnasium import spaces\nimport importlib\nimportlib.import_module('fastapi')\n"
        "def f():\n    import agents.registry\n",
        encoding="utf-8",
    )
    assert {_top_level(m) for _, m in _imports(probe)} == {"torch", "gymnasium", "importlib", "fastapi", "agents"}
