"""Backpropagation by hand: every node's value and gradient for one example (the 2D tab's lesson, on demand)."""

from __future__ import annotations

from typing import Any

from server import probes, protocol
from server.live.base import Argument, LiveView


def compute(session: Any, index: int | None = None) -> list[dict[str, Any]]:
    index, x, label = session.example(index)
    loss = "mse" if session.experiment.train.loss == "mse" else "cross_entropy"
    trace = probes.backprop_trace(session.model, x, label, loss=loss, lr=session.trainer.lr)
    return [protocol.backprop_trace_message(trace)]


VIEW = LiveView(
    name="backprop_trace",
    messages=("backprop_trace",),
    description="the forward values and backward gradients of every node for one example",
    compute=compute,
    arguments=(Argument("index", "int", "the validation example (0-based)"),),
)
