"""Squeeze-excite channel weights and spatial-attention masks for one validation image (the Attention tab)."""

from __future__ import annotations

from typing import Any

from server import probes, protocol
from server.live.base import Argument, LiveView


def compute(session: Any, index: int | None = None) -> list[dict[str, Any]]:
    index, x, _label = session.example(index)
    masks = probes.attention_masks(session.model, x)
    return [protocol.attention_message(session.trainer.step_count, index, session.display(x), masks)]


def applies(session: Any) -> str | None:
    kinds = {block.kind for block in session.model.blocks.values()}
    if kinds & {"squeeze_excite", "spatial_attention"}:
        return None
    return "this network has no squeeze_excite or spatial_attention layer"


VIEW = LiveView(
    name="attention",
    messages=("attention",),
    description="the masks of squeeze-excite and spatial-attention layers for one validation image",
    compute=compute,
    default_hz=1.0,
    kinds=("image",),
    arguments=(Argument("index", "int", "the validation example (0-based)"),),
    applies=applies,
)
