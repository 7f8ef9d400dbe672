"""Every layer's output for one validation example (the Filters & maps tab)."""

from __future__ import annotations

from typing import Any

from server import probes, protocol
from server.live.base import Argument, LiveView


def compute(session: Any, index: int | None = None) -> list[dict[str, Any]]:
    index, x, label = session.example(index)
    maps = probes.feature_maps(session.model, session.model.blocks, x)
    image = session.display(x) if session.dataset.kind == "image" else None
    return [protocol.feature_maps_message(session.trainer.step_count, index, label, image, maps)]


VIEW = LiveView(
    name="feature_maps",
    messages=("feature_maps",),
    description="each layer's activations for one validation example",
    compute=compute,
    default_hz=1.0,
    arguments=(Argument("index", "int", "the validation example (0-based)"),),
)
