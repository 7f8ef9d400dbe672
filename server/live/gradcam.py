"""Grad-CAM on a conv layer for one validation image (the Attention tab)."""

from __future__ import annotations

from typing import Any

from server import probes, protocol
from server.live.base import Argument, LiveView


def compute(session: Any, index: int | None = None, target: int | None = None, layer: str | None = None) -> list[dict[str, Any]]:
    if layer is not None and layer not in session.conv_layers:
        raise ValueError(f"{layer!r} is not a conv2d layer; choose one of {', '.join(session.conv_layers)}")
    index, x, _label = session.example(index)
    result = probes.gradcam(session.model, x, layer=layer, target=session.check_class(target))
    return [protocol.gradcam_message(session.trainer.step_count, index, session.display(x), result)]


def applies(session: Any) -> str | None:
    return None if session.conv_layers else "Grad-CAM needs a conv2d layer; this network has none"


VIEW = LiveView(
    name="gradcam",
    messages=("gradcam",),
    description="Grad-CAM: where a conv layer looks for the target class",
    compute=compute,
    default_hz=1.0,
    kinds=("image",),
    arguments=(
        Argument("index", "int", "the validation example (0-based)"),
        Argument("target", "int", "the class to explain (default: the predicted one)"),
        Argument("layer", "str", "the conv2d layer (default: the last)"),
    ),
    applies=applies,
)
