"""What the attribution probes share: a clean inference state, class scores, map scaling.

Saliency, Grad-CAM and the attention masks all run one example through the
network in evaluation mode and must leave the model exactly as they found it
(training flags and ``requires_grad`` of every parameter), because the trainer
keeps going afterwards.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


@contextmanager
def inference_state(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode with frozen parameters and grad enabled; restore both after.

    Eval mode because dropout noise and batch statistics of a single example
    would make the explanation random or meaningless. Parameters are frozen so
    a probe's backward pass neither builds parameter gradients nor touches the
    trainer's ``.grad`` buffers. Each module's own ``training`` flag is restored
    (not just the top-level one: a frozen BatchNorm may sit in eval inside a
    training model). Grad mode is forced on in case the caller runs under
    ``torch.no_grad()``.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.enable_grad():
            yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


def check_single_example(x: Tensor) -> None:
    """Raise ValueError unless ``x`` is one example with a batch axis: (1, F) or (1, C, H, W)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"expected a tensor input, got {type(x).__name__}")
    if x.dim() not in (2, 4) or x.shape[0] != 1:
        raise ValueError(
            f"expected one example shaped (1, F) or (1, C, H, W), got {tuple(x.shape)}; "
            "add the batch axis with x.unsqueeze(0)"
        )


def resolve_target(logits: Tensor, target: int | None) -> tuple[int, int]:
    """Return ``(target, predicted)`` for logits (1, K), or (1, 1) for a binary network.

    A binary network has one logit s (class 1 when s > 0), so ``target`` must be 0 or 1.
    The default target is the predicted class: "why did the network say this?".
    """
    if logits.dim() != 2 or logits.shape[0] != 1:
        raise ValueError(f"expected logits shaped (1, K), got {tuple(logits.shape)}")
    k = logits.shape[1]
    predicted = int(logits[0, 0] > 0) if k == 1 else int(logits[0].argmax())
    n_classes = 2 if k == 1 else k
    if target is None:
        return predicted, predicted
    if not 0 <= int(target) < n_classes:
        raise ValueError(f"target class {target} is out of range: the network has {n_classes} classes (0..{n_classes - 1})")
    return int(target), predicted


def class_score(logits: Tensor, target: int) -> Tensor:
    """The scalar that is explained: the target's logit, before the softmax.

    ``logits`` is (N, K) or (N, 1); the scores of the N rows are summed, which
    in eval mode (examples independent) gives each row its own gradient.

    Logits, not probabilities, because a probability also rises when the
    *other* classes fall, which mixes evidence for several classes. A binary
    network's single logit s scores class 1; class 0 is scored by -s, so the
    gradient points towards "more of class 0".
    """
    if logits.shape[1] == 1:
        return logits[:, 0].sum() if target == 1 else -logits[:, 0].sum()
    return logits[:, target].sum()


def upsample(m: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinearly resize a (h, w) map to ``size`` = (H, W); returns (H, W)."""
    if tuple(m.shape) == tuple(size):
        return m
    return F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def scale_to_unit(m: Tensor) -> np.ndarray:
    """A non-negative map divided by its maximum, as float32 numpy in [0, 1].

    Divided by the maximum (not min-max stretched) so 0 keeps meaning "no
    evidence"; an all-zero map stays all zero instead of dividing by zero.
    """
    m = m.detach().to(torch.float32).clamp_min(0)
    top = float(m.max()) if m.numel() else 0.0
    if not np.isfinite(top) or top <= 0.0:
        return np.zeros(tuple(m.shape), dtype=np.float32)
    return (m / top).clamp(0.0, 1.0).cpu().numpy().astype(np.float32)


class OutputCapture:
    """Forward hook that keeps a module's latest output; owns its handle.

    Use as a context manager: the hook is removed on exit, also on error, and
    exceptions propagate (never swallowed).
    """

    def __init__(self, module: nn.Module):
        self.output: Tensor | None = None
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        self.output = output

    def release(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> "OutputCapture":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
