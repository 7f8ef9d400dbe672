"""Fooling the network in bulk (lesson 20): validation accuracy under FGSM as epsilon grows, on demand."""

from __future__ import annotations

from typing import Any

import numpy as np

from server import protocol
from server.live.base import Argument, LiveView
from server.probes.adversarial import accuracy_vs_epsilon

DEFAULT_MAX_EPSILON = 0.3  # the sweep's largest epsilon: where an undefended MNIST net is fooled almost always
EPSILON_POINTS = 7  # epsilons from 0 to the largest, evenly spaced: 0, 0.05, ..., 0.3 by default
MAX_EXAMPLES = 1000  # validation examples attacked: enough for a smooth curve, bounded cost on big splits


def compute(session: Any, epsilon: float | None = None) -> list[dict[str, Any]]:
    top = DEFAULT_MAX_EPSILON if epsilon is None else float(epsilon)
    if not 0.0 < top <= 1.0:
        raise ValueError(f"epsilon (the sweep's largest) must be in (0, 1], got {top:g}")
    data = session.dataset
    n = min(MAX_EXAMPLES, len(data.y_val))
    if n == 0:
        raise ValueError("this dataset has no validation examples to attack; raise data.val_fraction")
    epsilons = np.linspace(0.0, top, EPSILON_POINTS).round(6).tolist()
    sweep = accuracy_vs_epsilon(session.trainer.eval_model(), data.denormalize(data.x_val[:n]), data.y_val[:n],
                                epsilons, preprocess=data.normalize)
    return [protocol.fgsm_sweep_message(session.trainer.step_count, sweep)]


VIEW = LiveView(
    name="fgsm_sweep",
    messages=("fgsm_sweep",),
    description=f"validation accuracy under FGSM at {EPSILON_POINTS} epsilons from 0 to the largest",
    compute=compute,
    kinds=("image",),
    arguments=(Argument("epsilon", "float", f"the largest epsilon of the sweep; default {DEFAULT_MAX_EPSILON}"),),
)
