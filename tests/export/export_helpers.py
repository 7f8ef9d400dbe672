"""Helpers for the export tests: run exported code without dlplay, and make example networks from the registry.

``run_without_dlplay`` is the oracle's other half: the exported script runs in a fresh
interpreter where ``import server`` fails (``sys.modules["server"] = None``), from a
temporary directory, so whatever it needs it must carry itself. ``train_exported``
runs many exported scripts in one such interpreter (one torch import for all).

The example networks are made from ``server/registry.py``: a kind's required
parameters are filled with the first of a few generic values its schema accepts,
and the kind is placed in the first context (image or flat, one input or two) that
the builder accepts. A new kind therefore gets tested without anyone listing it;
one that needs something special fails with a message saying where to add it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from server import registry
from server.builder import NetworkError, infer_shapes
from server.schemas import Experiment
from server.trainer import Trainer

HANG_GUARD = 600  # seconds: only there so a broken export fails the test instead of hanging it
GUARD = "import sys; sys.modules['server'] = None  # the export must not need dlplay\n"
# Both sides of a loss comparison compute with one torch thread: a float32 reduction split over 2 threads
# rounds differently from 1 thread (resnet_small's 5th loss moves by 1.3e-5), and the test process's count
# depends on which tests ran before it (an app's startup sets cores - 1: server/threads.py).
COMPARE_THREADS = 1

# Values tried, in order, for a kind's required parameters (out_features, out_channels, activation, ...).
GENERIC_VALUES: tuple[Any, ...] = (4, "tanh")


def run_without_dlplay(code: str, cwd: Path, timeout: float = HANG_GUARD) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in which ``import server`` (dlplay) raises ImportError."""
    return subprocess.run([sys.executable, "-c", GUARD + code], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0",
                                                "OMP_NUM_THREADS": str(COMPARE_THREADS)})


_DRIVER = """
import contextlib, io, json, runpy, traceback
import numpy as np
jobs = json.load(open("jobs.json"))
results = {}
for job in jobs:
    try:
        ns = runpy.run_path(job["script"], run_name="exported")
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            if job.get("data_only"):
                arrays = ns["load_data"](job.get("data_file"))
                np.savez(job["name"] + ".npz", *[a.numpy() for a in arrays])
                results[job["name"]] = {"ok": True}
                continue
            kwargs = {"max_steps": job["steps"]}
            if job.get("data_file"):
                kwargs["data_file"] = job["data_file"]
            if job.get("init_from"):
                kwargs["init_from"] = job["init_from"]
            model, history = ns["train"](**kwargs)
        results[job["name"]] = {"loss": history["loss"], "lr": history["lr"], "val": history["val"],
                                "printed": printed.getvalue()[-2000:]}
    except BaseException:
        results[job["name"]] = {"error": traceback.format_exc()}
json.dump(results, open("results.json", "w"))
"""


def train_exported(jobs: list[dict[str, Any]], workdir: Path) -> dict[str, dict[str, Any]]:
    """Run exported scripts' ``train(max_steps=...)`` (or ``load_data``) in one dlplay-free interpreter.

    Each job: ``{"name", "script" (path), "steps"}``, optionally ``"data_file"``, ``"init_from"`` or
    ``"data_only": True`` (then ``<name>.npz`` in ``workdir`` holds the four tensors of ``load_data``).
    Returns name -> ``{"loss": [...], "lr": [...], "val": [...]}`` or ``{"error": traceback}``.
    """
    (workdir / "jobs.json").write_text(json.dumps(jobs))
    result = run_without_dlplay(_DRIVER, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((workdir / "results.json").read_text())


def reference_losses(experiment: Experiment, steps: int, **trainer_kwargs: Any) -> tuple[list[float], Trainer]:
    """dlplay's own per-step losses for the first ``steps`` steps (CPU, ``COMPARE_THREADS`` torch threads, as the
    exported script gets), and the trainer after them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(COMPARE_THREADS)
    try:
        trainer = Trainer(experiment, device="cpu", **trainer_kwargs)
        losses = []
        for _ in range(steps):
            result = trainer.step()
            losses.append(float(result.loss))
            if result.stop is not None:
                break
    finally:
        torch.set_num_threads(threads)
    return losses, trainer


def with_train(document: dict[str, Any], **train: Any) -> Experiment:
    """``document`` with ``train`` fields overridden (on the CPU)."""
    doc = json.loads(json.dumps(document))
    doc.setdefault("train", {}).update({"device": "cpu", **train})
    return Experiment.model_validate(doc)


# ---------------------------------------------------------------------------
# Example networks from the registry
# ---------------------------------------------------------------------------

IMAGE_DATA = {"name": "digits", "n_samples": 400}  # (1, 8, 8), 10 classes, loads in milliseconds
FLAT_DATA = {"name": "gaussians", "n_samples": 120}  # (2,), 2 classes


def example_params(kind: str, family: dict[str, Any]) -> dict[str, Any]:
    """Values for the required parameters of ``kind`` (besides name/kind), from GENERIC_VALUES."""
    model = family[kind]
    params: dict[str, Any] = {}
    for field_name, field in model.model_fields.items():
        if field_name in ("kind", "name") or not field.is_required():
            continue
        for value in GENERIC_VALUES:
            try:
                named = {"name": "probe"} if "name" in model.model_fields else {}
                model.model_validate({"kind": kind, **named, **params, field_name: value})
            except ValidationError as error:
                if any(e["loc"][:1] == (field_name,) for e in error.errors()):
                    continue
            params[field_name] = value
            break
        else:
            raise AssertionError(
                f"cannot make an example of {kind!r}: no generic value fits its required parameter {field_name!r}. "
                "Fix: add the value to GENERIC_VALUES in tests/export/export_helpers.py"
            )
    return params


def _context_layers(context: str, probe: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    image = context.startswith("image")
    two = context.endswith("two_inputs")
    if image:
        stems = [{"kind": "conv2d", "name": "stem", "out_channels": 4, "kernel_size": 3, "padding": 1,
                  "activation": "relu"}]
        if two:
            stems.append({"kind": "conv2d", "name": "stem2", "out_channels": 4, "kernel_size": 3, "padding": 1,
                          "inputs": ["input"]})
        head = [{"kind": "flatten", "name": "flat"}, {"kind": "linear", "name": "head", "out_features": 10}]
        data = IMAGE_DATA
    else:
        stems = [{"kind": "linear", "name": "stem", "out_features": 6, "activation": "tanh"}]
        if two:
            stems.append({"kind": "linear", "name": "stem2", "out_features": 6, "inputs": ["input"]})
        head = [{"kind": "linear", "name": "head", "out_features": 2}]
        data = FLAT_DATA
    probe = {**probe, "inputs": ["stem", "stem2"] if two else ["stem"]}
    return data, [*stems, probe, *head]


CONTEXTS = ("image", "flat", "image_two_inputs", "flat_two_inputs")


def layer_examples() -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, context, experiment document) for every layer kind in every context where the builder accepts it.

    Raises AssertionError for a kind that fits no context (then add a context here).
    """
    out = []
    for kind in registry.LAYERS:
        probe = {"kind": kind, "name": "probe", **example_params(kind, registry.LAYERS)}
        fits = []
        for context in CONTEXTS:
            data, layers = _context_layers(context, probe)
            shape = (1, 8, 8) if context.startswith("image") else (2,)
            try:
                infer_shapes({"layers": layers}, shape, 10 if context.startswith("image") else 2)
            except NetworkError:
                continue
            fits.append((kind, context, {"name": f"{kind} ({context})", "data": data, "network": {"layers": layers}}))
        if not fits:
            raise AssertionError(f"layer kind {kind!r} fits none of the example contexts {CONTEXTS}; add one in "
                                 "tests/export/export_helpers.py")
        out += fits
    return out


def activation_example(kind: str) -> dict[str, Any]:
    """An image network using activation ``kind`` after a convolution and after a linear layer."""
    act = {"kind": kind, **{k: v for k, v in example_params(kind, registry.ACTIVATIONS).items()}}
    return {
        "name": f"activation {kind}",
        "data": IMAGE_DATA,
        "network": {"layers": [
            {"kind": "conv2d", "name": "conv", "out_channels": 8, "kernel_size": 3, "padding": 1, "activation": act},
            {"kind": "flatten", "name": "flat"},
            {"kind": "linear", "name": "hidden", "out_features": 8, "activation": act},
            {"kind": "linear", "name": "head", "out_features": 10},
        ]},
    }
