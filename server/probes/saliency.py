"""Vanilla gradient saliency (Simonyan et al. 2014) and SmoothGrad (Smilkov et al. 2017).

The saliency of an input pixel is how much the class score moves when that
pixel moves: |d score / d x|. One gradient is noisy (it is a local, linear
view of a very non-linear function); SmoothGrad averages the gradient over
noisy copies of the input, which keeps the structure and washes out the noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from server.probes._attribution import check_single_example, class_score, inference_state, resolve_target, scale_to_unit

_CHUNK = 32  # noisy copies per backward pass: bounds memory on large inputs


@dataclass
class Attribution:
    """A saliency map for one example.

    map: float32 (H, W) in [0, 1] for an image input (max over channels of
        |gradient|, divided by its maximum); (F,) for a feature-vector input.
    raw: float32 gradient of the score with respect to the input, signed and
        unscaled, without the batch axis: (C, H, W) or (F,). With SmoothGrad it
        is the mean gradient over the noisy copies.
    target: the class whose score was differentiated.
    predicted: the class the network predicts for the (clean) input.
    """

    map: np.ndarray
    raw: np.ndarray
    target: int
    predicted: int


def saliency(
    model: nn.Module,
    x: Tensor,
    target: int | None = None,
    *,
    smoothgrad_samples: int = 0,
    noise_level: float = 0.15,
    seed: int = 0,
) -> Attribution:
    """Gradient of a class score with respect to one input.

    Args:
        model: maps (N, *input_shape) to logits (N, K), or (N, 1) for two classes.
        x: one example, (1, C, H, W) or (1, F). Not modified.
        target: class to explain; default the predicted class.
        smoothgrad_samples: 0 for the plain gradient; n > 0 averages the
            gradient over n copies of ``x`` with Gaussian noise added.
        noise_level: SmoothGrad noise std as a share of the input's range,
            std = noise_level * (max(x) - min(x)); 0.1-0.2 is what Smilkov et al.
            found sharpest.
        seed: seed of the SmoothGrad noise, so the same call gives the same map
            (the noise is ``torch.randn((n, *x.shape[1:]))`` from a generator seeded with it).

    Returns:
        Attribution with ``map`` (H, W) or (F,) in [0, 1]. The model's training
        flags and parameters' ``requires_grad`` are restored afterwards.
    """
    check_single_example(x)
    if smoothgrad_samples < 0:
        raise ValueError(f"smoothgrad_samples must be >= 0, got {smoothgrad_samples}")
    if noise_level < 0:
        raise ValueError(f"noise_level must be >= 0, got {noise_level}")
    device = next(model.parameters(), x).device
    x = x.detach().to(device=device, dtype=torch.float32)
    with inference_state(model):
        with torch.no_grad():
            target, predicted = resolve_target(model(x), target)
        if smoothgrad_samples == 0:
            batch = x
        else:
            gen = torch.Generator(device=device).manual_seed(seed)
            std = noise_level * float(x.max() - x.min())
            noise = torch.randn((smoothgrad_samples, *x.shape[1:]), generator=gen, device=device, dtype=x.dtype)
            batch = x + std * noise
        grads = torch.cat([_input_gradient(model, chunk, target) for chunk in batch.split(_CHUNK)])
    raw = grads.mean(dim=0)                       # (C, H, W) or (F,)
    heat = raw.abs().amax(dim=0) if raw.dim() == 3 else raw.abs()
    return Attribution(map=scale_to_unit(heat), raw=raw.cpu().numpy().astype(np.float32), target=target, predicted=predicted)


def _input_gradient(model: nn.Module, x: Tensor, target: int) -> Tensor:
    """d score_target / d x, row by row: (N, ...) -> (N, ...).

    One backward pass for the whole batch of noisy copies: in eval mode the
    rows do not interact, so the gradient of the summed score is each row's own.
    """
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(class_score(model(x), target), x)
    return grad
