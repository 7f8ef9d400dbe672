"""Decision boundary of a 2D classifier, and what each hidden unit computes over the plane."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from .hooks import ActivationRecorder, no_grad_eval

__all__ = ["Boundary2D", "data_extent", "decision_boundary", "grid_points"]

MAX_RESOLUTION = 256  # cells per side: the cost is one forward over resolution**2 points (65,536)
MAX_UNITS = 32  # hidden units pictured per layer

Extent = tuple[float, float, float, float]


@dataclass
class Boundary2D:
    """The model's view of the plane on a ``R x R`` grid, in image orientation.

    Cell ``[r, c]`` is centred at ``(xs[c], ys[r])``; row 0 is the top (``y`` near
    ``ymax``) and column 0 the left (``x`` near ``xmin``), so the arrays can be
    drawn as images over ``extent = (xmin, xmax, ymin, ymax)`` as they are.

    ``probs``: float32 ``(R, R)`` P(class 1) for a single-output (binary) model,
    else ``(R, R, C)`` softmax probabilities. ``predicted``: uint8 ``(R, R)``
    class index (binary: logit > 0). ``neuron_maps``: hidden layer name ->
    float32 ``(units, R, R)`` raw outputs of its first ``MAX_UNITS`` units, for
    layers with flat ``(N, F)`` outputs other than the network's output.
    """

    probs: np.ndarray
    predicted: np.ndarray
    neuron_maps: dict[str, np.ndarray]
    extent: Extent
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)

    @property
    def resolution(self) -> int:
        return int(self.predicted.shape[0])


def data_extent(x: Tensor, margin: float = 0.1) -> Extent:
    """``(xmin, xmax, ymin, ymax)`` of 2D points ``(N, 2)``, widened by ``margin`` of each range."""
    lo = x.detach().amin(dim=0).tolist()
    hi = x.detach().amax(dim=0).tolist()
    out = []
    for a, b in zip(lo, hi):
        pad = (b - a) * margin if b > a else 1.0
        out += [a - pad, b + pad]
    return tuple(out)  # type: ignore[return-value]


def grid_points(extent: Extent, resolution: int, device=None) -> tuple[Tensor, Tensor, Tensor]:
    """Cell centres of the grid: ``(points (R*R, 2), xs (R,), ys (R,))``; point ``r*R + c`` is ``(xs[c], ys[r])``.

    ``ys`` runs from top (``ymax``) to bottom, as image rows do. The same grid is asked for at every
    boundary frame (20 a second), so it is made once per extent, resolution and device; treat it as read-only.
    """
    return _grid_points(tuple(float(v) for v in extent), int(resolution), str(torch.device(device or "cpu")))


@functools.lru_cache(maxsize=16)
def _grid_points(extent: Extent, resolution: int, device: str) -> tuple[Tensor, Tensor, Tensor]:
    xmin, xmax, ymin, ymax = (float(v) for v in extent)
    if not (xmax > xmin and ymax > ymin):
        raise ValueError(f"extent must have xmin < xmax and ymin < ymax, got {extent}")
    steps = (torch.arange(resolution, dtype=torch.float32, device=device) + 0.5) / resolution
    xs = xmin + (xmax - xmin) * steps
    ys = ymax - (ymax - ymin) * steps
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1), xs, ys


def _same_tensor(a: Tensor, b: Tensor) -> bool:
    """Whether ``a`` is (a view of) the storage of ``b``: how the output layer is recognised."""
    return a.data_ptr() == b.data_ptr() and a.numel() == b.numel()


def decision_boundary(
    model: nn.Module,
    layers: Mapping[str, nn.Module] | None = None,
    *,
    extent: Extent,
    resolution: int = 64,
    forward: Callable[[Tensor], tuple[Tensor, Mapping[str, Tensor]]] | None = None,
) -> Boundary2D:
    """Class probabilities over a grid of the plane, from one batched forward (eval mode, no grad).

    Args:
        model: a network on 2D points ``(N, 2) -> (N, C)`` or ``(N, 1)``; its mode is restored.
        layers: name -> module of ``model`` (default ``model.blocks``); their flat hidden
            outputs become ``neuron_maps``. They must be modules of the model that runs
            (e.g. of the EMA copy when evaluating with it), or their hooks never fire.
        extent: ``(xmin, xmax, ymin, ymax)`` of the plane shown (see :func:`data_extent`).
        resolution: cells per side, clamped to ``[2, MAX_RESOLUTION]``.
        forward: optional ``forward(points (P, 2)) -> (outputs (P, C), {layer: output (P, F)})`` that
            computes the same as the model in eval mode without hooks (the trainer's fused MLP path);
            the model is not run then.

    One device-to-host transfer.
    """
    layers = getattr(model, "blocks", {}) if layers is None else layers
    resolution = int(min(max(resolution, 2), MAX_RESOLUTION))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    points, xs, ys = grid_points(extent, resolution, device)
    if forward is not None:
        out, activations = forward(points)
    else:
        with no_grad_eval(model), ActivationRecorder(layers, grads=False) as rec:
            out = model(points)
        activations = rec.activations
    logits = out.float().reshape(out.shape[0], -1)
    if logits.shape[1] == 1:
        probs = torch.sigmoid(logits[:, 0])
        predicted = (logits[:, 0] > 0).float()
    else:
        probs = torch.softmax(logits, dim=1)
        predicted = logits.argmax(dim=1).float()

    names, maps = [], []
    for name in layers:
        a = activations.get(name)
        if a is None or a.dim() != 2 or _same_tensor(a, out):
            continue
        names.append(name)
        maps.append(a[:, :MAX_UNITS].float().T)  # (units, R*R)
    parts = [probs.reshape(-1), predicted, xs, ys, *(m.reshape(-1) for m in maps)]
    flat = torch.cat(parts).cpu().numpy()

    r2 = resolution * resolution
    n_probs = probs.numel()
    cursor = n_probs + r2
    probs_np = flat[:n_probs].reshape((resolution, resolution, *probs.shape[1:]))
    predicted_np = flat[n_probs:cursor].astype(np.uint8).reshape(resolution, resolution)
    xs_list = flat[cursor : cursor + resolution].tolist()
    ys_list = flat[cursor + resolution : cursor + 2 * resolution].tolist()
    cursor += 2 * resolution
    neuron_maps = {}
    for name, m in zip(names, maps):
        units = m.shape[0]
        neuron_maps[name] = flat[cursor : cursor + units * r2].reshape(units, resolution, resolution).copy()
        cursor += units * r2
    return Boundary2D(
        probs=probs_np.astype(np.float32, copy=True),
        predicted=predicted_np,
        neuron_maps=neuron_maps,
        extent=tuple(float(v) for v in extent),  # type: ignore[arg-type]
        xs=xs_list,
        ys=ys_list,
    )
