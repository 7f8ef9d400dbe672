"""What real sessions emit: every message validates against its model in server/messages.py, and
PROTOCOL.md documents every type with the fields the code really sends.

The sessions are real (spiral MLP, LeNet-5 on MNIST, a squeeze-and-excitation net, the tiny
backprop MLP, and a spiral run whose learning rate makes it explode), stamped as the server's
channel stamps them, and every message is checked as JSON text, strictly (``validate_message``).
"""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from server import protocol
from server.cli import load_experiment
from server.messages import LIVE_FRAME_TYPES, MESSAGE_MODELS, validate_message
from server.runner import RunSession

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "server" / "PROTOCOL.md").read_text()
MODELS = ROOT / "models"

# Every live view, with the arguments the example-based ones need; views that do not apply to a run
# (the boundary on images, attention without attention layers) are left out by the session itself.
ALL_VIEWS = {
    "layer_stats": {}, "weights": {}, "filters": {}, "boundary": {}, "evaluation": {},
    "feature_maps": {"index": 1}, "saliency": {"index": 2}, "gradcam": {"index": 2}, "attention": {"index": 0},
}
FASTEST_HZ = 60.0  # the schema's highest rate: every view as often as the clock allows


def documented_examples() -> dict[str, dict]:
    """Heading `type` -> the JSON example below it."""
    examples = {}
    for match in re.finditer(r"### `(\w+)`.*?```json\n(.*?)\n```", DOC, re.S):
        examples[match.group(1)] = json.loads(match.group(2))
    return examples


def run_messages(preset: str, steps: int, on_demand: list[tuple[str, dict]], *, lr: float | None = None) -> list[dict]:
    """A real session of ``preset`` watching every live view, stamped like the server's run channel stamps it.

    Trains ``steps - 2`` steps, then a Step (a frame of every watched view), the ``on_demand`` probes,
    a prediction on image data, a live LR change, two speed changes and a stop. A run that ends
    early (the diverging one) sends what it sent up to its end.
    """
    experiment = load_experiment(str(MODELS / f"{preset}.json"))
    experiment.train.max_steps = steps
    experiment.train.log_every = 5
    experiment.probes.rates = {name: FASTEST_HZ for name in ALL_VIEWS}
    if lr is not None:
        experiment.train.optimizer.lr = lr
    session = RunSession(experiment, run_id="doc", device="cpu")
    session.set_views(ALL_VIEWS)
    messages = session.start()
    while not session.done and session.trainer.step_count < steps - 2:
        messages += session.advance(max_steps=min(5, steps - 2 - session.trainer.step_count), max_seconds=60)
    if not session.done:
        step_frames = session.step_once()
        for message in step_frames:
            message["_from_step"] = True  # marked for test_every_frame_of_a_step_says_its_rate; removed below
        messages += step_frames
        for kind, args in on_demand:
            messages += session.probe(kind, **args)
        if session.dataset.kind == "image":
            messages += session.predict([0.0] * len(session.dataset.x_val[0].flatten()))
        messages += session.set_hyperparams(lr=0.001)
        messages += session.set_speed(10.0) + session.set_speed(None)
        messages += session.stop()
    session.close()
    stamper = protocol.Stamper("doc")
    return [stamper.stamp(m) for m in messages]


def from_step(message: dict) -> bool:
    """Whether a stamped message came from the Step; removes the mark so the message is what the server sends."""
    return bool(message.pop("_from_step", False))


@pytest.fixture(scope="module")
def sessions(step_frames) -> dict[str, list[dict]]:
    return step_frames[0]


@pytest.fixture(scope="module")
def step_frames() -> tuple[dict[str, list[dict]], list[dict]]:
    """(session name -> its stamped messages, the live-view frames the Steps sent)."""
    runs = {
        "spiral": run_messages("spiral_mlp", 30, [("boundary", {}), ("confusion", {}), ("misclassified", {})]),
        "lenet": run_messages("lenet5_mnist", 20, [("feature_maps", {"index": 1}), ("saliency", {"smoothgrad": True}),
                                                   ("gradcam", {}), ("filters", {}), ("weights", {}),
                                                   ("fgsm", {"index": 1, "epsilon": 0.1}), ("fgsm_sweep", {})]),
        "senet": run_messages("senet_small", 10, [("attention", {})]),
        "backprop": run_messages("backprop_tiny", 10, [("backprop_trace", {}), ("gradient_check", {}),
                                                       ("optimizer_race", {"function": "saddle", "steps": 20})]),
        # Adam at lr 1e4 throws the weights far off at once: the loss explodes or turns NaN within a few steps.
        "diverging": run_messages("spiral_mlp", 30, [], lr=1e4),
    }
    frames = [m for messages in runs.values() for m in messages if from_step(m) and m["type"] in LIVE_FRAME_TYPES]
    return runs, frames


@pytest.fixture(scope="module")
def emitted(sessions) -> dict[str, dict]:
    """Message type -> the first message of that type any session sent."""
    by_type: dict[str, dict] = {}
    for messages in sessions.values():
        for message in messages:
            by_type.setdefault(message["type"], message)
    return by_type


def validation_failures(messages: list[dict]) -> list[str]:
    failures = []
    for message in messages:
        try:
            validate_message(message)
        except ValueError as error:  # pydantic.ValidationError and UnknownMessageType are ValueErrors
            failures.append(f"{message['type']} (seq {message.get('seq')}): {error}")
    return failures


@pytest.mark.parametrize("name", ["spiral", "lenet", "senet", "backprop", "diverging"])
def test_every_message_a_session_sends_validates_against_its_model(sessions, name):
    failures = validation_failures(sessions[name])
    assert not failures, "\n".join(failures[:10])


def test_the_sessions_send_every_type_a_run_stream_carries(emitted):
    # pong and most errors are websocket replies (tests/api/test_ws_messages.py checks those).
    assert set(MESSAGE_MODELS) - set(emitted) <= {"pong", "error"}


def test_the_diverging_run_ends_with_its_reason_and_the_doctors_hint(sessions):
    messages = sessions["diverging"]
    final = next(m for m in messages if m["type"] == "final")
    assert final["stop_reason"] in ("exploded", "non_finite"), final
    assert any(m["type"] == "hint" and m["code"] == "lr_too_high" for m in messages)


def test_every_frame_of_a_step_says_its_rate(step_frames):
    """A Step trains one observed step and sends a frame of every watched view; each frame carries
    the rate its view streams at (the layer_stats frames of the observed step included)."""
    _, frames = step_frames
    assert {m["type"] for m in frames} >= {"activations", "gradients", "weights", "filters", "boundary", "feature_maps",
                                           "saliency", "gradcam", "attention"}
    missing = sorted({m["type"] for m in frames if "rate_hz" not in m})
    assert not missing, f"live-view frames without rate_hz: {missing}"
    assert all(0 < m["rate_hz"] <= FASTEST_HZ for m in frames)


def test_every_emitted_type_is_documented_with_the_same_fields(emitted):
    examples = documented_examples()
    envelope = {"run_id", "seq", "t"}
    for kind, message in emitted.items():
        assert kind in examples, f"message type {kind!r} is not documented in PROTOCOL.md"
        # The example may show optional fields (e.g. a status's queue position); every field sent must be there.
        undocumented = set(message) - set(examples[kind])
        assert not undocumented, f"{kind}: fields {undocumented} are not in PROTOCOL.md's example"
        assert envelope <= set(examples[kind]) or kind in ("error",), f"{kind}: example lacks the envelope"


def test_lenet_emits_at_least_six_probe_types(sessions):
    probe_types = {m["type"] for m in sessions["lenet"]} - {
        "summary", "status", "metrics", "final", "hyperparams", "hint", "prediction"}
    assert len(probe_types) >= 6, probe_types


def _first(messages: list[dict], kind: str) -> dict[str, Any]:
    return next(m for m in messages if m["type"] == kind)


def test_image_and_flat_layers_are_told_apart_in_feature_maps(sessions):
    """LeNet's conv layers come as grids with their tiling, its linear layers as values with no grid."""
    layers = _first(sessions["lenet"], "feature_maps")["layers"]
    grids = [layer for layer in layers if layer["grid"] is not None]
    flat = [layer for layer in layers if layer["grid"] is None]
    assert grids and flat
    assert all(layer["values"] is None and layer["cols"] >= 1 and "tile" in layer for layer in grids)
    assert all(layer["values"] and layer["cols"] is None and "tile" not in layer for layer in flat)
