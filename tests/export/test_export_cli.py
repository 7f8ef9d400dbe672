"""``dlplay export`` and ``dlplay run --init-from``: files out, weights in, clear one-line errors (exit 2)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load

from server.cli import main
from server.config import Settings
from server.schemas import Experiment
from server.store import Store
from server.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
SPIRAL = ROOT / "models" / "spiral_mlp.json"


def dlplay(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    """The real command, in a subprocess."""
    env = {**os.environ, "DLPLAY_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "server.cli", *args], cwd=data_dir.parent, capture_output=True,
                          text=True, timeout=600, env=env)


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """``dlplay ARGS`` in this process (fast), with the data directory under tmp_path: (exit code, stdout, stderr)."""
    monkeypatch.setattr("server.config.settings", Settings(data_dir=tmp_path / "data"))
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def stored_run(tmp_path: Path) -> tuple[str, Path]:
    """A finished run in a data directory, as the server leaves it."""
    data_dir = tmp_path / "data"
    document = json.loads(SPIRAL.read_text())
    document["train"]["max_steps"] = 20
    experiment = Experiment.model_validate(document)
    trainer = Trainer(experiment, device="cpu")
    for _ in range(20):
        trainer.step()
    store = Store(data_dir)
    try:
        store.create_run("run42", "someone", experiment.name, experiment.model_dump(mode="json"))
        path = store.save_weights("run42", trainer.model.state_dict())
        store.finish_run("run42", "finished", final={}, stop_reason="finished", weights_path=path)
    finally:
        store.close()
    return "run42", data_dir


def test_export_an_experiment_file_as_code_with_the_real_command(tmp_path):
    out = tmp_path / "spiral.py"
    result = dlplay("export", str(SPIRAL), "--format", "pytorch", "--out", str(out), data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stderr
    compile(out.read_text(), str(out), "exec")
    assert "class Net(nn.Module):" in out.read_text()


def test_export_a_run_by_id_with_its_trained_weights(stored_run, cli, tmp_path):
    run_id, data_dir = stored_run
    code, _, err = cli("export", run_id, "--format", "safetensors")
    assert code == 0, err
    tensors = load((tmp_path / "one_hidden_layer_on_the_spiral.safetensors").read_bytes())
    store = Store(data_dir)
    try:
        stored = load(Path(store.get_run(run_id).weights_path).read_bytes())
    finally:
        store.close()
    assert (tensors["hidden.weight"] == stored["blocks.hidden.core.weight"]).all()


def test_an_experiment_file_exports_untrained_weights_and_says_so(cli, tmp_path):
    code, _, err = cli("export", str(SPIRAL), "-f", "safetensors", "-o", str(tmp_path / "w.safetensors"))
    assert code == 0 and "initialized from train.seed (untrained)" in err
    assert (tmp_path / "w.safetensors").is_file()


@pytest.mark.parametrize("args, fragment", [
    (["no-such-run", "--format", "pytorch"], "no such experiment file or run id"),
    (["missing.json", "--format", "pytorch"], "missing.json: no such file"),
    (["run42", "--format", "onnx"], "no such experiment file or run id"),
], ids=["unknown-run", "missing-file", "run-of-another-data-dir"])
def test_bad_sources_exit_2_with_one_line(cli, args, fragment):
    code, _, err = cli("export", *args)
    assert code == 2 and fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_missing_optional_package_says_what_to_install(cli, tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # as on an install without dlplay[export]
                        lambda name, *a: None if name == "nbformat" else real_find_spec(name, *a))
    code, _, err = cli("export", str(SPIRAL), "--format", "notebook", "--out", str(tmp_path / "n.ipynb"))
    assert code == 2 and "needs nbformat, which is not installed. Fix: pip install 'dlplay[export]'" in err
    assert not (tmp_path / "n.ipynb").exists()


def test_dlplay_run_starts_from_exported_weights(stored_run, cli, tmp_path, monkeypatch):
    run_id, data_dir = stored_run
    monkeypatch.setattr("server.config.settings", Settings(data_dir=data_dir))
    weights = tmp_path / "w.safetensors"
    assert cli("export", run_id, "-f", "safetensors", "-o", str(weights))[0] == 0
    document = json.loads(SPIRAL.read_text())
    document["train"]["max_steps"] = 5
    doc_path = tmp_path / "exp.json"
    doc_path.write_text(json.dumps(document))

    def first_val(*args: str) -> float:
        code, out, err = cli("run", str(doc_path), "--no-probes", *args)
        assert code == 0, err
        return next(m["val_loss"] for m in map(json.loads, out.splitlines())
                    if m["type"] == "metrics" and m.get("val_loss") is not None)

    trained, fresh = first_val("--init-from", str(weights)), first_val()
    assert trained < fresh
    # train.init_from naming the run is resolved in the data directory, like the server does
    document["train"]["init_from"] = {"run_id": run_id}
    doc_path.write_text(json.dumps(document))
    assert first_val() == trained
    document["train"]["init_from"] = {"run_id": "gone"}
    doc_path.write_text(json.dumps(document))
    code, _, err = cli("run", str(doc_path))
    assert code == 2 and "no run 'gone' here" in err
