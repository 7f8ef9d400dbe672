"""The exported PyTorch script: standalone, readable, and reproducing dlplay's losses.

PyTorch (dlplay's own Trainer) is the oracle: the script runs in a fresh interpreter
where dlplay cannot be imported, and its per-step losses must equal the trainer's.
Datasets, optimizers, schedules, losses and initializers are taken from the registry
and the dataset catalog, so a new one is tested without being listed here.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from export_helpers import FLAT_DATA, IMAGE_DATA, reference_losses, run_without_dlplay, train_exported, with_train

from server import registry
from server.datasets import DATASETS, load_dataset, parse_upload, save_upload
from server.export.pytorch_code import module_names, pytorch_script
from server.initializers import needs_matrix
from server.schemas import Experiment

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5  # the bar; in practice the losses agree to the last bit or within float32 rounding
STEPS = 12


def preset(name: str, **train) -> Experiment:
    return with_train(json.loads((ROOT / "models" / f"{name}.json").read_text()), **train)


# ---------------------------------------------------------------------------
# The acceptance test: the two classic presets, 50 steps, the real command line
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lenet5_mnist", "spiral_mlp"])
def test_script_reproduces_the_first_50_losses_without_dlplay(tmp_path, name):
    experiment = preset(name, max_steps=50)
    want, _ = reference_losses(experiment, 50)
    script = tmp_path / "experiment.py"
    script.write_text(pytorch_script(experiment))
    result = run_without_dlplay(
        "import runpy; sys.argv = ['experiment.py', '--history', 'history.json']; "
        "runpy.run_path('experiment.py', run_name='__main__')", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads((tmp_path / "history.json").read_text())["loss"]
    assert len(got) == len(want) == 50
    diff = max(abs(a - b) for a, b in zip(got, want))
    assert diff <= TOLERANCE, f"max difference {diff:.3g}"
    assert "validation loss" in result.stdout and "step     50" in result.stdout


PRESETS = sorted(path.stem for path in (ROOT / "models").glob("*.json"))


@pytest.fixture(scope="module")
def exported_presets(tmp_path_factory) -> dict[str, dict]:
    workdir = tmp_path_factory.mktemp("presets")
    jobs, want = [], {}
    for name in PRESETS:
        experiment = preset(name, max_steps=5)
        path = workdir / f"{name}.py"
        path.write_text(pytorch_script(experiment))
        jobs.append({"name": name, "script": str(path), "steps": 5})
        want[name] = reference_losses(experiment, 5)[0]
    got = train_exported(jobs, workdir)
    return {name: {"want": want[name], "got": got[name]} for name in PRESETS}


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_exports_and_reproduces_its_first_losses(exported_presets, name):
    result = exported_presets[name]
    assert "error" not in result["got"], result["got"].get("error")
    got, want = result["got"]["loss"], result["want"]
    assert len(got) == len(want) == 5
    assert max(abs(a - b) for a, b in zip(got, want)) <= TOLERANCE


def test_script_is_readable_code(tmp_path):
    """A real nn.Module layer by layer, the optimizer and loop written out, no dlplay anywhere."""
    code = pytorch_script(preset("lenet5_mnist"))
    tree = ast.parse(code)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names} | {node.module.split(".")[0] for node in ast.walk(tree)
                                            if isinstance(node, ast.ImportFrom) and node.module}
    assert "server" not in imported and "dlplay" not in imported
    net = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Net")
    assert [b.attr for b in net.bases if isinstance(b, ast.Attribute)] == ["Module"]
    for line in ("self.conv1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)", "self.pool1 = nn.MaxPool2d(kernel_size=2)",
                 "self.fc1 = nn.Linear(400, 120)", "x = torch.relu(self.conv1(x))  # conv1: (N, 6, 28, 28)",
                 "optimizer = torch.optim.Adam(params, lr=LR, betas=(0.9, 0.999), eps=1e-08)",
                 "return F.cross_entropy(out, y)", "order = torch.randperm(n_train, generator=generator"):
        assert line in code, line
    assert code.count("\n") < 600, "the script should stay short enough to read"


# ---------------------------------------------------------------------------
# Every dataset of the catalog loads exactly as dlplay loads it
# ---------------------------------------------------------------------------


def _data_document(name: str, **data) -> dict:
    info = DATASETS[name]
    flat = len(info.input_shape) == 1
    layers = ([] if flat else [{"kind": "flatten", "name": "flat"}]) + [
        {"kind": "linear", "name": "out", "out_features": len(info.classes)}]
    return {"name": f"data {name}", "data": {"name": name, **data}, "network": {"layers": layers}}


def _data_variants() -> dict[str, dict]:
    variants = {}
    for name, info in DATASETS.items():
        if info.generated:
            size = {"n_samples": 300}
        else:
            size = {"n_samples": min(info.default_n, 700)}  # exercises the class-balanced cap
        variants[name] = _data_document(name, **size, preprocessing="standardize", seed=5)
        variants[f"{name}-center-subset"] = _data_document(name, **size, preprocessing="center", train_subset=40,
                                                          val_fraction=0.3)
    return variants


DATA_VARIANTS = _data_variants()


@pytest.fixture(scope="module")
def exported_data(tmp_path_factory) -> tuple[Path, dict]:
    workdir = tmp_path_factory.mktemp("data")
    jobs = []
    for name, document in DATA_VARIANTS.items():
        path = workdir / f"{name}.py"
        path.write_text(pytorch_script(Experiment.model_validate(document)))
        jobs.append({"name": name, "script": str(path), "data_only": True})
    return workdir, train_exported(jobs, workdir)


@pytest.mark.parametrize("variant", list(DATA_VARIANTS))
def test_data_loading_matches_dlplay(exported_data, variant):
    workdir, results = exported_data
    assert "error" not in results[variant], results[variant].get("error")
    dataset = load_dataset(Experiment.model_validate(DATA_VARIANTS[variant]).data)
    with np.load(workdir / f"{variant}.npz") as arrays:
        got = [arrays[f"arr_{i}"] for i in range(4)]
    want = [dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val]
    for label, g, w in zip(("x_train", "y_train", "x_val", "y_val"), got, want):
        assert g.dtype == w.numpy().dtype and g.shape == tuple(w.shape), label
        assert np.array_equal(g, w.numpy()), f"{variant}: {label} differs"


# ---------------------------------------------------------------------------
# Every optimizer, schedule, loss and initializer; regularization, EMA, freezing, augmentation ...
# ---------------------------------------------------------------------------

FLAT_NET = {"layers": [{"kind": "linear", "name": "hidden", "out_features": 8, "activation": "tanh"},
                       {"kind": "linear", "name": "out", "out_features": 2}]}
IMAGE_NET = {"layers": [
    {"kind": "conv2d", "name": "conv", "out_channels": 4, "kernel_size": 3, "padding": 1, "activation": "relu"},
    {"kind": "dropout", "name": "drop", "p": 0.3, "spatial": True},
    {"kind": "batch_norm", "name": "bn"},
    {"kind": "flatten", "name": "flat"},
    {"kind": "linear", "name": "hidden", "out_features": 12, "activation": "elu"},
    {"kind": "dropout", "name": "drop2", "p": 0.2},
    {"kind": "linear", "name": "out", "out_features": 10}]}
SMALL_FLAT = {"name": "gaussians", "n_samples": 80}  # 64 training examples: 8 steps per epoch at batch 8


def _doc(data, network, **train) -> dict:
    return {"data": data, "network": network,
            "train": {"batch_size": 8, "max_steps": STEPS, "log_every": 3, "seed": 7, **train}}


def _training_variants() -> dict[str, dict]:
    v: dict[str, dict] = {}
    for kind, model in registry.OPTIMIZERS.items():
        if kind == "perceptron":
            net = {"layers": [{"kind": "linear", "name": "unit", "out_features": 1, "activation": "sign"}]}
            v[f"optimizer-{kind}"] = _doc(SMALL_FLAT, net, optimizer={"kind": kind, "lr": 0.5, "tau": 2.0},
                                          schedule={"kind": "inverse_time", "k": 0.5})
        elif kind == "lbfgs":
            v[f"optimizer-{kind}"] = _doc(SMALL_FLAT, FLAT_NET, optimizer={"kind": kind, "max_iter": 4},
                                          batch_size="full", l2=0.01, grad_clip=5.0)
        else:
            v[f"optimizer-{kind}"] = _doc(SMALL_FLAT, FLAT_NET, optimizer={"kind": kind, "lr": 0.05})
    for kind, model in registry.SCHEDULES.items():
        # Periods of one epoch and no patience, so each schedule moves within the compared steps.
        params = {f: 1.0 for f in model.model_fields if f.endswith("epochs")}
        params |= {f: 0 for f in model.model_fields if f == "patience"}
        v[f"schedule-{kind}"] = _doc(SMALL_FLAT, FLAT_NET, optimizer={"kind": "momentum", "lr": 0.1},
                                     schedule={"kind": kind, **params}, warmup_steps=3, eval_every=2)
    for loss in registry.LOSSES:
        v[f"loss-{loss}-two-outputs"] = _doc(SMALL_FLAT, FLAT_NET, loss=loss)
        one = {"layers": [FLAT_NET["layers"][0], {"kind": "linear", "name": "out", "out_features": 1}]}
        v[f"loss-{loss}-one-output"] = _doc(SMALL_FLAT, one, loss=loss)
    v["loss-cross_entropy-ten-classes"] = _doc(IMAGE_DATA, IMAGE_NET, loss="cross_entropy")
    v["loss-mse-ten-classes"] = _doc(IMAGE_DATA, IMAGE_NET, loss="mse")
    v["loss-hinge-ten-classes"] = _doc(IMAGE_DATA, IMAGE_NET, loss="hinge")
    for kind in registry.INITIALIZERS:
        bias = "uniform" if needs_matrix(registry.INITIALIZERS[kind]()) else kind
        net = {"layers": [
            {"kind": "conv2d", "name": "conv", "out_channels": 4, "kernel_size": 3, "groups": 1,
             "weight_init": kind, "bias_init": bias, "activation": "tanh"},
            {"kind": "conv2d", "name": "depthwise", "out_channels": 4, "kernel_size": 3, "groups": 4,
             "weight_init": kind, "bias_init": bias},
            {"kind": "flatten", "name": "flat"},
            {"kind": "maxout", "name": "mx", "out_features": 6, "weight_init": kind, "bias_init": bias},
            {"kind": "linear", "name": "out", "out_features": 10, "weight_init": kind, "bias_init": bias}]}
        v[f"init-{kind}"] = _doc(IMAGE_DATA, net)
    v["regularized"] = _doc(IMAGE_DATA, IMAGE_NET, l2=0.01, l1=0.001, grad_clip=0.5)
    v["adamw-ema-freeze"] = _doc(IMAGE_DATA, IMAGE_NET, optimizer={"kind": "adamw", "lr": 0.01}, ema_decay=0.9,
                                 freeze=["conv"], eval_every=4)
    v["early-stopping-plateau"] = _doc(SMALL_FLAT, FLAT_NET, optimizer={"kind": "sgd", "lr": 2.0},
                                       early_stopping={"patience": 2, "min_delta": 0.5}, eval_every=2,
                                       schedule={"kind": "plateau", "patience": 0, "factor": 0.5})
    v["augmentation"] = _doc({**IMAGE_DATA, "preprocessing": "center",
                              "augmentation": {"hflip": True, "crop_padding": 1, "rotate_degrees": 15,
                                               "noise_std": 0.1}}, IMAGE_NET)
    v["noise-on-points"] = _doc({**SMALL_FLAT, "augmentation": {"noise_std": 0.2}}, FLAT_NET)
    v["full-batch"] = _doc(SMALL_FLAT, FLAT_NET, batch_size="full")
    v["odd-layer-names"] = _doc(FLAT_DATA, {"layers": [
        {"kind": "linear", "name": "train", "out_features": 6, "activation": {"kind": "prelu", "init": 0.1}},
        {"kind": "linear", "name": "x", "out_features": 6, "inputs": ["input"], "activation": "silu"},
        {"kind": "concat", "name": "a.b", "inputs": ["train", "x"]},
        {"kind": "activation", "name": "a_b", "activation": "prelu"},
        {"kind": "layer_norm", "name": "block-norm"},
        {"kind": "add", "name": "self", "inputs": ["block-norm", "a.b"]},
        {"kind": "linear", "name": "out", "out_features": 2}]}, freeze=["a_b"])
    v["lsuv"] = _doc(IMAGE_DATA, {"layers": [
        {"kind": "conv2d", "name": "conv", "out_channels": 4, "kernel_size": 3, "weight_init": "lsuv",
         "activation": "relu"},
        {"kind": "flatten", "name": "flat"},
        {"kind": "linear", "name": "hidden", "out_features": 16, "weight_init": {"kind": "lsuv", "target_var": 0.5},
         "activation": "tanh"},
        {"kind": "linear", "name": "out", "out_features": 10}]})
    return v


TRAINING_VARIANTS = _training_variants()


@pytest.fixture(scope="module")
def exported_training(tmp_path_factory) -> dict[str, dict]:
    workdir = tmp_path_factory.mktemp("training")
    jobs, want = [], {}
    for name, document in TRAINING_VARIANTS.items():
        experiment = with_train(document)
        path = workdir / f"{name}.py"
        path.write_text(pytorch_script(experiment))
        jobs.append({"name": name, "script": str(path), "steps": STEPS})
        want[name] = reference_losses(experiment, STEPS)[0]
    got = train_exported(jobs, workdir)
    return {name: {"want": want[name], "got": got[name]} for name in TRAINING_VARIANTS}


def test_training_variants_cover_the_registry():
    names = set(TRAINING_VARIANTS)
    assert {f"optimizer-{k}" for k in registry.OPTIMIZERS} <= names
    assert {f"schedule-{k}" for k in registry.SCHEDULES} <= names
    assert {f"init-{k}" for k in registry.INITIALIZERS} <= names


@pytest.mark.parametrize("variant", list(TRAINING_VARIANTS))
def test_training_variant_reproduces_the_losses(exported_training, variant):
    result = exported_training[variant]
    got = result["got"]
    assert "error" not in got, got.get("error")
    want = result["want"]
    assert len(got["loss"]) == len(want), f"dlplay took {len(want)} steps, the script {len(got['loss'])}"
    diff = max((abs(a - b) for a, b in zip(got["loss"], want)), default=0.0)
    assert diff <= TOLERANCE, f"{variant}: losses differ by {diff:.3g}\ndlplay: {want}\nexport: {got['loss']}"


def test_schedules_move_the_learning_rate(exported_training):
    """The schedule variants are not vacuous: within the compared steps each LR changes."""
    for kind in registry.SCHEDULES:
        lrs = exported_training[f"schedule-{kind}"]["got"]["lr"]
        assert len(set(lrs)) > 2, f"schedule {kind}: the LR did not move ({lrs})"


# ---------------------------------------------------------------------------
# Uploads, names, errors
# ---------------------------------------------------------------------------


def test_an_uploaded_dataset_is_read_from_the_file_given(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["a,b,c,label"] + [f"{x:.4f},{y:.4f},{z:.4f},{int(x + y > 0)}" for x, y, z in rng.normal(size=(90, 3))]
    uploaded = parse_upload("points.csv", "\n".join(rows).encode(), max_bytes=1 << 20, max_examples=1000)
    upload_id = save_upload(uploaded, tmp_path / "uploads")
    document = _doc({"name": f"upload:{upload_id}", "preprocessing": "standardize"}, {"layers": [
        {"kind": "linear", "name": "hidden", "out_features": 5, "activation": "relu"},
        {"kind": "linear", "name": "out", "out_features": 2}]})
    experiment = with_train(document)
    want, _ = reference_losses(experiment, STEPS, uploads_dir=tmp_path / "uploads")
    script = tmp_path / "upload.py"
    script.write_text(pytorch_script(experiment, uploads_dir=tmp_path / "uploads"))
    stored = tmp_path / "uploads" / f"{upload_id}.npz"
    got = train_exported([{"name": "upload", "script": str(script), "steps": STEPS, "data_file": str(stored)}],
                         tmp_path)["upload"]
    assert "error" not in got, got.get("error")
    assert max(abs(a - b) for a, b in zip(got["loss"], want)) <= TOLERANCE
    missing = run_without_dlplay("import runpy; sys.argv = ['upload.py']; runpy.run_path('upload.py', "
                                 "run_name='__main__')", tmp_path)
    assert missing.returncode != 0 and "--data" in missing.stderr


def test_module_names_are_identifiers_that_never_clash():
    from server.schemas import NetworkSpec

    spec = NetworkSpec.model_validate({"layers": [
        {"kind": "linear", "name": "a.b", "out_features": 2, "activation": "prelu"},
        {"kind": "linear", "name": "a_b", "out_features": 2},
        {"kind": "linear", "name": "a_b_act", "out_features": 2},
        {"kind": "linear", "name": "train", "out_features": 2},
        {"kind": "linear", "name": "class", "out_features": 2}]})
    names = module_names(spec)
    attrs = [a for pair in names.values() for a in pair if a]
    assert len(attrs) == len(set(attrs))
    assert all(a.isidentifier() for a in attrs)
    assert names["train"][0] == "train_" and names["class"][0] == "class_"


def test_invalid_networks_are_refused_with_the_builders_message():
    document = _doc(SMALL_FLAT, {"layers": [{"kind": "linear", "name": "out", "out_features": 3}]})
    with pytest.raises(ValueError, match="out"):
        pytorch_script(Experiment.model_validate(document))

