"""Every notebook under notebooks/ is stored without outputs and executes top to bottom.

The kernel is this interpreter (``sys.executable``, the project's venv) through a kernelspec written to a
temporary folder, so the test never depends on, or installs, a kernel elsewhere. ``evaluation.ipynb`` runs
against the tiny quickstart run folder of ``test_report`` (``REGSIM_RUN_DIR``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from tests.experiments.test_report import quickstart_run

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def test_the_three_notebooks_exist() -> None:
    assert {"evaluation.ipynb", "simulator_tour.ipynb", "policy_comparison.ipynb"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_notebook_is_stored_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: a code cell has outputs"


def test_evaluation_notebook_has_a_parameters_cell() -> None:
    nb = nbformat.read(NOTEBOOKS / "evaluation.ipynb", as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "RUN_DIR" in tagged[0].source and "REGSIM_RUN_DIR" in tagged[0].source


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernelspec ``regsim-test`` that starts this interpreter's ipykernel."""
    root = tmp_path_factory.mktemp("kernels")
    spec = root / "regsim-test"
    spec.mkdir()
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "regsim", "language": "python"}))
    return root


@pytest.mark.parametrize("name", ALL)
def test_notebook_executes_top_to_bottom(
    name: str, kernel_dirs: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = quickstart_run(tmp_path_factory)
    monkeypatch.setenv("REGSIM_RUN_DIR", str(run_dir))  # the kernel inherits the environment
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    km = KernelManager(kernel_name="regsim-test", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dirs)]))
    client = NotebookClient(
        nb, km=km, timeout=120, allow_errors=False, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    started = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - started
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{name}: no figure was displayed"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    if name == "evaluation.ipynb":
        assert str(run_dir) in text, "the notebook must read the run folder named by REGSIM_RUN_DIR"
        assert len(images) >= 9
    print(f"{name}: executed in {elapsed:.1f} s, {len(images)} figures")
