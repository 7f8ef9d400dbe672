"""Every preset in models/ validates, builds, and trains 20 steps with finite losses."""

import json
import math
from pathlib import Path

import pytest

from server.presets import MODELS_DIR, list_presets
from server.runner import RunSession
from server.schemas import Experiment

PRESETS = sorted(p.stem for p in MODELS_DIR.glob("*.json"))
REQUIRED = {
    "perceptron_gaussians", "spiral_mlp", "deep_tanh_small_init", "deep_tanh_xavier", "lenet5_mnist",
    "alexnet_small", "vgg_small", "resnet_small", "mobilenet_small", "senet_small",
}


def test_the_classic_presets_are_all_there():
    assert REQUIRED <= set(PRESETS)
    for preset in list_presets():
        assert preset["description"], preset["id"]


@pytest.mark.parametrize("preset_id", PRESETS)
def test_preset_runs_20_steps_with_finite_losses(preset_id):
    document = json.loads((MODELS_DIR / f"{preset_id}.json").read_text())
    experiment = Experiment.model_validate(document)
    experiment.train.max_steps = 20
    experiment.train.log_every = 5
    experiment.probes.enabled = False
    session = RunSession(experiment, run_id=preset_id, device="cpu")
    messages = session.start()
    while not session.done:
        messages += session.advance(max_steps=50, max_seconds=60)
    losses = [m["train_loss"] for m in messages if m["type"] == "metrics" and m["train_loss"] is not None]
    assert len(losses) >= 4
    assert all(isinstance(v, float) and math.isfinite(v) for v in losses), losses
    final = messages[-2] if messages[-1]["type"] == "status" else messages[-1]
    assert final["type"] == "final" and final["steps"] == 20
    session.close()
