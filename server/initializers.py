"""Weight and bias initializers: an init spec plus fans -> a tensor filled in place.

Each function here works on one tensor and knows nothing of layers or models;
``builder.py`` finds the tensors (``LayerBlock.init_targets``) and the batch
for the data-dependent LSUV step.

Fans. For a weight of shape ``(out, in / groups, *kernel)``::

    fan_in  = in / groups  * prod(kernel)   # inputs feeding one output unit
    fan_out = out / groups * prod(kernel)   # outputs one input unit feeds

For ``groups == 1`` these are PyTorch's fans. For a grouped (e.g. depthwise)
convolution PyTorch's ``fan_out`` is ``out * prod(kernel)``, which counts
outputs an input is not connected to; we divide by ``groups`` so Xavier and
He fan_out see the real connectivity.

Biases. ``zeros``, ``constant``, ``normal`` and ``uniform`` mean the same for a
bias as for a weight. The fan-based schemes (Xavier, He, LeCun) use the fans of
the bias's *weight*, so a bias is drawn from the same distribution as its
weight's entries. ``orthogonal`` and ``lsuv`` need a matrix and are refused for
biases (the builder reports it before anything is allocated).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from server import schemas

__all__ = ["LSUVResult", "compute_fans", "init_tensor_", "lsuv_rescale_", "needs_matrix"]

# Initializers that only make sense for a matrix (they are defined through its rows).
_MATRIX_ONLY = (schemas.OrthogonalInit, schemas.LSUVInit)


def needs_matrix(spec) -> bool:
    """True when ``spec`` needs a >= 2-D tensor, so it cannot initialize a bias."""
    return isinstance(spec, _MATRIX_ONLY)


def compute_fans(shape: Sequence[int], groups: int = 1) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape`` ``(out, in / groups, *kernel)``; see the module docstring."""
    if len(shape) < 2:
        raise ValueError(f"fans need a weight with at least 2 dimensions, got shape {tuple(shape)}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] // groups * receptive


def _he_gain(spec) -> float:
    # calculate_gain ignores ``param`` except for leaky_relu, where it is the negative slope.
    return nn.init.calculate_gain(spec.nonlinearity, spec.a)


def init_tensor_(tensor: Tensor, spec, *, fan_in: int, fan_out: int) -> Tensor:
    """Fill ``tensor`` in place from an init spec (a ``schemas`` init model); return it.

    Args:
        tensor: a weight ``(out, in / groups, *kernel)`` or a bias ``(out,)``.
        spec: ``schemas.DefaultInit`` leaves the tensor as PyTorch made it.
        fan_in, fan_out: the fans of the weight (for a bias: of its weight).

    The distributions, with ``b`` a uniform bound:

    ========================  =========================================
    zeros / constant(value)   exactly 0 / value
    normal(mean, std)         N(mean, std^2)
    uniform(a)                U(-a, a)
    xavier_normal(gain)       N(0, gain^2 * 2 / (fan_in + fan_out))
    xavier_uniform(gain)      b = gain * sqrt(6 / (fan_in + fan_out))
    he_normal                 N(0, gain^2 / fan), fan = fan_in or fan_out (``mode``),
                              gain = calculate_gain(nonlinearity, a)
    he_uniform                b = gain * sqrt(3 / fan)
    lecun_normal              N(0, 1 / fan_in)
    orthogonal(gain)          rows (or columns) orthonormal, times gain
    lsuv                      orthogonal (gain 1); rescaled later on data
    ========================  =========================================
    """
    with torch.no_grad():
        match spec:
            case schemas.DefaultInit():
                pass
            case schemas.ZerosInit():
                tensor.zero_()
            case schemas.ConstantInit(value=value):
                tensor.fill_(value)
            case schemas.NormalInit(mean=mean, std=std):
                tensor.normal_(mean, std)
            case schemas.UniformInit(a=a):
                tensor.uniform_(-a, a)
            case schemas.XavierNormalInit(gain=gain):
                tensor.normal_(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))
            case schemas.XavierUniformInit(gain=gain):
                bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
                tensor.uniform_(-bound, bound)
            case schemas.HeNormalInit():
                fan = fan_in if spec.mode == "fan_in" else fan_out
                tensor.normal_(0.0, _he_gain(spec) / math.sqrt(fan))
            case schemas.HeUniformInit():
                fan = fan_in if spec.mode == "fan_in" else fan_out
                bound = _he_gain(spec) * math.sqrt(3.0 / fan)
                tensor.uniform_(-bound, bound)
            case schemas.LeCunNormalInit():
                tensor.normal_(0.0, 1.0 / math.sqrt(fan_in))
            case schemas.OrthogonalInit(gain=gain):
                nn.init.orthogonal_(tensor, gain)
            case schemas.LSUVInit():
                # The data-dependent half runs later, on a batch (lsuv_rescale_).
                nn.init.orthogonal_(tensor, 1.0)
            case _:
                raise TypeError(f"unknown init spec {spec!r}")
    return tensor


@dataclass
class LSUVResult:
    """What one LSUV rescale did: the variance it ended at and the rescales it took."""

    variance: float
    iterations: int
    converged: bool


def lsuv_rescale_(
    weights: Sequence[Tensor], measure_variance: Callable[[], float], spec: schemas.LSUVInit
) -> LSUVResult:
    """Scale ``weights`` until ``measure_variance()`` is within ``spec.tolerance`` of ``spec.target_var``.

    LSUV (Mishkin & Matas 2016): measure the variance of the layer's output on a
    batch, multiply the weight by ``sqrt(target / variance)``, repeat at most
    ``spec.max_iters`` times. A layer's output is linear in its weight up to the
    bias, so one step usually lands within tolerance; the loop absorbs the bias.
    A variance that is zero or not finite (a dead or exploded input) cannot be
    rescaled, so the loop stops there and reports ``converged=False``.

    Args:
        weights: the tensors to scale in place (the layer's weight matrices/kernels).
        measure_variance: runs the batch and returns the output's variance.
        spec: target variance, tolerance and iteration cap.
    """
    iterations = 0
    with torch.no_grad():
        variance = measure_variance()
        while abs(variance - spec.target_var) >= spec.tolerance and iterations < spec.max_iters:
            if not math.isfinite(variance) or variance <= 0.0:
                return LSUVResult(variance, iterations, False)
            scale = math.sqrt(spec.target_var / variance)
            for weight in weights:
                weight.mul_(scale)
            iterations += 1
            variance = measure_variance()
    return LSUVResult(variance, iterations, abs(variance - spec.target_var) < spec.tolerance)
