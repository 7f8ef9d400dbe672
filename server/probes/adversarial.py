"""Fooling a network: adversarial examples by the fast gradient sign method (lesson 20).

FGSM (Goodfellow, Shlens & Szegedy 2015) moves every input pixel by ``epsilon`` in
the direction that raises the loss the most to first order:

    untargeted:  x' = clip(x + eps * sign(grad_x L(f(x), y)))        away from the true class y
    targeted:    x' = clip(x - eps * sign(grad_x L(f(x), t)))        towards a chosen class t

with L the cross-entropy and clip to the valid pixel range [0, 1]. No pixel moves by
more than ``eps`` (an L-infinity ball), so at eps = 0.1 a digit looks unchanged to a
person, yet a network that is nearly linear in its input adds up thousands of tiny
pushes that all point the same way.

Epsilon is measured on *raw* pixels in [0, 1] (what a person sees), not on the
preprocessed input the network takes: pass the dataset's preprocessing as
``preprocess`` and the gradient flows through it. Everything runs in evaluation mode
(dropout off, batch-norm running statistics) and leaves the model as it found it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from server.probes._attribution import inference_state
from server.probes.evaluation import probs_from_outputs

PIXEL_RANGE = (0.0, 1.0)  # raw images lie in [0, 1]; adversarial pixels are clipped back into it
SWEEP_BATCH = 256  # examples per forward/backward pass of a sweep: bounds activation memory, not the result

Preprocess = Callable[[Tensor], Tensor]


def _identity(x: Tensor) -> Tensor:
    return x


@dataclass
class AdversarialExample:
    """One FGSM example. Images are raw float32 ``(C, H, W)`` in [0, 1].

    Attributes:
        original, adversarial: the clean and the attacked image.
        perturbation: ``adversarial - original``, every entry in [-epsilon, epsilon] (smaller where clipped).
        label: the true class; target: the class a targeted attack pushes towards (None: untargeted).
        original_probs, adversarial_probs: class probabilities ``(K,)`` before and after.
        original_predicted, adversarial_predicted: the predicted classes.
    """

    original: Tensor
    adversarial: Tensor
    perturbation: Tensor
    epsilon: float
    label: int
    target: int | None
    original_probs: list[float]
    adversarial_probs: list[float]
    original_predicted: int
    adversarial_predicted: int

    @property
    def fooled(self) -> bool:
        """Untargeted: the prediction left the true class. Targeted: it became the target."""
        if self.target is None:
            return self.adversarial_predicted != self.label
        return self.adversarial_predicted == self.target

    @property
    def original_confidence(self) -> float:
        return self.original_probs[self.original_predicted]

    @property
    def adversarial_confidence(self) -> float:
        return self.adversarial_probs[self.adversarial_predicted]


@dataclass
class EpsilonSweep:
    """Accuracy under untargeted FGSM at each epsilon, over the same ``n`` examples (epsilon 0 = clean)."""

    epsilons: list[float]
    accuracy: list[float]
    n: int


def _log_probs(outputs: Tensor) -> Tensor:
    """Log class probabilities ``(N, K)``: log-softmax, or ``[log(1 - p), log p]`` for a one-logit network."""
    if outputs.shape[1] == 1:
        return torch.cat([F.logsigmoid(-outputs), F.logsigmoid(outputs)], dim=1)
    return F.log_softmax(outputs, dim=1)


def _check(epsilon: float, raw: Tensor) -> None:
    if not (0.0 <= float(epsilon) <= 1.0):
        raise ValueError(f"epsilon must be in [0, 1] (a share of the pixel range), got {epsilon}")
    if raw.dim() != 4:
        raise ValueError(f"FGSM takes images shaped (N, C, H, W) with raw pixels in [0, 1], got {tuple(raw.shape)}")


def fgsm_perturb(model: nn.Module, raw: Tensor, labels: Tensor, epsilon: float, *, targets: Tensor | None = None,
                 preprocess: Preprocess = _identity) -> Tensor:
    """The FGSM images of a batch: ``(N, C, H, W)`` raw in [0, 1] -> the same shape, each pixel moved by ±epsilon.

    Args:
        model: maps ``preprocess(raw)`` to logits ``(N, K)`` (or ``(N, 1)`` for two classes).
        raw: raw images in [0, 1]; not modified.
        labels: int64 ``(N,)`` true classes (the untargeted attack moves away from them).
        epsilon: the L-infinity budget on raw pixels, in [0, 1].
        targets: int64 ``(N,)`` classes to move towards (a targeted attack); None: untargeted.
        preprocess: the dataset's preprocessing, differentiable (``Dataset.normalize``).

    The loss is summed over the batch, so each example's gradient is its own (in eval mode
    examples do not interact) and is not shrunk by 1/N towards float underflow.
    """
    _check(epsilon, raw)
    raw = raw.detach()
    with inference_state(model):
        x = raw.clone().requires_grad_(True)
        classes = labels if targets is None else targets
        loss = F.nll_loss(_log_probs(model(preprocess(x))), classes, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    direction = grad.sign() if targets is None else -grad.sign()
    return (raw + epsilon * direction).clamp(*PIXEL_RANGE)


@torch.no_grad()
def _probs(model: nn.Module, x: Tensor) -> Tensor:
    was_training = model.training
    model.eval()
    try:
        return probs_from_outputs(model(x))
    finally:
        model.train(was_training)


def fgsm(model: nn.Module, raw: Tensor, label: int, epsilon: float, *, target: int | None = None,
         preprocess: Preprocess = _identity) -> AdversarialExample:
    """FGSM on one image ``raw`` ``(1, C, H, W)`` in [0, 1] of true class ``label``; see :func:`fgsm_perturb`."""
    if raw.dim() != 4 or raw.shape[0] != 1:
        raise ValueError(f"fgsm takes one image shaped (1, C, H, W), got {tuple(raw.shape)}")
    labels = torch.tensor([int(label)], device=raw.device)
    targets = None if target is None else torch.tensor([int(target)], device=raw.device)
    adversarial = fgsm_perturb(model, raw, labels, epsilon, targets=targets, preprocess=preprocess)
    probs = _probs(model, preprocess(torch.cat([raw.detach(), adversarial]))).cpu()
    before, after = probs[0].tolist(), probs[1].tolist()
    return AdversarialExample(
        original=raw[0].detach().cpu(), adversarial=adversarial[0].cpu(), perturbation=(adversarial - raw)[0].detach().cpu(),
        epsilon=float(epsilon), label=int(label), target=None if target is None else int(target),
        original_probs=before, adversarial_probs=after,
        original_predicted=int(probs[0].argmax()), adversarial_predicted=int(probs[1].argmax()),
    )


def accuracy_vs_epsilon(model: nn.Module, raw: Tensor, labels: Tensor, epsilons: Sequence[float], *,
                        preprocess: Preprocess = _identity, batch: int = SWEEP_BATCH) -> EpsilonSweep:
    """Accuracy on ``raw`` ``(N, C, H, W)`` under untargeted FGSM at each epsilon (the batch mode).

    The gradient does not depend on epsilon, so it is computed once per batch and every
    epsilon reuses its sign: one backward pass and ``len(epsilons)`` forward passes.
    """
    if raw.shape[0] == 0:
        raise ValueError("no examples to attack: the validation split is empty")
    for epsilon in epsilons:
        _check(epsilon, raw)
    correct = torch.zeros(len(epsilons), dtype=torch.int64)
    for start in range(0, raw.shape[0], batch):
        x, y = raw[start:start + batch].detach(), labels[start:start + batch]
        with inference_state(model):
            probe = x.clone().requires_grad_(True)
            loss = F.nll_loss(_log_probs(model(preprocess(probe))), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, probe)
        sign = grad.sign()
        for i, epsilon in enumerate(epsilons):
            adversarial = (x + float(epsilon) * sign).clamp(*PIXEL_RANGE)
            predicted = _probs(model, preprocess(adversarial)).argmax(dim=1)
            correct[i] += int((predicted == y).sum())
    n = int(raw.shape[0])
    return EpsilonSweep([float(e) for e in epsilons], [int(c) / n for c in correct], n)


__all__ = ["AdversarialExample", "EpsilonSweep", "accuracy_vs_epsilon", "fgsm", "fgsm_perturb"]
