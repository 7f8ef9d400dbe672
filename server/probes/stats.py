"""Light probes: statistics of activations, gradients and updates, computed on the device.

Every function here does its arithmetic with torch on the tensors' own device
and moves the results to the host in one transfer per call (a stacked vector
and one ``tolist()``), never one per number: on a GPU each ``.item()`` is a
synchronisation.

Conventions:
- ``std`` is the unbiased sample standard deviation (``torch.std``'s default),
  0 for fewer than two values.
- Histograms are ``torch.histc`` over ``[min, max]`` of the finite values: the
  range follows the data. A constant tensor gets ``[c - 1, c + 1]`` like histc.
  NaN and +-inf are left out of every statistic and counted in ``nonfinite``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "GradStats",
    "LayerActivationStats",
    "TensorStats",
    "UpdateRatio",
    "activation_name",
    "activation_stats",
    "gradient_stats",
    "snapshot_params",
    "stats_many",
    "tensor_stats",
    "update_ratios",
]

# A histogram counts at most this many values of a tensor, evenly strided over it: a LeNet conv layer puts out
# 300,000 values a batch and binning them is half of a probed step's statistics; 16,384 values place each of
# 32 bins within about 1% of its share. Mean, std, min and max always use every value.
MAX_HISTOGRAM_VALUES = 16_384  # values
SATURATION_THRESHOLD = 0.99  # |tanh| above it, or sigmoid within 0.01 of 0 or 1: gradient factor < 0.02

# Activations whose units can "die" (stop responding to every input), and how a
# dead unit looks at the output. ReLU: the output is 0 (<= 0) for every example
# and position, so its gradient is 0 and it never recovers. Leaky ReLU, PReLU,
# ELU, SELU, CELU: the output is < 0 everywhere, i.e. the unit sits in its
# negative (leaky / saturating) region for every input; it still gets a small
# gradient, so "dead" here means "stuck", not "gone for good".
DEAD_AT_OR_BELOW_ZERO = frozenset({"relu", "relu6"})
DEAD_BELOW_ZERO = frozenset({"leaky_relu", "prelu", "elu", "selu", "celu"})
SATURATING = frozenset({"tanh", "sigmoid"})

_ACTIVATION_NAMES: dict[type, str] = {
    nn.Identity: "identity",
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.LeakyReLU: "leaky_relu",
    nn.PReLU: "prelu",
    nn.ELU: "elu",
    nn.SELU: "selu",
    nn.CELU: "celu",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Softplus: "softplus",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.Hardtanh: "hardtanh",
    nn.Mish: "mish",
}


@dataclass
class TensorStats:
    """Summary of one tensor's finite values.

    ``hist[i]`` counts values in ``[edges[i], edges[i+1])`` (the last bin is closed);
    ``len(edges) == len(hist) + 1``. ``n`` counts finite values, ``nonfinite`` NaN/inf.
    With no finite value every statistic is 0 and the histogram is empty of counts.
    """

    mean: float
    std: float
    min: float
    max: float
    hist: list[int]
    edges: list[float]
    n: int
    nonfinite: int = 0


@dataclass
class LayerActivationStats:
    """One layer's output distribution, plus the unit health figure its activation allows.

    ``dead_fraction``: share of units (features of ``(N, F)``, channels of ``(N, C, H, W)``)
    dead over the whole batch, for ReLU-like activations (see ``DEAD_*`` above); else None.
    ``saturated_fraction``: share of output values in the flat tails of tanh/sigmoid; else None.
    """

    layer: str
    kind: str
    act: str
    stats: TensorStats
    dead_fraction: float | None
    saturated_fraction: float | None


@dataclass
class GradStats:
    """Gradient size of one parameter tensor (``source="param"``, name as in ``named_parameters``)
    or of one layer's output (``source="output"``, name = layer name)."""

    name: str
    norm: float  # L2 norm over the whole tensor
    std: float
    mean_abs: float
    source: str = "param"


@dataclass
class UpdateRatio:
    """``ratio = ||w_after - w_before|| / ||w_before||`` for one parameter; ~1e-3 is healthy
    (CS231n), ~1e-1 means the learning rate is too high, ~1e-6 too low. A parameter that was
    all zeros before is measured against ``||w_after||`` (0 if both are zero)."""

    name: str
    ratio: float


def activation_name(module: nn.Module) -> str:
    """The activation of a layer block as a registry name: ``"relu"``, ``"tanh"``, ... .

    Looks at ``module.act`` (a LayerBlock), else at the module itself (a bare
    activation module). Other classes give their snake_case class name without an
    ``_activation`` suffix (``Sign`` -> ``"sign"``, ``MaxoutActivation`` -> ``"maxout"``);
    no activation gives ``"identity"``.
    """
    act = getattr(module, "act", module)
    if not isinstance(act, nn.Module):
        return "identity"
    for cls in type(act).__mro__:
        if cls in _ACTIVATION_NAMES:
            return _ACTIVATION_NAMES[cls]
    if act is module:  # a layer with no `.act`: it has no activation of its own
        return "identity"
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(act).__name__).lower()
    return name.removesuffix("_activation") or name


def layer_kind(module: nn.Module) -> str:
    """A LayerBlock's ``kind`` (``"conv2d"``, ``"linear"``, ...), else the lower-case class name."""
    kind = getattr(module, "kind", None)
    return kind if isinstance(kind, str) else type(module).__name__.lower()


# ---------------------------------------------------------------------------
# Tensor statistics: a packed vector on the device, unpacked on the host
# ---------------------------------------------------------------------------


def _pow2_scale(m: Tensor) -> Tensor:
    """The power of two ``2**e`` with ``m / 2**e`` in ``[0.5, 1)``; 1 for ``m == 0``."""
    exponent = torch.frexp(m).exponent
    return torch.ldexp(torch.ones_like(m), exponent)


def _stats_vector(x: Tensor, bins: int) -> Tensor:
    """Statistics of ``x`` packed as float64 ``[mean, std, min, max, n, nonfinite, hist(bins), edges(bins+1)]``.

    The histogram of a tensor over ``MAX_HISTOGRAM_VALUES`` values counts every k-th value (its bars keep
    their shape; their sum is the sample's size); every other figure is over all values.

    Computed on ``x``'s device without a host synchronisation. The histogram
    reproduces ``torch.histc(x, bins, min, max)``: bin ``floor((v - min) * bins / (max - min))``
    in float32, the maximum going into the last bin.
    """
    flat = x.detach().reshape(-1)
    if not flat.is_floating_point():
        flat = flat.float()
    elif flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    total = flat.numel()
    finite = torch.isfinite(flat)
    n = finite.sum()
    zeros = torch.zeros((), dtype=flat.dtype, device=flat.device)
    inf = torch.full((), math.inf, dtype=flat.dtype, device=flat.device)
    lo = torch.where(finite, flat, inf).amin() if total else inf
    hi = torch.where(finite, flat, -inf).amax() if total else -inf
    has = n > 0
    # Sums run on values divided by a power of two near max|x| (exact), so an
    # exploding network's 1e30 activations give a finite mean and std.
    scale = _pow2_scale(torch.where(has, torch.maximum(lo.abs(), hi.abs()), zeros))
    scaled = torch.where(finite, flat / scale, zeros)
    mean = scaled.sum() / n.clamp(min=1).to(flat.dtype)
    centred = torch.where(finite, scaled - mean, zeros)
    spread = _pow2_scale(centred.abs().amax() if total else zeros)
    var = (centred / spread).square().sum() / (n - 1).clamp(min=1).to(flat.dtype)
    std = torch.where(n > 1, var.sqrt() * spread * scale, zeros)
    mean = mean * scale
    lo = torch.where(has, lo, zeros)
    hi = torch.where(has, hi, zeros)
    mean = torch.where(has, mean, zeros)
    # torch.histc widens a zero-width range to [c - 1, c + 1]; do the same.
    same = lo == hi
    left = torch.where(same, lo - 1, lo)
    right = torch.where(same, hi + 1, hi)
    if total > MAX_HISTOGRAM_VALUES:
        stride = -(-total // MAX_HISTOGRAM_VALUES)
        flat, finite = flat[::stride], finite[::stride]
    index = ((flat - left) * bins / (right - left)).floor()
    index = torch.where(finite, index.clamp(0, bins - 1), torch.full_like(index, bins)).long()
    hist = torch.bincount(index, minlength=bins + 1)[:bins]  # bin `bins` collects the non-finite
    steps = torch.arange(bins + 1, device=flat.device, dtype=torch.float64) / bins
    edges = left.double() + (right.double() - left.double()) * steps
    head = torch.stack([mean, std, lo, hi]).double()
    counts = torch.stack([n, total - n]).double()
    return torch.cat([head, counts, hist.double(), edges])


def _unpack_stats(values: list[float], bins: int) -> TensorStats:
    mean, std, lo, hi, n, nonfinite = values[:6]
    hist = [int(v) for v in values[6 : 6 + bins]]
    edges = [float(v) for v in values[6 + bins : 6 + 2 * bins + 1]]
    return TensorStats(mean=mean, std=std, min=lo, max=hi, hist=hist, edges=edges, n=int(n), nonfinite=int(nonfinite))


def tensor_stats(x: Tensor, bins: int = 32) -> TensorStats:
    """Mean, std, min, max and a ``bins``-bin histogram of the finite values of ``x`` (any shape).

    One device-to-host transfer. See the module docstring for conventions.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    return _unpack_stats(_stats_vector(x, bins).tolist(), bins)


def stats_many(tensors: Iterable[Tensor], bins: int = 32) -> list[TensorStats]:
    """``tensor_stats`` of several tensors with one transfer in all."""
    vectors = [_stats_vector(t, bins) for t in tensors]
    if not vectors:
        return []
    rows = torch.stack([v.to(vectors[0].device) for v in vectors]).tolist()
    return [_unpack_stats(row, bins) for row in rows]


# ---------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------


def _units_first(a: Tensor) -> Tensor:
    """``(N, U, *rest)`` -> ``(U, N * prod(rest))``; an ``(N,)`` output is one unit."""
    if a.dim() <= 1:
        return a.reshape(1, -1)
    return a.movedim(1, 0).reshape(a.shape[1], -1)


def dead_fraction(a: Tensor, act: str) -> Tensor | None:
    """0-d tensor: share of units of ``a`` (``(N, F)`` or ``(N, C, H, W)``) dead on the whole batch.

    ReLU/ReLU6: output <= 0 for every example and position. Leaky ReLU, PReLU,
    ELU, SELU, CELU: output < 0 everywhere (stuck in the negative region).
    None for other activations.
    """
    if act in DEAD_AT_OR_BELOW_ZERO:
        off = _units_first(a) <= 0
    elif act in DEAD_BELOW_ZERO:
        off = _units_first(a) < 0
    else:
        return None
    return off.all(dim=1).float().mean()


def saturated_fraction(a: Tensor, act: str) -> Tensor | None:
    """0-d tensor: share of the values of ``a`` in a flat tail: ``|tanh| > 0.99``,
    sigmoid ``< 0.01`` or ``> 0.99``. None for other activations."""
    if act == "tanh":
        sat = a.abs() > SATURATION_THRESHOLD
    elif act == "sigmoid":
        sat = (a < 1 - SATURATION_THRESHOLD) | (a > SATURATION_THRESHOLD)
    else:
        return None
    return sat.float().mean()


def activation_stats(
    activations: Mapping[str, Tensor], layers: Mapping[str, nn.Module], bins: int = 32
) -> list[LayerActivationStats]:
    """Per-layer statistics of recorded outputs (``ActivationRecorder.activations``).

    Args:
        activations: layer name -> output ``(N, F)`` or ``(N, C, H, W)``.
        layers: layer name -> module, to read ``kind`` and the activation;
            order of the result follows it. Layers without a recording are skipped.
        bins: histogram bins.

    One device-to-host transfer for all layers.
    """
    names, kinds, acts, rows = [], [], [], []
    for name, module in layers.items():
        a = activations.get(name)
        if a is None:
            continue
        act = activation_name(module)
        vec = _stats_vector(a, bins)
        nan = torch.full((1,), math.nan, dtype=torch.float64, device=vec.device)
        dead = dead_fraction(a.detach(), act)
        sat = saturated_fraction(a.detach(), act)
        extra = [nan if v is None else v.reshape(1).double() for v in (dead, sat)]
        rows.append(torch.cat([vec, *extra]))
        names.append(name)
        kinds.append(layer_kind(module))
        acts.append(act)
    if not rows:
        return []
    device = rows[0].device
    values = torch.stack([r.to(device) for r in rows]).tolist()
    out = []
    for name, kind, act, row in zip(names, kinds, acts, values):
        dead, sat = row[-2], row[-1]
        out.append(
            LayerActivationStats(
                layer=name,
                kind=kind,
                act=act,
                stats=_unpack_stats(row[:-2], bins),
                dead_fraction=None if math.isnan(dead) else dead,
                saturated_fraction=None if math.isnan(sat) else sat,
            )
        )
    return out


# ---------------------------------------------------------------------------
# Gradients and updates
# ---------------------------------------------------------------------------


def _grad_row(g: Tensor) -> Tensor:
    """``[norm, std, mean_abs]`` of a gradient tensor, float64, on its device."""
    g = g.detach().float().reshape(-1)
    std = g.std() if g.numel() > 1 else g.new_zeros(())
    mean_abs = g.abs().mean() if g.numel() else g.new_zeros(())
    return torch.stack([torch.linalg.vector_norm(g), std, mean_abs]).double()


def gradient_stats(
    named_params: Iterable[tuple[str, nn.Parameter]], output_grads: Mapping[str, Tensor] | None = None
) -> list[GradStats]:
    """Gradient norm, std and mean |g| per parameter tensor, then per layer output.

    Args:
        named_params: e.g. ``model.named_parameters()``; parameters without a
            ``.grad`` (frozen, unused) are skipped.
        output_grads: layer name -> d loss / d output (``ActivationRecorder.output_grads``).

    Returns: params first (``source="param"``), then outputs (``source="output"``).
    Non-finite gradients give non-finite numbers (they are the symptom to show).
    One device-to-host transfer.
    """
    entries: list[tuple[str, str, Tensor]] = []
    for name, p in named_params:
        if p.grad is not None:
            entries.append((name, "param", _grad_row(p.grad)))
    for name, g in (output_grads or {}).items():
        entries.append((name, "output", _grad_row(g)))
    if not entries:
        return []
    device = entries[0][2].device
    values = torch.stack([row.to(device) for _, _, row in entries]).tolist()
    return [
        GradStats(name=name, norm=v[0], std=v[1], mean_abs=v[2], source=source)
        for (name, source, _), v in zip(entries, values)
    ]


def snapshot_params(model: nn.Module) -> dict[str, Tensor]:
    """name -> a detached clone of every parameter, on its device (for :func:`update_ratios`)."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def update_ratios(
    before: Mapping[str, Tensor], after: Iterable[tuple[str, Tensor]] | Mapping[str, Tensor]
) -> list[UpdateRatio]:
    """``||w_after - w_before|| / ||w_before||`` for each parameter present in both.

    Args:
        before: a :func:`snapshot_params` taken before the optimizer step(s).
        after: ``model.named_parameters()`` (or a second snapshot) after them.

    One device-to-host transfer.
    """
    items = after.items() if isinstance(after, Mapping) else after
    names, rows = [], []
    for name, w in items:
        w0 = before.get(name)
        if w0 is None or w0.shape != w.shape:
            continue
        w1 = w.detach().float()
        w0 = w0.detach().float().to(w1.device)
        delta = torch.linalg.vector_norm(w1 - w0)
        base = torch.linalg.vector_norm(w0)
        base = torch.where(base > 0, base, torch.linalg.vector_norm(w1))
        ratio = torch.where(base > 0, delta / base, torch.zeros_like(base))
        names.append(name)
        rows.append(ratio.double())
    if not rows:
        return []
    device = rows[0].device
    values = torch.stack([r.to(device) for r in rows]).tolist()
    return [UpdateRatio(name=n, ratio=v) for n, v in zip(names, values)]
