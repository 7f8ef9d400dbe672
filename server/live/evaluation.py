"""The confusion matrix and the most confident mistakes on the validation split (the Evaluation tab)."""

from __future__ import annotations

from typing import Any

import torch

from server import probes, protocol
from server.live.base import LiveView

MISTAKES_SHOWN = 16  # most confident mistakes sent with each frame


def compute(session: Any) -> list[dict[str, Any]]:
    data = session.dataset
    model = session.trainer.eval_model()
    x, y = data.x_val, data.y_val
    if len(y) == 0:
        raise ValueError("this dataset has no validation examples to evaluate; raise data.val_fraction")
    probs = probes.class_probs(model, x)  # one forward over the split serves both
    matrix = probes.confusion(model, x, y, data.num_classes, probs=probs)
    mistakes = probes.most_confident_mistakes(model, x, y, k=MISTAKES_SHOWN, probs=probs)
    images = None
    if data.kind == "image" and mistakes:
        idx = torch.tensor([m.index for m in mistakes], device=x.device)
        images = data.display_images(x[idx])
    step = session.trainer.step_count
    return [
        protocol.confusion_message(step, data.classes, matrix),
        protocol.misclassified_message(step, mistakes, images),
    ]


VIEW = LiveView(
    name="evaluation",
    messages=("confusion", "misclassified"),
    description="confusion matrix and most confident mistakes on the validation split, after each evaluation",
    compute=compute,
    default_hz=2.0,
    default_on=True,
    on_evaluation=True,
)
