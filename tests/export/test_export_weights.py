"""Weights out and back in: safetensors under document names, ``train.init_from``, and where its file comes from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from export_helpers import reference_losses, run_without_dlplay, train_exported, with_train
from safetensors.torch import load, save_file

from server.export import export_file
from server.export.model import read_safetensors
from server.export.pytorch_code import pytorch_script
from server.export.weights import WeightsError, document_names, resolve_init_from, save_weights_upload
from server.schemas import Experiment, InitFromSpec
from server.store import Store
from server.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]

CONV_NET = {
    "name": "small conv net",
    "data": {"name": "digits", "n_samples": 600, "preprocessing": "standardize"},
    "network": {"layers": [
        {"kind": "conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "padding": 1, "activation": "prelu"},
        {"kind": "batch_norm", "name": "bn1"},
        {"kind": "squeeze_excite", "name": "se.1"},
        {"kind": "flatten", "name": "flat"},
        {"kind": "linear", "name": "fc", "out_features": 16, "activation": "relu"},
        {"kind": "linear", "name": "out", "out_features": 10}]},
    "train": {"optimizer": {"kind": "adam", "lr": 0.01}, "batch_size": 32, "max_steps": 40, "seed": 4},
}


@pytest.fixture(scope="module")
def trained_a() -> Trainer:
    _, trainer = reference_losses(with_train(CONV_NET), 40)
    return trainer


def _save(tmp_path: Path, content: bytes, name: str = "weights.safetensors") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _from(experiment: Experiment, **init_from) -> Experiment:
    spec = {"upload_id": "ab" * 8, **init_from}
    return experiment.model_copy(update={"train": experiment.train.model_copy(
        update={"init_from": InitFromSpec.model_validate(spec)})})


def test_safetensors_export_uses_document_names_and_carries_the_experiment(tmp_path, trained_a):
    exported = export_file("safetensors", trained_a.experiment, weights=trained_a.model.state_dict(), run_id="abc")
    tensors = load(exported.content)
    assert {"conv1.weight", "conv1.bias", "conv1.act.weight", "bn1.running_mean", "bn1.num_batches_tracked",
            "se.1.fc1.weight", "fc.weight", "out.bias"} <= set(tensors)
    assert not any(name.startswith("blocks.") or ".core." in name for name in tensors)
    meta = read_safetensors(_save(tmp_path, exported.content))[1]
    assert Experiment.model_validate_json(meta["experiment"]) == trained_a.experiment
    assert meta["run_id"] == "abc" and meta["trained"] == "true" and json.loads(meta["input_shape"]) == [1, 8, 8]


def test_a_reimported_export_continues_with_identical_validation_accuracy(tmp_path, trained_a):
    exported = export_file("safetensors", trained_a.experiment, weights=trained_a.model.state_dict())
    path = _save(tmp_path, exported.content)
    before = trained_a.evaluate()
    b = Trainer(_from(trained_a.experiment), device="cpu", init_weights=path)
    after = b.evaluate()
    assert (after.accuracy, after.loss, after.n) == (before.accuracy, before.loss, before.n)
    assert b.init_report.loaded == ["conv1", "bn1", "se.1", "fc", "out"]
    first = b.step()  # and it trains on from there
    assert first.stop is None and torch.isfinite(first.loss)


def test_the_stores_weight_files_and_the_scripts_state_dict_load_too(tmp_path, trained_a):
    store_file = tmp_path / "store.safetensors"
    save_file({k: v.contiguous() for k, v in trained_a.model.state_dict().items()}, str(store_file))
    b = Trainer(_from(trained_a.experiment), device="cpu", init_weights=store_file)
    assert b.evaluate().accuracy == trained_a.evaluate().accuracy

    # The exported script trains the same network and saves model.state_dict(); dlplay starts from it.
    experiment = with_train(CONV_NET, max_steps=8)
    script = tmp_path / "net.py"
    script.write_text(pytorch_script(experiment))
    result = run_without_dlplay("import runpy; sys.argv = ['net.py', '--save', 'net.safetensors', '--history', "
                                "'h.json']; runpy.run_path('net.py', run_name='__main__')", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    script_val = json.loads((tmp_path / "h.json").read_text())["val"][-1]
    c = Trainer(_from(experiment), device="cpu", init_weights=tmp_path / "net.safetensors")
    ev = c.evaluate()
    assert ev.accuracy == script_val["accuracy"] and abs(ev.loss - script_val["loss"]) < 1e-6


def test_only_the_chosen_layers_are_loaded(tmp_path, trained_a):
    path = _save(tmp_path, export_file("safetensors", trained_a.experiment,
                                       weights=trained_a.model.state_dict()).content)
    fresh = Trainer(with_train(CONV_NET), device="cpu").model.state_dict()
    b = Trainer(_from(trained_a.experiment, layers=["conv1", "bn1"]), device="cpu", init_weights=path)
    loaded = b.model.state_dict()
    trained = trained_a.model.state_dict()
    for key in loaded:
        layer = key.split(".")[1]
        source = trained if layer in ("conv1", "bn1") else fresh
        assert torch.equal(loaded[key], source[key]), key


def test_a_different_network_takes_what_fits_when_not_strict(tmp_path, trained_a):
    path = _save(tmp_path, export_file("safetensors", trained_a.experiment,
                                       weights=trained_a.model.state_dict()).content)
    other = json.loads(json.dumps(CONV_NET))
    other["network"]["layers"][4]["out_features"] = 24  # fc (and so out) change shape: transfer the convolutions
    strict = _from(with_train(other))
    with pytest.raises(WeightsError, match=r"layer 'fc': 'fc.weight' is 16x256 in the file but 24x256 here.*strict"):
        Trainer(strict, device="cpu", init_weights=path)
    loose = _from(with_train(other), strict=False)
    b = Trainer(loose, device="cpu", init_weights=path)
    assert b.init_report.loaded == ["conv1", "bn1", "se.1"]
    assert set(b.init_report.skipped) == {"fc", "out"} and "24x256" in b.init_report.skipped["fc"]


@pytest.mark.parametrize("init_from, message", [
    ({"layers": ["nope"]}, "network does not have"),
    ({"layers": ["flat"]}, "hold no weights"),
], ids=["unknown-layer", "weightless-layer"])
def test_bad_layer_choices_are_refused(tmp_path, trained_a, init_from, message):
    path = _save(tmp_path, export_file("safetensors", trained_a.experiment,
                                       weights=trained_a.model.state_dict()).content)
    with pytest.raises(WeightsError, match=message):
        Trainer(_from(trained_a.experiment, **init_from), device="cpu", init_weights=path)


def test_unused_tensors_and_missing_files_are_errors(tmp_path, trained_a):
    tensors = {k: v.contiguous() for k, v in trained_a.model.state_dict().items()} | {"stray.weight": torch.ones(2)}
    path = tmp_path / "extra.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(WeightsError, match="no layer of this network takes: 'stray.weight'"):
        Trainer(_from(trained_a.experiment), device="cpu", init_weights=path)
    with pytest.raises(WeightsError, match="no weights file was found"):
        Trainer(_from(trained_a.experiment), device="cpu")
    with pytest.raises(WeightsError, match="missing"):
        Trainer(_from(trained_a.experiment), device="cpu", init_weights=tmp_path / "gone.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        Trainer(_from(trained_a.experiment), device="cpu", init_weights=tmp_path / "junk.safetensors")


def test_init_from_names_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one"):
        InitFromSpec.model_validate({})
    with pytest.raises(ValueError, match="exactly one"):
        InitFromSpec.model_validate({"run_id": "a", "upload_id": "ab" * 8})
    with pytest.raises(ValueError):
        InitFromSpec.model_validate({"upload_id": "../../etc/passwd"})


def test_the_server_resolves_runs_of_the_session_and_uploads(tmp_path, trained_a):
    store = Store(tmp_path / "data")
    try:
        store.create_run("r1", "alice", "a", trained_a.experiment.model_dump(mode="json"))
        with pytest.raises(WeightsError, match=r"run 'r1' \(queued\) has no saved weights"):
            resolve_init_from(InitFromSpec(run_id="r1"), store=store, session_id="alice")
        path = store.save_weights("r1", trained_a.model.state_dict())
        store.finish_run("r1", "finished", final={}, stop_reason="finished", weights_path=path)
        assert resolve_init_from(InitFromSpec(run_id="r1"), store=store, session_id="alice") == path
        with pytest.raises(WeightsError, match="no run 'r1' here"):  # another session's run is "not found"
            resolve_init_from(InitFromSpec(run_id="r1"), store=store, session_id="bob")
        assert resolve_init_from(InitFromSpec(run_id="r1"), store=store, session_id=None) == path  # dlplay run

        upload = tmp_path / "upload.tmp"
        upload.write_bytes(export_file("safetensors", trained_a.experiment,
                                       weights=trained_a.model.state_dict()).content)
        saved = save_weights_upload(upload, store.uploads_dir)
        assert saved.experiment["name"] == "small conv net" and saved.layers == ["conv1", "bn1", "se.1", "fc", "out"]
        spec = InitFromSpec(upload_id=saved.id)
        assert resolve_init_from(spec, store=store, session_id="anyone").name == f"{saved.id}.safetensors"
        with pytest.raises(WeightsError, match="no uploaded weights"):
            resolve_init_from(InitFromSpec(upload_id="0" * 16), store=store, session_id="alice")
    finally:
        store.close()


def test_document_names_refuse_a_clash():
    from server.builder import build_model

    model, _ = build_model({"layers": [
        {"kind": "squeeze_excite", "name": "se"},  # holds se.fc1.weight
        {"kind": "flatten", "name": "flat"},
        {"kind": "linear", "name": "se.fc1", "out_features": 2}]}, (4, 4, 4), 2)  # and so does this one
    with pytest.raises(WeightsError, match="would both be saved as 'se.fc1.weight'"):
        document_names(model)


def test_the_exported_script_can_start_from_dlplay_weights(tmp_path, trained_a):
    """A run started with init_from exports a script whose --init-from reproduces it."""
    weights = _save(tmp_path, export_file("safetensors", trained_a.experiment,
                                          weights=trained_a.model.state_dict()).content)
    experiment = _from(with_train(CONV_NET, max_steps=6), layers=["conv1", "bn1", "se.1", "fc"])
    want, _ = reference_losses(experiment, 6, init_weights=weights)
    script = tmp_path / "from_weights.py"
    script.write_text(pytorch_script(experiment))
    got = train_exported([{"name": "w", "script": str(script), "steps": 6, "init_from": str(weights)}], tmp_path)["w"]
    assert "error" not in got, got.get("error")
    assert max(abs(a - b) for a, b in zip(got["loss"], want)) <= 1e-5

