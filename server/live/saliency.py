"""Input-gradient saliency (optionally SmoothGrad) for one validation image (the Attention tab)."""

from __future__ import annotations

from typing import Any

from server import probes, protocol
from server.live.base import Argument, LiveView

SMOOTHGRAD_SAMPLES = 16  # noisy copies averaged by SmoothGrad: enough to smooth, cheap enough for 1 frame/s


def compute(session: Any, index: int | None = None, target: int | None = None, smoothgrad: bool = False) -> list[dict[str, Any]]:
    index, x, _label = session.example(index)
    result = probes.saliency(session.model, x, session.check_class(target),
                             smoothgrad_samples=SMOOTHGRAD_SAMPLES if smoothgrad else 0)
    return [protocol.saliency_message(session.trainer.step_count, index, session.display(x), result, smoothgrad)]


VIEW = LiveView(
    name="saliency",
    messages=("saliency",),
    description="|d score / d pixel| for one validation image: which pixels move the prediction",
    compute=compute,
    default_hz=1.0,
    kinds=("image",),
    arguments=(
        Argument("index", "int", "the validation example (0-based)"),
        Argument("target", "int", "the class whose score is explained (default: the predicted one)"),
        Argument("smoothgrad", "bool", f"average over {SMOOTHGRAD_SAMPLES} noisy copies (SmoothGrad)"),
    ),
)
