"""Optimizers: an ``OptimizerSpec`` from the document -> a ``torch.optim.Optimizer``.

Each gradient method is a thin factory over ``torch.optim`` (what the lectures call
the method is what torch runs). Weight decay is *not* passed to these optimizers:
the trainer adds ``l2/2 * sum(w^2)`` over weights to the loss, which is what the
lectures write and gives the same update as ``weight_decay=l2`` on SGD. The one
exception is AdamW, whose decoupled decay is its point; it decays weights only
(tensors with 2 or more axes), not biases, norm scales or PReLU slopes.

The perceptron is not a gradient method (its sign unit has zero gradient), so it
has its own update, :class:`PerceptronRule`, for a network that is one linear
unit with a sign activation.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from server.schemas import (
    AdaGradOpt,
    AdamOpt,
    AdamWOpt,
    LBFGSOpt,
    MomentumOpt,
    NesterovOpt,
    NetworkSpec,
    PerceptronOpt,
    RMSPropOpt,
    SGDOpt,
)

# Optimizer kinds whose "momentum" knob exists (beta1 for the Adam family).
MOMENTUM_KINDS = ("sgd", "momentum", "nesterov", "rmsprop")
BETA1_KINDS = ("adam", "adamw")


def is_weight(p: Tensor) -> bool:
    """True for weight matrices and kernels (2+ axes): what l2/l1 and AdamW decay act on."""
    return p.ndim >= 2


def build_optimizer(spec, params_groups: Iterable) -> torch.optim.Optimizer:
    """A torch optimizer for ``spec`` over ``params_groups``.

    Args:
        spec: any ``OptimizerSpec`` but the perceptron.
        params_groups: parameters, or torch-style param-group dicts. For AdamW a
            plain list of parameters is split into a decayed group (weights) and an
            undecayed one (biases, norm parameters) when both are present.

    Raises:
        ValueError: for the perceptron (use :class:`PerceptronRule`) or an unknown kind.
    """
    params = list(params_groups)
    if isinstance(spec, SGDOpt):
        return torch.optim.SGD(params, lr=spec.lr)
    if isinstance(spec, MomentumOpt):
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum)
    if isinstance(spec, NesterovOpt):
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, nesterov=True)
    if isinstance(spec, AdaGradOpt):
        return torch.optim.Adagrad(params, lr=spec.lr, eps=spec.eps)
    if isinstance(spec, RMSPropOpt):
        return torch.optim.RMSprop(params, lr=spec.lr, alpha=spec.alpha, eps=spec.eps, momentum=spec.momentum)
    if isinstance(spec, AdamOpt):
        return torch.optim.Adam(params, lr=spec.lr, betas=(spec.beta1, spec.beta2), eps=spec.eps)
    if isinstance(spec, AdamWOpt):
        if params and all(isinstance(p, Tensor) for p in params):
            decay = [p for p in params if is_weight(p)]
            rest = [p for p in params if not is_weight(p)]
            params = [g for g in ({"params": decay}, {"params": rest, "weight_decay": 0.0}) if g["params"]]
        return torch.optim.AdamW(
            params, lr=spec.lr, betas=(spec.beta1, spec.beta2), eps=spec.eps, weight_decay=spec.weight_decay
        )
    if isinstance(spec, LBFGSOpt):
        # One inner iteration evaluates the closure once; max_eval keeps torch's default (1.25 x max_iter).
        return torch.optim.LBFGS(params, lr=spec.lr, history_size=spec.history_size, max_iter=spec.max_iter)
    if isinstance(spec, PerceptronOpt):
        raise ValueError("the perceptron is not a gradient optimizer: build it with PerceptronRule")
    raise ValueError(f"unknown optimizer {getattr(spec, 'kind', spec)!r}")


# ---------------------------------------------------------------------------
# The perceptron
# ---------------------------------------------------------------------------


def check_perceptron_network(network: NetworkSpec, num_classes: int | None = None) -> str:
    """The name of the perceptron's linear layer; ValueError unless ``network`` is one.

    A perceptron network is exactly one linear layer with 1 output and the ``sign``
    activation (given on the layer, or as a following ``activation`` layer);
    ``flatten`` layers are allowed around it. With ``num_classes`` the data must
    have two classes.
    """
    fix = (
        'Fix: use a single {"kind": "linear", "out_features": 1, "activation": "sign"} layer on '
        "two-class data, or pick a gradient optimizer such as sgd"
    )
    layers = [layer for layer in network.layers if layer.kind != "flatten"]
    linears = [layer for layer in layers if layer.kind == "linear"]
    others = [layer for layer in layers if layer.kind not in ("linear", "activation")]
    if len(linears) != 1 or others:
        culprit = others[0].name if others else (linears[1].name if len(linears) > 1 else None)
        where = f"layer {culprit!r}: " if culprit else ""
        raise ValueError(
            f"{where}the perceptron rule trains a single linear unit with a sign output, "
            f"but this network has {len(linears)} linear layer(s) and {len(others)} other layer(s). {fix}"
        )
    linear = linears[0]
    if linear.out_features != 1:
        raise ValueError(
            f"layer {linear.name!r}: the perceptron has one output unit, this layer has {linear.out_features}. {fix}"
        )
    acts = [linear.activation] if linear.activation is not None else []
    acts += [layer.activation for layer in layers if layer.kind == "activation"]
    acts = [a for a in acts if a.kind != "identity"]
    if [a.kind for a in acts] != ["sign"]:
        got = ", ".join(a.kind for a in acts) or "none"
        raise ValueError(
            f"layer {linear.name!r}: the perceptron's output is sign(w.x + b), but the activation is {got}. {fix}"
        )
    if num_classes is not None and num_classes != 2:
        raise ValueError(
            f"the perceptron separates two classes, the data has {num_classes}. "
            "Fix: pick a two-class data set, or a gradient optimizer with a multi-output network"
        )
    return linear.name


class PerceptronRule(torch.optim.Optimizer):
    """Rosenblatt's rule for one linear unit with a sign output.

    For a batch ``x`` (N, F) with labels ``y`` in {0, 1} mapped to t = 2y - 1 in
    {-1, +1}, and the unit's outputs y' = sign(w.x + b) in {-1, +1}::

        w <- w + a_t * sum_n (t_n - y'_n) x_n
        b <- b + a_t * sum_n (t_n - y'_n)
        a_t = lr * tau / (tau + epoch)       (epoch: completed epochs)

    Batch size 1 is the classic online rule. Only misclassified examples move the
    weights (t - y' is 0 when right, +-2 when wrong). ``lr`` lives in
    ``param_groups[0]["lr"]`` like any torch optimizer, so schedules and live LR
    changes apply to it. Use :meth:`update`, not ``step()``.
    """

    def __init__(self, linear: nn.Linear, *, lr: float = 1.0, tau: float = 1000.0):
        if not isinstance(linear, nn.Linear) or linear.out_features != 1:
            raise ValueError("the perceptron rule needs an nn.Linear with one output")
        if lr <= 0 or tau <= 0:
            raise ValueError(f"the perceptron needs lr > 0 and tau > 0, got lr={lr}, tau={tau}")
        super().__init__(list(linear.parameters()), {"lr": lr, "tau": tau})
        self.linear = linear

    @classmethod
    def from_spec(cls, spec: PerceptronOpt, linear: nn.Linear) -> "PerceptronRule":
        return cls(linear, lr=spec.lr, tau=spec.tau)

    def rate(self, epoch: int) -> float:
        """a_t = lr * tau / (tau + epoch)."""
        group = self.param_groups[0]
        return group["lr"] * group["tau"] / (group["tau"] + epoch)

    @torch.no_grad()
    def update(self, x: Tensor, y: Tensor, out: Tensor, epoch: int) -> None:
        """One update from a batch.

        Args:
            x: (N, ...) inputs; flattened to (N, F) like the linear layer does.
            y: (N,) int64 labels in {0, 1}.
            out: (N, 1) the unit's outputs sign(w.x + b) in {-1, +1}.
            epoch: completed epochs (the rate decays per epoch).
        """
        alpha = self.rate(epoch)
        x = x.reshape(x.shape[0], -1)
        err = (y.to(x.dtype) * 2 - 1) - out.reshape(-1).to(x.dtype)  # (N,): t - y'
        self.linear.weight.add_((err @ x).unsqueeze(0), alpha=alpha)
        if self.linear.bias is not None:
            self.linear.bias.add_(err.sum().reshape(1), alpha=alpha)

    def step(self, closure=None):  # noqa: D102 - the rule needs the batch, see update()
        raise TypeError("PerceptronRule has no gradient step; call update(x, y, out, epoch)")
