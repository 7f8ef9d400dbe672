"""Activation and gradient statistics per layer, read off a real training step (the Inside tab)."""

from __future__ import annotations

from typing import Any, Callable

from server import probes, protocol
from server.live.base import LiveView


def wrap_step(session: Any, step: Callable[[], Any]) -> tuple[Any, list[dict[str, Any]]]:
    """Run one training step under hooks: post-activation outputs and their gradients, and the update ratios.

    The step itself is training, not probing; the returned messages are
    ``activations`` (per layer: mean/std/histogram/dead/saturated) and ``gradients``
    (per parameter norm/std, per layer output gradient, update/weight ratios).
    """
    model = session.model
    before = probes.snapshot_params(model)
    recorder = probes.ActivationRecorder(model.blocks, grads=True, training_only=True)
    with recorder:
        result = step()
        bins = session.probe_config.histogram_bins
        act_stats = probes.activation_stats(recorder.activations, model.blocks, bins)
        grad_stats = probes.gradient_stats(model.named_parameters(), recorder.output_grads)
        ratios = probes.update_ratios(before, model.named_parameters())
    session.remember_layer_stats(act_stats, ratios)
    messages = [
        protocol.activations_message(result.step, act_stats),
        protocol.gradients_message(result.step, grad_stats, ratios, session.param_layer),
    ]
    return result, messages


VIEW = LiveView(
    name="layer_stats",
    messages=("activations", "gradients"),
    description="activation and gradient statistics per layer (histograms, dead/saturated units, update ratios)",
    default_hz=5.0,
    default_on=True,
    wrap_step=wrap_step,
)

