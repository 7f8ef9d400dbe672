"""Feature maps: what every layer makes of one input example."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .hooks import ActivationRecorder, no_grad_eval
from .stats import layer_kind

__all__ = ["LayerFeatureMaps", "feature_maps"]

MAX_FLAT_VALUES = 4096  # values per flat layer: the widest hidden layer a bar strip can show


@dataclass
class LayerFeatureMaps:
    """One layer's output for one example.

    Spatial outputs ``(C, H, W)``: ``images`` is uint8 ``(k, h, w)`` for the first
    ``k = min(C, max_channels)`` channels, average-pooled to at most ``max_side``
    pixels a side, on one scale for the whole layer: pixel ``u`` stands for
    ``lo + u / 255 * (hi - lo)`` (``lo``/``hi`` = min/max of the shown values).
    Flat outputs ``(F,)`` (and any other rank, flattened): ``values`` float32, the
    first ``MAX_FLAT_VALUES`` raw values; ``images`` is None.
    ``shape`` is the full output shape, without the batch axis.
    """

    layer: str
    kind: str
    shape: tuple[int, ...]
    images: np.ndarray | None
    values: np.ndarray | None
    lo: float
    hi: float


def _pooled_size(h: int, w: int, max_side: int) -> tuple[int, int]:
    """Shrink ``(h, w)`` to fit in ``max_side`` keeping the aspect ratio; never enlarge."""
    if max(h, w) <= max_side:
        return h, w
    f = max_side / max(h, w)
    return max(1, round(h * f)), max(1, round(w * f))


def feature_maps(
    model: nn.Module,
    layers: Mapping[str, nn.Module] | None,
    x_single: Tensor,
    *,
    max_channels: int = 64,
    max_side: int = 64,
) -> list[LayerFeatureMaps]:
    """Run one example through ``model`` (eval mode, no grad) and picture each layer's output.

    Args:
        model: the network; its mode is restored afterwards.
        layers: name -> module of ``model`` whose output is shown, in order; None: ``model.blocks``.
        x_single: ``(1, C, H, W)`` or ``(1, F)``, on the model's device.
        max_channels: channels shown per spatial layer (the first ones).
        max_side: larger maps are adaptive-average-pooled to fit this many pixels a side.

    Returns: one :class:`LayerFeatureMaps` per layer that ran, in ``layers`` order.
    One device-to-host transfer.
    """
    if x_single.dim() < 2 or x_single.shape[0] != 1:
        raise ValueError(
            f"feature_maps takes one example with a batch axis, (1, ...); got shape {tuple(x_single.shape)}"
        )
    layers = getattr(model, "blocks", {}) if layers is None else layers
    with no_grad_eval(model), ActivationRecorder(layers, grads=False) as rec:
        model(x_single)

    entries: list[tuple[str, nn.Module, tuple[int, ...], bool, tuple[int, ...]]] = []
    parts: list[Tensor] = []  # float32 on the device: [lo, hi, *shown values] per layer
    for name, module in layers.items():
        a = rec.activations.get(name)
        if a is None:
            continue
        a = a[0].float()
        spatial = a.dim() == 3
        if spatial:
            maps = a[:max_channels]
            size = _pooled_size(maps.shape[1], maps.shape[2], max_side)
            if size != tuple(maps.shape[1:]):
                maps = F.adaptive_avg_pool2d(maps.unsqueeze(0), size)[0]
            shown = maps
        else:
            shown = a.reshape(-1)[:MAX_FLAT_VALUES]
        finite = torch.isfinite(shown)
        inf = torch.full((), float("inf"), device=shown.device)
        lo = torch.where(finite, shown, inf).amin() if shown.numel() else inf.new_zeros(())
        hi = torch.where(finite, shown, -inf).amax() if shown.numel() else inf.new_zeros(())
        lo = torch.where(torch.isfinite(lo), lo, 0.0)
        hi = torch.where(torch.isfinite(hi), hi, 0.0)
        if spatial:
            span = hi - lo
            scaled = ((shown - lo) / torch.where(span > 0, span, 1.0) * 255.0).round().clamp(0, 255)
            shown = torch.where(finite, scaled, 0.0)
        parts.append(torch.cat([lo.reshape(1), hi.reshape(1), shown.reshape(-1)]))
        entries.append((name, module, tuple(a.shape), spatial, tuple(shown.shape)))

    if not parts:
        return []
    flat = torch.cat([p.to(parts[0].device) for p in parts]).cpu().numpy()
    out, offset = [], 0
    for name, module, shape, spatial, shown_shape in entries:
        lo, hi = float(flat[offset]), float(flat[offset + 1])
        size = int(np.prod(shown_shape))
        chunk = flat[offset + 2 : offset + 2 + size].reshape(shown_shape)
        offset += 2 + size
        out.append(
            LayerFeatureMaps(
                layer=name,
                kind=layer_kind(module),
                shape=shape,
                images=chunk.astype(np.uint8) if spatial else None,
                values=None if spatial else chunk.astype(np.float32),
                lo=lo,
                hi=hi,
            )
        )
    return out
