"""Fooling the network (lesson 20): FGSM on one validation image, on demand (the Attention tab's "fool it" panel)."""

from __future__ import annotations

from typing import Any

from server import protocol
from server.live.base import Argument, LiveView
from server.probes.adversarial import fgsm

DEFAULT_EPSILON = 0.1  # share of the pixel range: invisible on a digit, enough to fool an undefended LeNet-5


def compute(session: Any, index: int | None = None, target: int | None = None,
            epsilon: float | None = None) -> list[dict[str, Any]]:
    epsilon = DEFAULT_EPSILON if epsilon is None else float(epsilon)
    index, x, label = session.example(index)
    data = session.dataset
    example = fgsm(session.trainer.eval_model(), data.denormalize(x), label, epsilon,
                   target=session.check_class(target), preprocess=data.normalize)
    return [protocol.fgsm_message(session.trainer.step_count, index, example)]


VIEW = LiveView(
    name="fgsm",
    messages=("fgsm",),
    description="fast gradient sign method: a perturbation of at most epsilon per pixel that flips the prediction",
    compute=compute,
    kinds=("image",),
    arguments=(
        Argument("index", "int", "the validation example (0-based)"),
        Argument("target", "int", "push towards this class (a targeted attack); default: away from the true class"),
        Argument("epsilon", "float", f"the most each raw pixel (in [0, 1]) may move; default {DEFAULT_EPSILON}"),
    ),
)
