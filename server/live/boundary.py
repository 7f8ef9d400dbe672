"""The 2D decision boundary and what each hidden neuron computes over the input plane (the 2D tab)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from server import probes, protocol
from server.live.base import LiveView

# How many validation examples the 2D view draws as points.
BOUNDARY_POINTS = 400  # points
# Margin around the data on each side, as a share of its range, so points never sit on the plot's edge.
EXTENT_MARGIN = 0.1


def compute(session: Any) -> list[dict[str, Any]]:
    data = session.dataset
    extent = session.cached("boundary_extent", lambda: _extent(data))
    model = session.trainer.eval_model()
    # An EMA copy wraps the network (AveragedModel.module); hook the copy's own blocks.
    blocks = getattr(model, "blocks", None) or getattr(getattr(model, "module", None), "blocks", None)
    fused = session.trainer.fused  # set only for linear chains without EMA: eval model == the trained one
    forward = None if fused is None else lambda points: _fused_forward(fused, list(blocks), points)
    boundary = probes.decision_boundary(model, blocks, extent=extent, resolution=session.probe_config.boundary_resolution,
                                        forward=forward)
    message = protocol.boundary_message(session.trainer.step_count, boundary, _NO_POINTS)
    # The points never change during a run: encode them once, not at 20 frames per second.
    message["points"] = session.cached(
        "boundary_points", lambda: protocol.boundary_message(0, boundary, _points(data))["points"])
    return [message]


_NO_POINTS = np.zeros((0, 3), np.float32)


def _fused_forward(fused: Any, names: list[str], points: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The grid through the fused NumPy forward: (outputs, {layer: output}) as tensors sharing its arrays."""
    outputs = [torch.from_numpy(a) for a in fused.forward_layers(points.numpy())]
    return outputs[-1], dict(zip(names, outputs))


def _extent(data: Any) -> tuple[float, float, float, float]:
    x = torch.cat([data.x_train, data.x_val])
    lo, hi = x.min(0).values.tolist(), x.max(0).values.tolist()
    pad = [(h - l) * EXTENT_MARGIN for l, h in zip(lo, hi)]
    return (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])


def _points(data: Any) -> Any:
    n = min(BOUNDARY_POINTS, len(data.y_val))
    return torch.cat([data.x_val[:n], data.y_val[:n, None].float()], dim=1).cpu().numpy()


VIEW = LiveView(
    name="boundary",
    messages=("boundary",),
    description="class probability over the input plane, each neuron's output as a heat map, and the data",
    compute=compute,
    default_hz=20.0,
    default_on=True,
    kinds=("2d",),
)
