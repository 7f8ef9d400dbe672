"""A conv layer's filters as an image grid (the Filters & maps tab)."""

from __future__ import annotations

from typing import Any

from server import probes, protocol
from server.live.base import Argument, LiveView


def compute(session: Any, layer: str | None = None) -> list[dict[str, Any]]:
    convs = session.conv_layers
    layer = layer or convs[0]
    if layer not in convs:
        raise ValueError(f"{layer!r} is not a conv2d layer; choose one of {', '.join(convs)}")
    grid = probes.filter_images(session.model.blocks[layer].core, normalizer=session.filter_normalizer(layer))
    return [protocol.filters_message(session.trainer.step_count, layer, grid)]


def applies(session: Any) -> str | None:
    return None if session.conv_layers else "this network has no conv2d layer, so it has no filters to show"


VIEW = LiveView(
    name="filters",
    messages=("filters",),
    description="the filters of a conv layer (default: the first), as a grid of images",
    compute=compute,
    default_hz=1.0,
    default_on=True,
    arguments=(Argument("layer", "str", "a conv2d layer's name"),),
    applies=applies,
)
