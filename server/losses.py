"""Training losses: a name from ``TrainConfig.loss`` -> a function of (outputs, labels).

A network ends with ``C`` outputs for ``C`` classes, or with a single output when
there are two classes (see ARCHITECTURE.md, "Shapes and conventions"). Each loss
has a multi-class form and a single-output binary form:

==============  =========================================  ===========================================
loss            C outputs, labels in {0..C-1}              1 output, labels in {0, 1}
==============  =========================================  ===========================================
cross_entropy   softmax cross-entropy (``F.cross_entropy``)  BCE with logits (``F.binary_cross_entropy_with_logits``)
mse             1/2 ||out - onehot(y)||^2 per example        1/2 (out - y)^2, target in {0, 1}
hinge           multi-class SVM (``F.multi_margin_loss``)    max(0, 1 - t*out), target t in {-1, +1}
==============  =========================================  ===========================================

Every loss is the mean over the batch, so ``loss * n`` is the sum over ``n`` examples.

The perceptron is not trained on a loss; what it reports is the 0-1 loss (the share
of misclassified examples: the "errors" of the perceptron story), see
:func:`perceptron_objective`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("cross_entropy", "mse", "hinge")


@dataclass(frozen=True)
class Objective:
    """A loss and the matching decision rule for one output layout.

    ``loss(out, y)``: ``out`` (N, C) or (N, 1) float, ``y`` (N,) int64 -> 0-d mean loss.
    ``correct(out, y)``: 0-d int64 count of examples whose prediction equals ``y``;
    stays on the device (no sync), the trainer sums it over a log interval.
    """

    name: str
    binary: bool
    loss: Callable[[Tensor, Tensor], Tensor]
    threshold: float = 0.0  # binary only: predict class 1 when out > threshold

    def predict(self, out: Tensor) -> Tensor:
        """(N, C) or (N, 1) outputs -> (N,) int64 class indices."""
        if self.binary:
            return (out.reshape(-1) > self.threshold).long()
        return out.argmax(1)

    def correct(self, out: Tensor, y: Tensor) -> Tensor:
        """0-d count of correct predictions (int64, on ``out``'s device)."""
        return (self.predict(out) == y).sum()


# --- multi-class -----------------------------------------------------------


def _mse(out: Tensor, y: Tensor) -> Tensor:
    # 1/2 ||out - onehot||^2 summed over outputs, mean over the batch.
    target = F.one_hot(y, out.shape[1]).to(out.dtype)
    return F.mse_loss(out, target, reduction="sum") * (0.5 / out.shape[0])


def _hinge(out: Tensor, y: Tensor) -> Tensor:
    # torch's MultiMarginLoss: sum_{i != y} max(0, 1 - out_y + out_i) / C, mean over the batch.
    return F.multi_margin_loss(out, y)


# --- single output, two classes ------------------------------------------------


def _bce(out: Tensor, y: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(out.reshape(-1), y.to(out.dtype))


def _binary_mse(out: Tensor, y: Tensor) -> Tensor:
    return F.mse_loss(out.reshape(-1), y.to(out.dtype)) * 0.5


def _binary_hinge(out: Tensor, y: Tensor) -> Tensor:
    t = y.to(out.dtype) * 2 - 1  # {0, 1} -> {-1, +1}
    return torch.clamp(1 - t * out.reshape(-1), min=0).mean()


def _zero_one(out: Tensor, y: Tensor) -> Tensor:
    # Sign outputs in {-1, +1}; class 1 is +1.
    return ((out.reshape(-1) > 0).long() != y).to(out.dtype).mean()


def build_objective(name: str, num_outputs: int) -> Objective:
    """The loss ``name`` for a network with ``num_outputs`` outputs.

    Args:
        name: one of :data:`LOSSES`.
        num_outputs: C >= 2 for a C-class network, or 1 for a single-output binary network.

    Raises:
        ValueError: unknown name or a non-positive output count.
    """
    if num_outputs < 1:
        raise ValueError(f"a network needs at least one output, got {num_outputs}")
    binary = num_outputs == 1
    if name == "cross_entropy":
        return Objective(name, binary, _bce if binary else F.cross_entropy)
    if name == "mse":
        # The regression target of class 1 is 1 and of class 0 is 0: the decision is at 1/2.
        return Objective(name, binary, _binary_mse if binary else _mse, threshold=0.5)
    if name == "hinge":
        return Objective(name, binary, _binary_hinge if binary else _hinge)
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")


def perceptron_objective() -> Objective:
    """The 0-1 loss of a sign unit: the share of examples it misclassifies."""
    return Objective("zero_one", True, _zero_one)
