"""Every layer kind and activation in the registry round-trips through the PyTorch, ONNX and TorchScript exports.

The kinds come from ``server/registry.py`` (see export_helpers): a kind added there
without export support fails here, named in the test id.

* PyTorch: the exported script, run without dlplay, reproduces dlplay's first losses.
* ONNX and TorchScript: one network per input layout holds every kind as a parallel
  branch (probe -> flatten -> linear(3), all branches concatenated), so one export
  covers them all; each branch's 3 outputs are compared with PyTorch separately,
  and a failing export is retried kind by kind to name the culprit.
"""

from __future__ import annotations

import io

import pytest
import torch
from export_helpers import (
    FLAT_DATA,
    IMAGE_DATA,
    activation_example,
    example_params,
    layer_examples,
    reference_losses,
    train_exported,
    with_train,
)

from server import registry
from server.builder import build_model
from server.datasets import load_dataset
from server.export.model import TrainedModel
from server.export.pytorch_code import pytorch_script
from server.schemas import DataSpec, Experiment

STEPS = 6  # training steps compared per kind
TOLERANCE = 1e-5  # max |exported - dlplay| per loss, per output
TRAIN = {"optimizer": {"kind": "adam", "lr": 0.01}, "batch_size": 16, "max_steps": STEPS, "log_every": 2, "seed": 3}

LAYER_CASES = {f"{kind}-{context}": doc for kind, context, doc in layer_examples()}
ACTIVATION_CASES = {f"activation-{kind}": activation_example(kind) for kind in registry.ACTIVATIONS}
CASES = LAYER_CASES | ACTIVATION_CASES


def test_every_kind_has_a_case():
    """The cases are made from the registry, so every kind is covered (and LAYER_CASES could not drift)."""
    assert {case.split("-", 1)[0] for case in LAYER_CASES} == set(registry.LAYERS)
    assert {case.split("-", 1)[1] for case in ACTIVATION_CASES} == set(registry.ACTIVATIONS)


@pytest.fixture(scope="module")
def pytorch_roundtrip(tmp_path_factory) -> dict[str, dict]:
    """case -> {"want": dlplay's losses, "got": the exported script's, or "error"}."""
    workdir = tmp_path_factory.mktemp("coverage")
    jobs, want, errors = [], {}, {}
    for name, document in CASES.items():
        experiment = with_train(document, **TRAIN)
        try:
            script = pytorch_script(experiment)
        except Exception as error:  # noqa: BLE001 - reported by the case's own test
            errors[name] = f"{type(error).__name__}: {error}"
            continue
        path = workdir / f"{name}.py"
        path.write_text(script)
        jobs.append({"name": name, "script": str(path), "steps": STEPS})
        want[name] = reference_losses(experiment, STEPS)[0]
    got = train_exported(jobs, workdir)
    return {name: {"want": want.get(name), "got": got.get(name), "error": errors.get(name)} for name in CASES}


@pytest.mark.parametrize("case", list(CASES))
def test_pytorch_export_reproduces_the_losses(pytorch_roundtrip, case):
    result = pytorch_roundtrip[case]
    assert result["error"] is None, f"{case}: the export failed: {result['error']}"
    got = result["got"]
    assert "error" not in got, f"{case}: the exported script failed:\n{got['error']}"
    want = result["want"]
    assert len(got["loss"]) == len(want) == STEPS
    diff = max(abs(a - b) for a, b in zip(got["loss"], want))
    assert diff <= TOLERANCE, f"{case}: losses differ by {diff:.3g}\ndlplay: {want}\nexport: {got['loss']}"


# ---------------------------------------------------------------------------
# ONNX and TorchScript: every kind as a branch of one network
# ---------------------------------------------------------------------------


def _branch_network(cases: dict[str, dict]) -> tuple[list[dict], list[str]]:
    """One network: the stems of the cases, then per case its probe layers -> flatten -> linear(3), concatenated."""
    layers: list[dict] = []
    branches: list[str] = []
    stems_done = set()
    for name, document in cases.items():
        tag = name.replace("-", "_")
        net = document["network"]["layers"]
        body = [layer for layer in net if layer["name"] not in ("flat", "head")]
        renamed = {}
        for layer in body:
            if layer["name"].startswith("stem"):
                if layer["name"] not in stems_done:
                    stems_done.add(layer["name"])
                    layers.append(layer)
                continue
            renamed[layer["name"]] = f"{tag}_{layer['name']}"
        previous = None
        for layer in body:
            if layer["name"].startswith("stem"):
                continue
            copy = dict(layer, name=renamed[layer["name"]])
            first = "stem" if any(other["name"] == "stem" for other in net) else "input"
            inputs = layer.get("inputs") or [previous or first]
            copy["inputs"] = [renamed.get(i, i) for i in inputs]
            layers.append(copy)
            previous = copy["name"]
        layers.append({"kind": "flatten", "name": f"{tag}_flat", "inputs": [previous]})
        layers.append({"kind": "linear", "name": f"{tag}_out", "out_features": 3})
        branches.append(f"{tag}_out")
    layers.append({"kind": "concat", "name": "all", "inputs": branches})
    return layers, list(cases)


def _trained(cases: dict[str, dict], data: dict) -> tuple[TrainedModel, torch.Tensor]:
    """The branch network, with batch-norm statistics from a few training batches, in eval mode; and 100 inputs."""
    layers, _ = _branch_network(cases)
    dataset = load_dataset(DataSpec.model_validate(data))
    model, summary = build_model({"layers": layers}, dataset.input_shape, None, seed=0)
    model.train()
    with torch.no_grad():
        for start in range(0, 128, 32):
            model(dataset.x_train[start:start + 32])
    model.eval()
    experiment = Experiment.model_validate({"name": "branches", "data": data, "network": {"layers": layers}})
    trained = TrainedModel(experiment, model, summary, list(dataset.classes), None, None, trained=True)
    return trained, dataset.x_val[:100]


GROUPS = {
    "image layers": ({k: v for k, v in LAYER_CASES.items() if "-image" in k}, IMAGE_DATA),
    "flat layers": ({k: v for k, v in LAYER_CASES.items() if "-flat" in k}, FLAT_DATA),
    "activations": (ACTIVATION_CASES, IMAGE_DATA),
}


def _compare(got: torch.Tensor, want: torch.Tensor, cases: list[str], what: str) -> None:
    assert got.shape == want.shape, f"{what}: output shape {tuple(got.shape)}, PyTorch's {tuple(want.shape)}"
    bad = []
    for i, case in enumerate(cases):
        diff = float((got[:, 3 * i:3 * i + 3] - want[:, 3 * i:3 * i + 3]).abs().max())
        if not diff <= TOLERANCE:
            bad.append(f"{case} (max difference {diff:.3g})")
    assert not bad, f"{what} disagrees with PyTorch for: {', '.join(bad)}"


def _export_or_name_culprits(export, cases: dict[str, dict], data: dict):
    trained, x = _trained(cases, data)
    try:
        return trained, x, export(trained)
    except Exception as error:  # find which kinds the exporter cannot take, then fail naming them
        culprits = []
        for name, document in cases.items():
            try:
                export(_trained({name: document}, data)[0])
            except Exception as single:  # noqa: BLE001
                culprits.append(f"{name}: {type(single).__name__}: {str(single)[:300]}")
        raise AssertionError(f"export failed ({type(error).__name__}); culprits:\n" + "\n".join(culprits)) from error


@pytest.mark.parametrize("group", list(GROUPS))
def test_onnx_export_of_every_kind_matches_pytorch(group):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    from server.export.onnx import INPUT_NAME, OUTPUT_NAME, onnx_bytes

    cases, data = GROUPS[group]
    trained, x, content = _export_or_name_culprits(onnx_bytes, cases, data)
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])
    with torch.no_grad():
        want = trained.model(x)
    _compare(got, want, list(cases), f"ONNX ({group})")


@pytest.mark.filterwarnings("ignore:`torch.jit")  # deprecated in favour of torch.export; the files still load
@pytest.mark.parametrize("group", list(GROUPS))
def test_torchscript_export_of_every_kind_matches_pytorch(group):
    from server.export.torchscript import torchscript_bytes

    cases, data = GROUPS[group]
    trained, x, content = _export_or_name_culprits(torchscript_bytes, cases, data)
    loaded = torch.jit.load(io.BytesIO(content))
    with torch.no_grad():
        got, want = loaded(x), trained.model(x)
    _compare(got, want, list(cases), f"TorchScript ({group})")


def test_generic_values_fill_every_required_parameter():
    """The example maker itself: every kind's required parameters get a value its schema accepts."""
    for family in (registry.LAYERS, registry.ACTIVATIONS):
        for kind in family:
            params = example_params(kind, family)
            named = {"name": "probe"} if "name" in family[kind].model_fields else {}
            family[kind].model_validate({"kind": kind, **named, **params})

