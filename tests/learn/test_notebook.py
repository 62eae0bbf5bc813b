"""docs/bptt.ipynb executes from top to bottom (nbclient, the test extra) and its checks hold."""

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).parents[2] / "docs" / "bptt.ipynb"


def test_notebook_runs_and_its_gradients_match():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()  # raises CellExecutionError if any cell fails, its own asserts included
    seconds = time.perf_counter() - start
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    text = "".join(out.get("text", "") for out in outputs)
    assert "vs finite differences" in text and "max relative error" in text
    error = float(text.split("max relative error")[1].split()[0])
    assert error < 1e-6
    assert any("image/png" in out.get("data", {}) for out in outputs)  # the plot was drawn
    assert seconds < 60, f"the notebook took {seconds:.0f} s; keep it small"
