"""Gradient checking: compare backprop's gradients with finite differences.

For a sample of scalar parameters theta_i, the numeric derivative is the
central difference (f(theta + h e_i) - f(theta - h e_i)) / 2h, whose error is
O(h^2) (the one-sided difference is only O(h)). It runs on a float64 copy of
the model in eval mode: in float32 the rounding error of f, about 1e-7 |f|,
divided by 2h swamps the comparison, and dropout would make f random.

The comparison uses the relative error |a - n| / max(|a|, |n|, floor), which
is scale free: an absolute difference of 1e-4 is tiny for a gradient of 10
and huge for a gradient of 1e-4.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Literal, Mapping

import numpy as np
import torch
from torch import Tensor, nn

# Thresholds on the relative error, after CS231n's gradient-check notes (> 1e-2 wrong,
# < 1e-7 happy), tightened in the middle because this check runs in float64 with
# a central difference and h = 1e-5, where a correct gradient of a smooth network
# lands near 1e-8 (measured: tanh MLP 2e-8, ReLU/max-pool CNN 2e-7). The "1e-4 is ok
# with kinks" band of float32 practice is not needed: kinks are detected (see KINK_MATCH).
REL_ERROR_GREAT = 1e-7   # below: the gradient is right
REL_ERROR_OK = 1e-5      # below: right within float64 finite-difference noise; the check passes
REL_ERROR_WRONG = 1e-2   # at or above: almost certainly a bug in the backward pass; between OK and WRONG: suspicious
DENOMINATOR_FLOOR = 1e-8  # |gradients| below this count as zero: float64 rounding in f (~1e-16 |f|) / 2h makes
                          # numeric "zeros" of ~1e-11, which must not score a 100% error against an exact 0
KINK_MATCH = 0.05  # a kink (ReLU at 0, max-pool switch) within h of theta makes the central difference wrong by exactly
                   # |f(+h) - 2f(0) + f(-h)| / 2h while a one-sided (autograd) slope is right; when the discrepancy
                   # matches that to 5% the entry is a "kink", not a bug (a smooth f gives a second difference of
                   # only f''h^2, far below a real bug's discrepancy)

Verdict = Literal["great", "ok", "kink", "suspicious", "wrong"]


@dataclass
class GradCheckEntry:
    """One checked scalar parameter.

    param: the parameter's name (``model.named_parameters()``). index: its position in the tensor.
    analytic: backprop's dL/dtheta. numeric: the central difference.
    rel_error: |analytic - numeric| / max(|analytic|, |numeric|, DENOMINATOR_FLOOR).
    verdict: "great" / "ok" / "suspicious" / "wrong" by the REL_ERROR_* thresholds, or
        "kink" when the mismatch is exactly what a non-differentiable point within h causes.
    """

    param: str
    index: tuple[int, ...]
    analytic: float
    numeric: float
    rel_error: float
    verdict: Verdict


@dataclass
class GradCheckReport:
    """All entries plus the summary: the worst entry that is not a kink decides."""

    entries: list[GradCheckEntry]
    max_rel_error: float  # over the entries that are not kinks
    passed: bool          # max_rel_error < REL_ERROR_OK
    verdict: Verdict      # verdict(max_rel_error)
    kinks: int            # entries excused as kinks
    eps: float


def relative_error(analytic: float, numeric: float) -> float:
    """|a - n| / max(|a|, |n|, DENOMINATOR_FLOOR); inf when either is not finite."""
    if not (math.isfinite(analytic) and math.isfinite(numeric)):
        return math.inf
    return abs(analytic - numeric) / max(abs(analytic), abs(numeric), DENOMINATOR_FLOOR)


def verdict(rel_error: float) -> Verdict:
    """Classify a relative error with the REL_ERROR_* thresholds."""
    if rel_error < REL_ERROR_GREAT:
        return "great"
    if rel_error < REL_ERROR_OK:
        return "ok"
    if rel_error < REL_ERROR_WRONG:
        return "suspicious"
    return "wrong"


def gradient_check(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    *,
    eps: float = 1e-5,
    max_params_per_tensor: int = 20,
    seed: int = 0,
    analytic_override: Mapping[str, Tensor | np.ndarray] | None = None,
) -> GradCheckReport:
    """Check backprop against central differences on a sample of each parameter tensor.

    Args:
        model: any module; it is deep-copied to float64 (hooks dropped) and put
            in eval mode, so the caller's model is untouched.
        x: a batch (N, ...); y: its targets (floating targets become float64).
        loss_fn: (output, y) -> scalar loss, e.g. ``nn.functional.cross_entropy``.
        eps: the step h. In float64, 1e-5 balances the O(h^2) truncation error
            (~1e-10) against rounding (~1e-16 |f| / h ~ 1e-11) and rarely
            straddles a ReLU kink; 1e-3 already gives 1e-5 relative errors on a
            correct tanh network.
        max_params_per_tensor: checked entries per parameter tensor, sampled
            without replacement (all of them when the tensor is smaller).
        seed: seed of that sample.
        analytic_override: parameter name -> gradient tensor to check instead of
            autograd's (a hand-written backward, or a deliberately wrong one).

    Returns:
        GradCheckReport with one entry per sampled scalar of each trainable parameter.
    """
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if max_params_per_tensor < 1:
        raise ValueError(f"max_params_per_tensor must be >= 1, got {max_params_per_tensor}")
    net = _float64_copy(model)
    x = x.detach().to(dtype=torch.float64) if x.is_floating_point() else x.detach()
    y = y.detach().to(dtype=torch.float64) if y.is_floating_point() else y.detach()
    device = next(net.parameters(), x).device
    x, y = x.to(device), y.to(device)
    params = [(name, p) for name, p in net.named_parameters() if p.requires_grad]
    overrides = dict(analytic_override or {})
    unknown = set(overrides) - {name for name, _ in params}
    if unknown:
        raise ValueError(f"analytic_override names unknown parameters: {sorted(unknown)}; known: {[n for n, _ in params]}")

    def f() -> float:
        return float(loss_fn(net(x), y))

    with torch.no_grad():
        center = f()

    net.zero_grad(set_to_none=True)
    with torch.enable_grad():
        loss = loss_fn(net(x), y)
        grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
    generator = torch.Generator().manual_seed(seed)
    entries = []
    with torch.no_grad():
        for (name, p), grad in zip(params, grads):
            analytic = _analytic(name, p, grad, overrides)
            for flat in _sample(p.numel(), max_params_per_tensor, generator):
                index = tuple(int(i) for i in np.unravel_index(flat, tuple(p.shape)))
                original = p[index].item()
                p[index] = original + eps
                plus = f()
                p[index] = original - eps
                minus = f()
                p[index] = original
                numeric = (plus - minus) / (2 * eps)
                a = float(analytic[index])
                rel = relative_error(a, numeric)
                kind = verdict(rel)
                if kind in ("suspicious", "wrong") and _is_kink(a, numeric, plus, center, minus, eps):
                    kind = "kink"
                entries.append(GradCheckEntry(name, index, a, numeric, rel, kind))
    worst = max((e.rel_error for e in entries if e.verdict != "kink"), default=0.0)
    return GradCheckReport(
        entries=entries,
        max_rel_error=worst,
        passed=worst < REL_ERROR_OK,
        verdict=verdict(worst),
        kinks=sum(e.verdict == "kink" for e in entries),
        eps=eps,
    )


def _is_kink(analytic: float, numeric: float, plus: float, center: float, minus: float, eps: float) -> bool:
    """Whether |analytic - numeric| is what a kink within eps of theta would cause (see KINK_MATCH).

    With slopes s1, s2 either side of a kink at distance d < h, the central
    difference misses the one-sided slope by (s2 - s1)(h - d) / 2h, which is
    exactly the second difference (f(+h) - 2 f(0) + f(-h)) / 2h.
    """
    gap = abs(analytic - numeric)
    curvature = abs(plus - 2.0 * center + minus) / (2.0 * eps)
    rounding = 8.0 * np.finfo(np.float64).eps * max(abs(plus), abs(center), abs(minus)) / eps
    return math.isfinite(gap) and abs(gap - curvature) <= KINK_MATCH * gap + rounding


def _float64_copy(model: nn.Module) -> nn.Module:
    """A float64 deep copy in eval mode with no hooks (a recorder on the original must not see the copy's passes)."""
    net = copy.deepcopy(model).double().eval()
    for m in net.modules():
        for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            if isinstance(getattr(m, hooks, None), dict):
                getattr(m, hooks).clear()
    return net


def _analytic(name: str, p: Tensor, grad: Tensor | None, overrides: dict) -> Tensor:
    """The gradient to check for parameter ``p``: the override if given, else autograd's (zeros when unused)."""
    if name in overrides:
        value = torch.as_tensor(np.asarray(overrides[name]) if not isinstance(overrides[name], Tensor) else overrides[name])
        if tuple(value.shape) != tuple(p.shape):
            raise ValueError(f"analytic_override[{name!r}] has shape {tuple(value.shape)}, the parameter {tuple(p.shape)}")
        return value.detach().double().cpu()
    return torch.zeros_like(p).cpu() if grad is None else grad.detach().cpu()


def _sample(numel: int, k: int, generator: torch.Generator) -> list[int]:
    """Up to k distinct flat indices in [0, numel), sorted."""
    if numel <= k:
        return list(range(numel))
    return sorted(torch.randperm(numel, generator=generator)[:k].tolist())
