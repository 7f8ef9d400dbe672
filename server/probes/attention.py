"""The masks attention layers apply: squeeze-excite channel weights and spatial-attention maps.

Both layers end with a sigmoid gate whose output multiplies the features:
squeeze-excite (Hu et al. 2018) gives one weight per channel, spatial attention
(CBAM, Woo et al. 2018) one weight per position. The mask is read off the gate
with a forward hook, so what is shown is exactly what the network applied.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from server.probes._attribution import OutputCapture, check_single_example, inference_state, upsample

ATTENTION_KINDS: dict[str, Literal["channel", "spatial"]] = {
    "squeeze_excite": "channel",
    "spatial_attention": "spatial",
}


@dataclass
class AttentionMask:
    """The mask one attention layer applied to one example.

    layer: block name. kind: "channel" (squeeze-excite) or "spatial".
    values: for "channel", the K channel weights in [0, 1] as a list of floats;
        for "spatial", a float32 (H, W) array in [0, 1], the gate's (h, w) mask
        upsampled bilinearly to the input size (values are not rescaled: 0.5
        means the layer halved those positions).
    """

    layer: str
    kind: Literal["channel", "spatial"]
    values: list[float] | np.ndarray


def attention_layers(model: nn.Module) -> list[tuple[str, Literal["channel", "spatial"], nn.Module]]:
    """(name, kind, gate module) of each attention layer, in forward order.

    A GraphModel's blocks of kind squeeze_excite / spatial_attention, whose
    ``core.gate`` is the sigmoid that produces the mask.
    """
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleDict):
        return []
    found = []
    for name, block in blocks.items():
        kind = ATTENTION_KINDS.get(getattr(block, "kind", ""))
        gate = getattr(getattr(block, "core", None), "gate", None)
        if kind is not None and isinstance(gate, nn.Module):
            found.append((name, kind, gate))
    return found


def attention_masks(model: nn.Module, x: Tensor) -> list[AttentionMask]:
    """The attention masks of every SE / spatial-attention layer for one example.

    Args:
        model: a GraphModel (blocks with ``core.gate``); a model without
            attention layers gives an empty list.
        x: one example, (1, C, H, W) (or (1, F) for a network without spatial attention).

    Returns:
        One AttentionMask per attention layer, in forward order. The model is
        run once in eval mode; its flags are restored afterwards.
    """
    check_single_example(x)
    layers = attention_layers(model)
    if not layers:
        return []
    device = next(model.parameters(), x).device
    x = x.detach().to(device=device, dtype=torch.float32)
    with ExitStack() as stack:
        captures = {name: stack.enter_context(OutputCapture(gate)) for name, _, gate in layers}
        with inference_state(model), torch.no_grad():
            model(x)
    masks = []
    for name, kind, _ in layers:
        if captures[name].output is None:  # the layer is not on the path to the output
            continue
        mask = captures[name].output[0].float()
        if kind == "channel":
            masks.append(AttentionMask(name, kind, [float(v) for v in mask.reshape(-1)]))
        else:
            if x.dim() != 4:
                raise ValueError(f"layer {name!r} is spatial attention but the input {tuple(x.shape)} is not an image")
            grid = mask.reshape(mask.shape[-2:])  # (1, h, w) -> (h, w)
            full = upsample(grid, tuple(x.shape[-2:])).clamp(0.0, 1.0)
            masks.append(AttentionMask(name, kind, full.cpu().numpy().astype(np.float32)))
    return masks

