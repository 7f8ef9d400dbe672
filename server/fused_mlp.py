"""A hand-fused NumPy training step for small MLPs on the CPU.

Why: a 2-4-2-1 tanh network on TF Playground's spiral does almost no arithmetic,
so an eager PyTorch step (autograd graph, ~40 dispatched ops, optimizer loop) costs
~600 us of pure overhead on a 2-core laptop: slower than the same net in a
browser. The same step written out as ~50 NumPy calls on the model's own
parameter memory takes ~60-100 us. The torch model stays the single source of
truth: every array here is a view (``Tensor.numpy()`` shares storage) of a
parameter, of its ``.grad``, or of the torch optimizer's own state tensors, so

- probes, the boundary, evaluation and the saved weights read the live weights;
- a step taken by the regular autograd path (the trainer does that whenever
  hooks must see a step, e.g. for activation statistics) continues from exactly
  the same optimizer state, and the two kinds of step interleave freely.

Only what it reproduces exactly is fused (tests compare it with autograd and
``torch.optim`` step by step): a chain of ``linear`` layers with identity, tanh,
sigmoid, ReLU or leaky-ReLU activations; cross-entropy (softmax or binary with
logits) or MSE; SGD, momentum, Nesterov or Adam; l1/l2 penalties and gradient
clipping. Anything else (convolutions, dropout, norms, skips, other optimizers,
augmentation, EMA, frozen layers, CUDA) takes the autograd path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

# Above this many parameters the matrix products dominate and torch's kernels are as good: no gain in fusing.
MAX_FUSED_PARAMS = 200_000  # parameters
FUSED_ACTIVATIONS = ("identity", "tanh", "sigmoid", "relu", "leaky_relu")
FUSED_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
FUSED_LOSSES = ("cross_entropy", "mse")


@dataclass
class _Layer:
    """One linear block: views of its weight (out, in), bias (out,) and their gradients."""

    name: str
    weight: np.ndarray
    bias: np.ndarray | None
    weight_grad: np.ndarray
    bias_grad: np.ndarray | None
    act: str
    slope: float  # leaky ReLU's negative slope


@dataclass
class FusedStep:
    """What one fused step reports: the batch's mean data loss and how many examples it got right."""

    loss: float
    correct: int


def _activation_kind(act: nn.Module) -> tuple[str, float] | None:
    if isinstance(act, nn.Identity):
        return "identity", 0.0
    if isinstance(act, nn.Tanh):
        return "tanh", 0.0
    if isinstance(act, nn.Sigmoid):
        return "sigmoid", 0.0
    if isinstance(act, nn.ReLU):
        return "relu", 0.0
    if isinstance(act, nn.LeakyReLU):
        return "leaky_relu", float(act.negative_slope)
    return None


def why_not_fused(model: Any, experiment: Any, device: torch.device, *, augmenting: bool, ema: bool) -> str | None:
    """None when the fused path applies to this run, else the reason it does not (for logs and tests)."""
    train = experiment.train
    if device.type != "cpu":
        return "the fused path is for the CPU"
    if train.optimizer.kind not in FUSED_OPTIMIZERS:
        return f"optimizer {train.optimizer.kind!r} is not fused"
    if train.loss not in FUSED_LOSSES:
        return f"loss {train.loss!r} is not fused"
    if augmenting or ema or train.freeze:
        return "augmentation, EMA and frozen layers take the autograd path"
    previous = "input"
    for name, block in model.blocks.items():
        if block.kind != "linear" or not isinstance(block.core, nn.Linear):
            return f"layer {name!r} is {block.kind}, not linear"
        if _activation_kind(block.act) is None:
            return f"layer {name!r}: activation {type(block.act).__name__} is not fused"
        if model.inputs[name] != [previous]:
            return f"layer {name!r} is not fed by the previous layer alone (a skip or a branch)"
        previous = name
    if sum(p.numel() for p in model.parameters()) > MAX_FUSED_PARAMS:
        return f"more than {MAX_FUSED_PARAMS:,} parameters: torch's kernels are as fast"
    if any(not p.requires_grad or p.dtype != torch.float32 for p in model.parameters()):
        return "every parameter must be a trainable float32 tensor"
    return None


class FusedMLP:
    """Forward, backward and the optimizer update of a linear chain, in NumPy on shared memory.

    Args:
        model: the GraphModel (every block linear, chained); its parameters get ``.grad`` tensors
            here (allocated once) whose NumPy views receive each step's gradients.
        optimizer: the run's ``torch.optim.SGD`` or ``torch.optim.Adam``; its state tensors are
            created here in torch's own layout when missing, and updated in place.
        objective: the run's ``losses.Objective`` (binary or multi-class, and its threshold).
        l1, l2: the penalty coefficients on weights (not biases), read live from the trainer.
        grad_clip: max global gradient norm, or None.
    """

    def __init__(self, model: Any, optimizer: torch.optim.Optimizer, objective: Any, loss: str) -> None:
        self.optimizer = optimizer
        self.binary = bool(objective.binary)
        self.threshold = float(objective.threshold)
        self.loss = loss
        self.kind = "adam" if isinstance(optimizer, torch.optim.Adam) else "sgd"
        self.layers: list[_Layer] = []
        for name, block in model.blocks.items():
            core, (act, slope) = block.core, _activation_kind(block.act)
            for p in core.parameters():
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            self.layers.append(_Layer(
                name=name,
                weight=core.weight.detach().numpy(),
                bias=None if core.bias is None else core.bias.detach().numpy(),
                weight_grad=core.weight.grad.numpy(),
                bias_grad=None if core.bias is None else core.bias.grad.numpy(),
                act=act, slope=slope,
            ))
        # (param view, grad view, is_weight, torch parameter) in optimizer order.
        self._params: list[tuple[np.ndarray, np.ndarray, bool, torch.Tensor]] = []
        for layer, block in zip(self.layers, model.blocks.values()):
            self._params.append((layer.weight, layer.weight_grad, True, block.core.weight))
            if layer.bias is not None:
                self._params.append((layer.bias, layer.bias_grad, False, block.core.bias))

    # -- inference -------------------------------------------------------------------------------

    def forward_layers(self, x: np.ndarray) -> list[np.ndarray]:
        """Every layer's post-activation output for inputs ``x`` (N, D) float32: ``[(N, F_1), ..., (N, C)]``.

        The same arithmetic as the training forward, without hooks or autograd: the 2D view runs it on a
        64x64 grid 20 times a second (a chain of linear layers has no dropout or batch norm, so train
        and eval mode agree).
        """
        outputs = []
        h = x
        with np.errstate(over="ignore", invalid="ignore"):
            for layer in self.layers:
                z = h @ layer.weight.T
                if layer.bias is not None:
                    z += layer.bias
                h = _activate(z, layer.act, layer.slope)
                outputs.append(h)
        return outputs

    # -- optimizer state, in torch's layout ------------------------------------------------------

    def _state(self, p: torch.Tensor) -> dict[str, Any]:
        state = self.optimizer.state[p]
        if self.kind == "adam":
            if "step" not in state:
                # torch.optim.Adam's own initial state (a float32 step counter on the CPU, zero moments).
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    # -- one step ----------------------------------------------------------------------------

    def step(self, x: np.ndarray, y: np.ndarray, lr: float, l1: float, l2: float, grad_clip: float | None) -> FusedStep:
        """One optimizer step on a batch.

        Args:
            x: (N, D) float32 inputs (already preprocessed, flattened).
            y: (N,) int64 class labels.
            lr: the learning rate of this step.
        Returns:
            the batch's mean data loss (without penalties) and its count of correct predictions,
            both measured before the update (as the autograd path reports them).
        """
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a diverging run is the trainer's to report
            return self._step(x, y, lr, l1, l2, grad_clip)

    def _step(self, x: np.ndarray, y: np.ndarray, lr: float, l1: float, l2: float, grad_clip: float | None) -> FusedStep:
        n = x.shape[0]
        # Forward: keep every layer's input and post-activation output for the backward pass.
        inputs: list[np.ndarray] = []
        h = x
        for layer in self.layers:
            inputs.append(h)
            z = h @ layer.weight.T
            if layer.bias is not None:
                z += layer.bias
            h = _activate(z, layer.act, layer.slope)
        out = h  # (N, C) or (N, 1)

        # Loss and its gradient with respect to the network's output, (N, C).
        if self.binary:
            z = out[:, 0]
            t = y.astype(np.float32)
            if self.loss == "cross_entropy":
                loss = float(np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))))
                g = (_sigmoid(z) - t) / n
            else:
                diff = z - t
                loss = float(0.5 * np.mean(diff * diff))
                g = diff / n
            grad_out = g[:, None].astype(np.float32, copy=False)
            correct = int(np.count_nonzero((z > self.threshold) == (y == 1)))
        else:
            rows = np.arange(n)
            if self.loss == "cross_entropy":
                shifted = out - out.max(axis=1, keepdims=True)
                exp = np.exp(shifted)
                total = exp.sum(axis=1, keepdims=True)
                loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, y]))
                grad_out = exp / total
                grad_out[rows, y] -= 1.0
                grad_out /= n
            else:
                diff = out.copy()
                diff[rows, y] -= 1.0
                loss = float(0.5 * np.sum(diff * diff) / n)
                grad_out = diff / n
            correct = int(np.count_nonzero(out.argmax(axis=1) == y))

        # Backward: grad is dL/d(block output); multiply by the activation's slope to get dL/dz.
        grad = grad_out
        last = len(self.layers) - 1
        for i in range(last, -1, -1):
            layer = self.layers[i]
            dz = _activation_backward(grad, h if i == last else inputs[i + 1], layer.act, layer.slope)
            np.matmul(dz.T, inputs[i], out=layer.weight_grad)
            if layer.bias_grad is not None:
                np.sum(dz, axis=0, out=layer.bias_grad)
            if i > 0:
                grad = dz @ layer.weight
        if l2 or l1:
            for param, pgrad, is_weight, _ in self._params:
                if is_weight:
                    if l2:
                        pgrad += np.float32(l2) * param
                    if l1:
                        pgrad += np.float32(l1) * np.sign(param)
        if grad_clip is not None:
            # torch.nn.utils.clip_grad_norm_: scale by min(1, max_norm / (total_norm + 1e-6)).
            total = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for _, g, _, _ in self._params))
            scale = min(1.0, grad_clip / (total + 1e-6))
            if scale < 1.0:
                for _, pgrad, _, _ in self._params:
                    pgrad *= np.float32(scale)
        self._update(lr)
        return FusedStep(loss, correct)

    def _update(self, lr: float) -> None:
        group = self.optimizer.param_groups[0]
        if self.kind == "sgd":
            momentum, nesterov = group["momentum"], group["nesterov"]
            for param, pgrad, _, tensor in self._params:
                step = pgrad
                if momentum:
                    state = self.optimizer.state[tensor]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        # torch.optim.SGD starts the buffer as a copy of the first gradient.
                        buf = state["momentum_buffer"] = tensor.grad.detach().clone()
                        b = buf.numpy()
                    else:
                        b = buf.numpy()
                        b *= np.float32(momentum)
                        b += pgrad
                    step = pgrad + np.float32(momentum) * b if nesterov else b
                param -= np.float32(lr) * step
            return
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        for param, pgrad, _, tensor in self._params:
            state = self._state(tensor)
            state["step"] += 1
            t = float(state["step"])
            m, v = state["exp_avg"].numpy(), state["exp_avg_sq"].numpy()
            m += np.float32(1 - beta1) * (pgrad - m)  # torch: exp_avg.lerp_(grad, 1 - beta1)
            v *= np.float32(beta2)
            v += np.float32(1 - beta2) * pgrad * pgrad
            step_size = lr / (1 - beta1**t)
            denom = np.sqrt(v) / np.float32(math.sqrt(1 - beta2**t)) + np.float32(eps)
            # torch: param.addcdiv_(exp_avg, denom, value=-step_size), i.e. param + (value * exp_avg) / denom.
            param += (np.float32(-step_size) * m) / denom


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # Split by sign so exp never overflows (float32 exp(89) is inf).
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _activate(z: np.ndarray, act: str, slope: float) -> np.ndarray:
    if act == "identity":
        return z
    if act == "tanh":
        return np.tanh(z, out=z)
    if act == "sigmoid":
        return _sigmoid(z)
    if act == "relu":
        return np.maximum(z, 0, out=z)
    return np.where(z > 0, z, np.float32(slope) * z)  # leaky_relu


def _activation_backward(grad: np.ndarray, a: np.ndarray, act: str, slope: float) -> np.ndarray:
    """dL/dz from dL/da and the activation's output ``a`` (every fused activation's slope is a function of it)."""
    if act == "identity":
        return grad
    if act == "tanh":
        return grad * (1 - a * a)
    if act == "sigmoid":
        return grad * (a * (1 - a))
    if act == "relu":
        return grad * (a > 0)
    return np.where(a > 0, grad, np.float32(slope) * grad)  # leaky_relu: a > 0 exactly where z > 0


__all__ = ["FusedMLP", "FusedStep", "MAX_FUSED_PARAMS", "why_not_fused"]
