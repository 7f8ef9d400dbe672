"""Weights as numbers and as pictures: per-layer histograms and convolution filter tiles.

Filter pictures use a *fixed, symmetric* grey scale: pixel 128 is a zero
weight, 255 is ``+scale`` and 1 is ``-scale``. Keeping ``scale`` fixed over a
run (one :class:`FilterNormalizer` per layer per run remembers it) makes a
filter that grows or fades during training look brighter or fainter, instead
of being re-stretched to full contrast at every frame, which would hide the
change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from .stats import TensorStats, _stats_vector, _unpack_stats, layer_kind

__all__ = [
    "FilterGrid",
    "FilterNormalizer",
    "LayerWeightHistogram",
    "filter_images",
    "layer_weight",
    "pixels_to_weights",
    "tile_grid",
    "weight_histograms",
]

MAX_FILTER_TILES = 64  # tiles per layer: an 8 x 8 grid is what a side panel can show legibly
MAX_INPUT_COLUMNS = 8  # input channels shown per filter when a layer has more tiles than the cap


@dataclass
class LayerWeightHistogram:
    """Distribution of one layer's ``core.weight``."""

    layer: str
    kind: str
    shape: tuple[int, ...]
    stats: TensorStats


@dataclass
class FilterGrid:
    """Filter tiles of one layer as grey (or colour) images on a fixed symmetric scale.

    ``images``: uint8 ``(n_tiles, kh, kw)``, or ``(n_tiles, kh, kw, 3)`` when ``rgb``.
    A pixel ``u`` stands for the weight ``(u - 128) / 127 * scale``; weights beyond
    ``+-scale`` are clipped (``clipped`` is the share of shown weights that were).
    ``tiles[i] = (out_channel, in_channel)`` of tile ``i``; ``in_channel`` is None
    for colour tiles (all three input channels at once). ``cols`` is the natural
    grid width: input channels per filter row (1 row per filter), or 8 for colour.
    ``max_abs`` is the largest |weight| in the whole layer (not just the shown tiles).
    """

    images: np.ndarray
    scale: float
    rgb: bool
    tiles: list[tuple[int, int | None]] = field(default_factory=list)
    cols: int = 8
    max_abs: float = 0.0
    clipped: float = 0.0


def layer_weight(module: nn.Module) -> Tensor | None:
    """The weight tensor of a layer: ``module.core.weight`` (a LayerBlock) or ``module.weight``."""
    core = getattr(module, "core", module)
    w = getattr(core, "weight", None)
    return w if isinstance(w, Tensor) else None


def weight_histograms(layers: Mapping[str, nn.Module], bins: int = 32) -> list[LayerWeightHistogram]:
    """Histogram and moments of each layer's weight; layers without one are skipped.

    One device-to-host transfer for all layers.
    """
    found = [(name, module, layer_weight(module)) for name, module in layers.items()]
    found = [(name, module, w) for name, module, w in found if w is not None]
    if not found:
        return []
    device = found[0][2].device
    rows = torch.stack([_stats_vector(w, bins).to(device) for _, _, w in found]).tolist()
    return [
        LayerWeightHistogram(layer=name, kind=layer_kind(module), shape=tuple(w.shape), stats=_unpack_stats(row, bins))
        for (name, module, w), row in zip(found, rows)
    ]


def _to_uint8(w: np.ndarray, scale: float) -> np.ndarray:
    """Weights -> pixels: ``round(128 + 127 * w / scale)`` clipped to ``[1, 255]`` (0 is never used)."""
    return np.clip(np.rint(128.0 + 127.0 * w / scale), 1, 255).astype(np.uint8)


def pixels_to_weights(images: np.ndarray, scale: float) -> np.ndarray:
    """Inverse of the filter grey scale (exact up to ``scale / 254``, for unclipped weights)."""
    return (images.astype(np.float32) - 128.0) / 127.0 * scale


def _filter_weight(module: nn.Module, input_shape: Sequence[int] | None) -> Tensor:
    """A ``(out, in, kh, kw)`` view of the layer's weight, or a ValueError naming the problem."""
    w = layer_weight(module)
    if w is None:
        raise ValueError(f"{type(module).__name__} has no weight to draw as filters")
    if w.dim() == 4:
        return w
    if w.dim() == 2 and input_shape is not None:
        # A linear layer on images: each output unit's weights form a template the
        # size of the input (the "linear classifier templates" of CS231n).
        shape = tuple(int(s) for s in input_shape)
        if len(shape) == 1:
            shape = (1, 1, shape[0])
        if len(shape) == 2:
            shape = (1, *shape)
        if math.prod(shape) != w.shape[1]:
            raise ValueError(
                f"a linear layer with {w.shape[1]} inputs cannot be drawn as {shape} templates; "
                "pass the input_shape of the data that feeds it"
            )
        return w.reshape(w.shape[0], *shape)
    raise ValueError(
        f"weight of shape {tuple(w.shape)} is not a convolution filter bank; "
        "pass input_shape to draw a linear layer's rows as images"
    )


def filter_images(
    layer_module: nn.Module,
    *,
    scale: float | None = None,
    normalizer: FilterNormalizer | None = None,
    max_tiles: int = MAX_FILTER_TILES,
    input_shape: Sequence[int] | None = None,
) -> FilterGrid:
    """Draw a convolution layer's filters as uint8 tiles on a symmetric grey scale.

    Args:
        layer_module: a LayerBlock (uses ``core.weight``) or a bare Conv2d, weight
            ``(out, in, kh, kw)``. A linear layer is accepted with ``input_shape``
            (e.g. ``(1, 28, 28)``): its rows are drawn as input-sized templates.
        scale: |weight| that maps to full black/white.
        normalizer: this layer's :class:`FilterNormalizer`, which fixes the scale at
            the first drawing and keeps it for the run (use instead of ``scale``).
            With neither, the scale is the layer's max |w| now: full contrast at
            every call, so change over time is rescaled away.
        max_tiles: cap on the number of tiles (default 64).
        input_shape: see ``layer_module``.

    Returns:
        A :class:`FilterGrid`. With 3 input channels (a first layer on colour
        images) each filter is one colour tile ``(kh, kw, 3)``, channels as RGB:
        the first ``max_tiles`` filters. Otherwise one grey tile per
        (filter, input channel) pair, filter-major: all pairs when they fit under
        the cap, else the first ``min(in, cap // min(out, 8))`` input channels of
        the first filters, one row per filter (``cols`` input channels wide).
    """
    if scale is not None and normalizer is not None:
        raise ValueError("pass either scale or normalizer, not both")
    w = _filter_weight(layer_module, input_shape).detach().float().cpu().numpy()
    out_ch, in_ch = w.shape[:2]
    max_abs = float(np.abs(w).max()) if w.size else 0.0
    if normalizer is not None:
        scale = normalizer.scale_for(max_abs)
    if scale is None:
        scale = max_abs if max_abs > 0 else 1.0
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if in_ch == 3:
        n = min(out_ch, max_tiles)
        shown = w[:n].transpose(0, 2, 3, 1)  # (n, kh, kw, 3)
        tiles: list[tuple[int, int | None]] = [(o, None) for o in range(n)]
        cols, rgb = min(n, 8), True
    else:
        if out_ch * in_ch <= max_tiles:
            n_in, n_out = in_ch, out_ch
        else:
            n_in = max(1, min(in_ch, max_tiles // min(out_ch, MAX_INPUT_COLUMNS)))
            n_out = max(1, min(out_ch, max_tiles // n_in))
        shown = w[:n_out, :n_in].reshape(n_out * n_in, *w.shape[2:])
        tiles = [(o, i) for o in range(n_out) for i in range(n_in)]
        cols, rgb = n_in, False
    clipped = float((np.abs(shown) > scale).mean()) if shown.size else 0.0
    return FilterGrid(
        images=_to_uint8(shown, scale), scale=float(scale), rgb=rgb, tiles=tiles, cols=cols,
        max_abs=max_abs, clipped=clipped,
    )


class FilterNormalizer:
    """The grey scale of one layer's filter pictures, fixed for a whole run.

    Keep one per layer per run (e.g. a dict layer name -> normalizer) and pass it
    to :func:`filter_images`. The scale is set at the first drawing to
    ``headroom * max|w|`` (the headroom leaves room for the growth weights usually
    show in training; weights past it are clipped and counted in
    ``FilterGrid.clipped``). A layer whose weights are all zero at its first
    drawing gets its scale when they first are not.
    """

    def __init__(self, headroom: float = 1.5, scale: float | None = None) -> None:
        if not headroom > 0:
            raise ValueError(f"headroom must be positive, got {headroom}")
        if scale is not None and not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.headroom = headroom
        self.scale = scale

    def scale_for(self, max_abs: float) -> float | None:
        """The run's scale, fixing it from this drawing's ``max|w|`` if not yet set (None while all zero)."""
        if self.scale is None and max_abs > 0:
            self.scale = self.headroom * max_abs
        return self.scale

    def reset(self) -> None:
        """Forget the scale (e.g. after re-initialising the network)."""
        self.scale = None


def tile_grid(images: np.ndarray, cols: int = 8, pad: int = 1, fill: int = 0) -> np.ndarray:
    """Lay out tiles ``(n, h, w)`` or ``(n, h, w, 3)`` as one uint8 image, row by row.

    The result is ``(rows*h + (rows-1)*pad, cols*w + (cols-1)*pad)`` (``, 3``),
    with ``rows = ceil(n / cols)``; gaps and empty cells are ``fill``.
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"tiles must be (n, h, w) or (n, h, w, 3), got shape {images.shape}")
    n, h, w = images.shape[:3]
    cols = max(1, min(cols, n)) if n else 1
    rows = max(1, math.ceil(n / cols))
    out_shape = (rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, *images.shape[3:])
    grid = np.full(out_shape, fill, dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        y, x = r * (h + pad), c * (w + pad)
        grid[y : y + h, x : x + w] = images[k]
    return grid
