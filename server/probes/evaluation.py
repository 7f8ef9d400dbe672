"""Heavy probes over the validation set: confusion matrix, confident mistakes, single predictions.

A single-output model is a binary classifier: its logit ``z`` gives
``P(class 1) = sigmoid(z)`` and the prediction ``z > 0`` (class 1), so every
function here works on ``(N, 1)`` outputs as on ``(N, C)`` ones. A model with
a sign output (the perceptron, outputs in {-1, +1}) follows the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .hooks import no_grad_eval

__all__ = [
    "Confusion",
    "Mistake",
    "Prediction",
    "class_probs",
    "confusion",
    "most_confident_mistakes",
    "predict",
    "probs_from_outputs",
]

MAX_CELL_EXAMPLES = 16  # example indices kept per confusion cell: one row of thumbnails


@dataclass
class Confusion:
    """Confusion matrix over a labelled set.

    ``matrix[t, p]``: int64 ``(C, C)`` count of examples of true class ``t`` predicted as ``p``.
    ``per_class_accuracy[t] = matrix[t, t] / matrix[t].sum()``, None for a class with no example.
    ``cell_examples[(t, p)]``: indices (into ``x_val``) of the first examples of each
    non-empty cell, in dataset order, at most ``MAX_CELL_EXAMPLES``.
    """

    matrix: np.ndarray
    per_class_accuracy: list[float | None]
    cell_examples: dict[tuple[int, int], list[int]]
    accuracy: float
    n: int


@dataclass
class Mistake:
    """One misclassified example; ``confidence`` is the probability given to the wrong ``predicted`` class."""

    index: int
    true: int
    predicted: int
    confidence: float


@dataclass
class Prediction:
    """Class probabilities for one input (two of them for a single-output binary model)."""

    probs: list[float]
    predicted: int


def probs_from_outputs(out: Tensor) -> Tensor:
    """Network outputs ``(N, C)`` -> class probabilities ``(N, C)``; ``(N, 1)`` logits -> ``(N, 2)``.

    ``argmax`` of the result is the prediction: for one output that is ``logit > 0``
    (at ``logit == 0`` both probabilities are 0.5 and argmax picks class 0).
    """
    logits = out.float().reshape(out.shape[0], -1)
    if logits.shape[1] == 1:
        p1 = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p1, p1], dim=1)
    return torch.softmax(logits, dim=1)


def class_probs(model: nn.Module, x: Tensor, batch: int = 1024) -> Tensor:
    """Class probabilities ``(N, C)`` (``(N, 2)`` for binary) of ``x`` in batches; eval mode, no grad.

    Stays on the device; pass it as ``probs=`` to :func:`confusion` and
    :func:`most_confident_mistakes` to run the model once for both.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    with no_grad_eval(model):
        chunks = [probs_from_outputs(model(x[i : i + batch])) for i in range(0, x.shape[0], batch)]
    if not chunks:
        raise ValueError("no examples to evaluate")
    return torch.cat(chunks)


def _predictions(probs: Tensor) -> Tensor:
    """Predicted class ``(N,)``; for two binary-model columns this is ``logit > 0`` (argmax breaks ties to 0)."""
    return probs.argmax(dim=1)


def confusion(
    model: nn.Module,
    x_val: Tensor,
    y_val: Tensor,
    num_classes: int,
    batch: int = 1024,
    *,
    probs: Tensor | None = None,
) -> Confusion:
    """Confusion matrix of ``model`` on ``(x_val, y_val)``: rows are true classes, columns predictions.

    Args:
        x_val: inputs ``(N, ...)`` on the model's device.
        y_val: int64 labels ``(N,)``, same device.
        num_classes: C (2 for a single-output binary model).
        batch: examples per forward.
        probs: precomputed :func:`class_probs` of ``x_val`` (then the model is not run).

    One device-to-host transfer (the labels and predictions).
    """
    if probs is None:
        probs = class_probs(model, x_val, batch)
    if probs.shape[1] > num_classes:
        raise ValueError(f"the model has {probs.shape[1]} class outputs but num_classes is {num_classes}")
    y = y_val.reshape(-1).long().to(probs.device)
    pred = _predictions(probs)
    both = torch.stack([y, pred]).cpu().numpy()
    y_np, pred_np = both[0], both[1]
    if y_np.size and (y_np.min() < 0 or y_np.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got range [{y_np.min()}, {y_np.max()}]")
    keys = y_np * num_classes + pred_np
    matrix = np.bincount(keys, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    totals = matrix.sum(axis=1)
    per_class = [float(matrix[t, t] / totals[t]) if totals[t] else None for t in range(num_classes)]

    order = np.argsort(keys, kind="stable")  # dataset order inside each cell
    counts = matrix.reshape(-1)
    starts = np.concatenate([[0], np.cumsum(counts)])
    cell_examples = {}
    for key in np.flatnonzero(counts):
        first = order[starts[key] : starts[key] + min(counts[key], MAX_CELL_EXAMPLES)]
        cell_examples[(int(key // num_classes), int(key % num_classes))] = first.tolist()
    n = int(y_np.size)
    return Confusion(
        matrix=matrix.astype(np.int64),
        per_class_accuracy=per_class,
        cell_examples=cell_examples,
        accuracy=float(np.trace(matrix) / n) if n else 0.0,
        n=n,
    )


def most_confident_mistakes(
    model: nn.Module,
    x_val: Tensor,
    y_val: Tensor,
    k: int = 16,
    batch: int = 1024,
    *,
    probs: Tensor | None = None,
) -> list[Mistake]:
    """The ``k`` misclassified examples the model was surest of, most confident first.

    ``confidence`` is the probability of the predicted (wrong) class. One transfer.
    """
    if probs is None:
        probs = class_probs(model, x_val, batch)
    y = y_val.reshape(-1).long().to(probs.device)
    conf, pred = probs.max(dim=1)
    wrong = pred != y
    # Rank the wrong ones by confidence; right ones sort last with -1.
    score = torch.where(wrong, conf, torch.full_like(conf, -1.0))
    top = torch.topk(score, min(k, score.numel())).indices
    rows = torch.stack([top.double(), y[top].double(), pred[top].double(), score[top].double()], dim=1).tolist()
    return [
        Mistake(index=int(i), true=int(t), predicted=int(p), confidence=float(c))
        for i, t, p, c in rows
        if c >= 0
    ]


def predict(model: nn.Module, x: Tensor) -> Prediction:
    """Class probabilities of one example ``x`` ``(1, ...)``: softmax, or sigmoid two-class for one output."""
    if x.dim() < 1 or x.shape[0] != 1:
        raise ValueError(f"predict takes one example with a batch axis, (1, ...); got shape {tuple(x.shape)}")
    with no_grad_eval(model):
        probs = probs_from_outputs(model(x))[0]
    values = probs.tolist()
    return Prediction(probs=values, predicted=int(np.argmax(values)))
