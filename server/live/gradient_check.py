"""Analytic gradients against finite differences on a few training examples (the Inside tab, on demand)."""

from __future__ import annotations

from typing import Any

from server import probes, protocol
from server.live.base import LiveView

CHECK_EXAMPLES = 8  # training examples the check differentiates over


def compute(session: Any) -> list[dict[str, Any]]:
    data = session.dataset
    n = min(CHECK_EXAMPLES, len(data.y_train))
    report = probes.gradient_check(session.model, data.x_train[:n], data.y_train[:n], session.trainer.loss_fn)
    return [protocol.gradient_check_message(report)]


VIEW = LiveView(
    name="gradient_check",
    messages=("gradient_check",),
    description="backprop's gradients against finite differences (relative error per parameter entry)",
    compute=compute,
)
