"""Weight histograms per layer (the Inside tab)."""

from __future__ import annotations

from typing import Any

from server import probes, protocol
from server.live.base import LiveView


def compute(session: Any) -> list[dict[str, Any]]:
    stats = probes.weight_histograms(session.model.blocks, session.probe_config.histogram_bins)
    return [protocol.weights_message(session.trainer.step_count, stats)]


VIEW = LiveView(
    name="weights",
    messages=("weights",),
    description="histogram of each layer's weights",
    compute=compute,
    default_hz=1.0,
    default_on=True,
)
