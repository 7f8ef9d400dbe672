"""Trained-model exports: onnxruntime and TorchScript give PyTorch's outputs on 100 validation examples.

The two classic presets are trained a few steps by dlplay's Trainer (so batch-norm-free
networks have moved away from their initialization), exported from the trainer's
weights exactly as the server exports a run (``export_file`` with a state dict), and
run on the first 100 validation examples.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from export_helpers import reference_losses, with_train

from server.export import export_file
from server.schemas import Experiment

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5
PRESETS = ["lenet5_mnist", "spiral_mlp"]
# TorchScript is deprecated in favour of torch.export in PyTorch 2.13; its files still load, and the issue asks for them.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit")


@pytest.fixture(scope="module")
def trained() -> dict:
    out = {}
    for name in PRESETS:
        experiment = with_train(json.loads((ROOT / "models" / f"{name}.json").read_text()), max_steps=30)
        _, trainer = reference_losses(experiment, 30)
        model = trainer.model.eval()
        x = trainer.dataset.x_val[:100]
        with torch.no_grad():
            want = model(x)
        out[name] = (experiment, {k: v.clone() for k, v in model.state_dict().items()}, x, want)
    return out


@pytest.mark.parametrize("name", PRESETS)
def test_onnxruntime_matches_pytorch_on_100_validation_examples(trained, name):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    experiment, state, x, want = trained[name]
    exported = export_file("onnx", experiment, weights=state, run_id="r123")
    assert exported.filename.endswith(".onnx")
    session = ort.InferenceSession(exported.content, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"] and [o.name for o in session.get_outputs()] == ["logits"]
    assert x.shape[0] == 100
    got = torch.from_numpy(session.run(["logits"], {"input": x.numpy()})[0])
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= TOLERANCE
    one = session.run(["logits"], {"input": x[:1].numpy()})[0]  # the batch axis is free
    assert one.shape == (1, want.shape[1])
    meta = session.get_modelmeta().custom_metadata_map
    assert Experiment.model_validate_json(meta["experiment"]).name == experiment.name
    assert meta["run_id"] == "r123" and json.loads(meta["classes"])[0] in ("0", "arm 1")
    preprocessing = json.loads(meta["preprocessing"])
    assert preprocessing["kind"] == "standardize" and len(preprocessing["mean"]) == x.shape[1]


@pytest.mark.parametrize("name", PRESETS)
def test_torchscript_matches_pytorch_on_100_validation_examples(trained, name):
    experiment, state, x, want = trained[name]
    exported = export_file("torchscript", experiment, weights=state)
    extra = {"dlplay/metadata.json": ""}
    loaded = torch.jit.load(io.BytesIO(exported.content), _extra_files=extra)
    with torch.no_grad():
        got = loaded(x)
    assert float((got - want).abs().max()) <= TOLERANCE
    assert json.loads(json.loads(extra["dlplay/metadata.json"])["experiment"])["name"] == experiment.name


def test_the_perceptrons_sign_step_exports(tmp_path):
    """The sign activation is an autograd.Function inside dlplay; the exports trace an equivalent."""
    experiment = Experiment.model_validate({
        "data": {"name": "gaussians"},
        "network": {"layers": [{"kind": "linear", "name": "unit", "out_features": 1, "activation": "sign"}]},
        "train": {"optimizer": "perceptron", "max_steps": 5}})
    _, trainer = reference_losses(experiment, 5)
    x = trainer.dataset.x_val
    with torch.no_grad():
        want = trainer.model.eval()(x)
    loaded = torch.jit.load(io.BytesIO(export_file("torchscript", experiment, weights=trainer.model.state_dict()).content))
    assert torch.equal(loaded(x), want) and set(want.unique().tolist()) <= {-1.0, 1.0}
