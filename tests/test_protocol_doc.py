"""PROTOCOL.md documents every message type a run emits, with the fields the code really sends."""

import json
import re
from pathlib import Path

import pytest

from server.cli import load_experiment
from server.runner import RunSession

DOC = (Path(__file__).resolve().parent.parent / "server" / "PROTOCOL.md").read_text()
MODELS = Path(__file__).resolve().parent.parent / "models"


def documented_examples() -> dict[str, dict]:
    """Heading `type` -> the JSON example below it."""
    examples = {}
    for match in re.finditer(r"### `(\w+)`.*?```json\n(.*?)\n```", DOC, re.S):
        examples[match.group(1)] = json.loads(match.group(2))
    return examples


def run_messages(preset: str, steps: int, on_demand: list[tuple[str, dict]]) -> list[dict]:
    experiment = load_experiment(str(MODELS / f"{preset}.json"))
    experiment.train.max_steps = steps
    experiment.train.log_every = 5
    experiment.probes.every = 5
    experiment.probes.heavy_every = 10
    session = RunSession(experiment, run_id="doc", device="cpu")
    messages = session.start()
    while not session.done and session.trainer.step_count < steps - 1:
        messages += session.advance(max_steps=5, max_seconds=60)
    for kind, args in on_demand:
        messages += session.probe(kind, **args)
    if session.dataset.kind == "image":
        messages += session.predict([0.0] * len(session.dataset.x_val[0].flatten()))
    messages += session.set_hyperparams(lr=0.001)
    messages += session.stop()
    session.close()
    return messages


@pytest.fixture(scope="module")
def emitted() -> dict[str, dict]:
    messages = run_messages("spiral_mlp", 30, [("boundary", {})])
    messages += run_messages("lenet5_mnist", 20, [("feature_maps", {"index": 1}), ("saliency", {}), ("gradcam", {})])
    messages += run_messages("senet_small", 10, [("attention", {})])
    messages += run_messages("backprop_tiny", 10, [("backprop_trace", {}), ("gradient_check", {})])
    by_type: dict[str, dict] = {}
    for message in messages:
        by_type.setdefault(message["type"], message)
    return by_type


def test_every_emitted_type_is_documented_with_the_same_fields(emitted):
    examples = documented_examples()
    envelope = {"run_id", "seq", "t"}
    for kind, message in emitted.items():
        assert kind in examples, f"message type {kind!r} is not documented in PROTOCOL.md"
        # The example may show optional fields (e.g. a status's queue position); every field sent must be there.
        undocumented = set(message) - set(examples[kind])
        assert not undocumented, f"{kind}: fields {undocumented} are not in PROTOCOL.md's example"
        assert envelope <= set(examples[kind]) or kind in ("error",), f"{kind}: example lacks the envelope"


def test_lenet_emits_at_least_six_probe_types(emitted):
    probe_types = set(emitted) - {"summary", "status", "metrics", "final", "hyperparams", "hint", "prediction"}
    assert len(probe_types) >= 6, probe_types
