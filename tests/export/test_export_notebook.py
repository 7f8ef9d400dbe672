"""The notebook export: valid nbformat, a markdown cell explaining each code block, and it runs top to bottom.

The notebook is executed by extracting its code cells in order and running them in one
fresh interpreter without dlplay (nbclient and a Jupyter kernel are not needed; the
cells are plain Python). Its training must reproduce dlplay's losses, like the script.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from export_helpers import reference_losses, run_without_dlplay, with_train

from server.export.notebook import notebook_json

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5


def preset(name: str, **train):
    return with_train(json.loads((ROOT / "models" / f"{name}.json").read_text()), **train)


@pytest.mark.parametrize("name", ["lenet5_mnist", "spiral_mlp"])
def test_notebook_executes_top_to_bottom_with_dlplays_losses(tmp_path, name):
    experiment = preset(name, max_steps=50)
    want, _ = reference_losses(experiment, 50)
    notebook = nbformat.reads(notebook_json(experiment), as_version=4)
    nbformat.validate(notebook)
    code = "\n\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    (tmp_path / "notebook.py").write_text(code + "\n\nimport json\njson.dump(history, open('history.json', 'w'))\n")
    result = run_without_dlplay("import runpy; runpy.run_path('notebook.py', run_name='__main__')", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads((tmp_path / "history.json").read_text())["loss"]
    assert len(got) == 50
    assert max(abs(a - b) for a, b in zip(got, want)) <= TOLERANCE
    if importlib.util.find_spec("matplotlib") is None:  # the plot cell says what to install and prints the curve
        assert "matplotlib is not installed" in result.stdout
        assert result.stdout.rstrip().splitlines()[-1].startswith("step     50  validation loss")


def test_every_code_block_is_explained_by_a_markdown_cell():
    notebook = nbformat.reads(notebook_json(preset("lenet5_mnist")), as_version=4)
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds[0] == "markdown" and notebook.cells[0].source.startswith("# LeNet-5 on MNIST")
    for i, kind in enumerate(kinds):
        if kind == "code" and i > 1:
            assert kinds[i - 1] == "markdown", f"code cell {i} has no explanation above it"
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    for heading in ("## Data", "## The network", "## Loss", "## Optimizer and learning rate", "## Training loop",
                    "## Curves"):
        assert heading in text
    assert "| `conv1` | conv2d | 6×28×28 | 156 |" in text  # the layer table
    assert notebook.metadata["kernelspec"]["name"] == "python3"
