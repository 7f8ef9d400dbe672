"""Custom ``nn.Module``s the builder assembles networks from.

Everything here is a plain PyTorch module with no knowledge of the experiment
document beyond what its constructor is given; ``builder.py`` decides which
module a layer spec becomes and checks every shape before anything here is
constructed.

Shapes use ``N`` for the batch axis, ``C`` channels, ``H``/``W`` height and
width, ``F`` features.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Add",
    "BlockDict",
    "Concat",
    "GlobalAvgPool",
    "LayerBlock",
    "Maxout",
    "MaxoutActivation",
    "Sign",
    "SpatialAttention",
    "SqueezeExcite",
]


# ---------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------


class _SignFunction(torch.autograd.Function):
    """sgn with sgn(0) = +1 and a zero gradient that keeps the graph connected."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102 - see Sign
        # x >= 0 (not torch.sign) so a unit exactly on the boundary still votes +1,
        # as the perceptron's two-valued step requires.
        return (x >= 0).to(x.dtype) * 2 - 1

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:  # noqa: D102
        # Zero, like torch.sign's gradient: a loss through a step function cannot
        # be lowered by gradient descent; that is the lecture's point.
        return torch.zeros_like(grad_output)


class Sign(nn.Module):
    """The perceptron's step: +1 where x >= 0, -1 elsewhere (any shape -> same shape).

    The gradient is zero everywhere (the semantics of ``x.sign()``), but the output
    still ``requires_grad`` when the input does, so ``loss.backward()`` runs and
    leaves zero gradients rather than raising. Train sign networks with the
    perceptron rule.
    """

    def forward(self, x: Tensor) -> Tensor:
        return _SignFunction.apply(x)


class MaxoutActivation(nn.Module):
    """Maxout over the channel/feature axis: (N, C*k, ...) -> (N, C, ...).

    Output unit ``c`` is the max of the ``k`` consecutive inputs ``c*k .. c*k+k-1``
    (Goodfellow et al. 2013); it adds no parameters, the layer before it supplies
    the k affine pieces.
    """

    def __init__(self, pieces: int) -> None:
        super().__init__()
        self.pieces = pieces

    def forward(self, x: Tensor) -> Tensor:
        return x.unflatten(1, (x.shape[1] // self.pieces, self.pieces)).amax(dim=2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


# ---------------------------------------------------------------------------
# Layers with weights
# ---------------------------------------------------------------------------


class Maxout(nn.Module):
    """Maxout layer: ``pieces`` affine maps of the input, max over them: (N, F_in) -> (N, F_out).

    ``weight`` is ``(F_out * pieces, F_in)`` and ``bias`` ``(F_out * pieces,)``; row
    ``o * pieces + j`` is piece ``j`` of unit ``o`` (the grouping of
    :class:`MaxoutActivation`), so a maxout layer has ``pieces`` times the
    parameters of a linear layer. The weights live on this module (not on an
    inner ``nn.Linear``) so probes find ``core.weight`` as they do for a linear layer.
    """

    def __init__(self, in_features: int, out_features: int, pieces: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.pieces = pieces
        self.weight = nn.Parameter(torch.empty(out_features * pieces, in_features))
        self.bias = nn.Parameter(torch.empty(out_features * pieces))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's ``nn.Linear`` default, so "default" init means the same for both."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1 / math.sqrt(self.in_features)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """(N, F_in) -> (N, F_out)."""
        return F.linear(x, self.weight, self.bias).unflatten(1, (self.out_features, self.pieces)).amax(dim=2)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, pieces={self.pieces}"


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al. 2018): (N, C, H, W) -> (N, C, H, W).

    s = mean over H, W (N, C) -> ``fc1`` (N, max(1, C // r)) -> ReLU -> ``fc2`` (N, C)
    -> ``gate`` (sigmoid, the mask probes show) -> each channel of x times its s.
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, channels)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        s = self.gate(self.fc2(self.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * s[:, :, None, None]


class SpatialAttention(nn.Module):
    """Spatial attention of CBAM (Woo et al. 2018): (N, C, H, W) -> (N, C, H, W).

    [mean over C, max over C] (N, 2, H, W) -> ``conv`` k x k, padding k // 2 (N, 1, H, W)
    -> ``gate`` (sigmoid, the mask probes show) -> every channel of x times the mask.
    ``kernel_size`` must be odd so the mask has the input's H x W (the builder checks).
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * self.gate(self.conv(pooled))


# ---------------------------------------------------------------------------
# Parameter-free plumbing
# ---------------------------------------------------------------------------


class GlobalAvgPool(nn.Module):
    """(N, C, H, W) -> (N, C): the mean of each channel."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))


class Add(nn.Module):
    """Elementwise sum of two or more tensors of one shape (residual connections)."""

    def forward(self, *xs: Tensor) -> Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Concat(nn.Module):
    """Concatenation on axis 1: (N, C_i, H, W) -> (N, sum C_i, H, W), or (N, F_i) -> (N, sum F_i)."""

    def forward(self, *xs: Tensor) -> Tensor:
        return torch.cat(xs, dim=1)


# ---------------------------------------------------------------------------
# One block per layer of the document
# ---------------------------------------------------------------------------


class LayerBlock(nn.Module):
    """One layer of the document: ``act(core(*inputs))``.

    Attributes:
        spec: the layer's spec (a ``schemas`` layer model).
        kind: ``spec.kind``.
        core: the module holding the layer's weights (``nn.Linear``, ``nn.Conv2d``,
            ``Maxout``, ``SqueezeExcite``, a norm, a pool, ``Add``, ...); for an
            ``activation`` layer it is ``nn.Identity`` and the activation is ``act``.
        act: the layer's activation, ``nn.Identity`` when it has none.
        flatten_input: set for linear and maxout layers fed a (N, C, H, W) input,
            which is flattened to (N, C*H*W) before ``core``.

    Probes hook the block's output (post-activation) and ``core.weight``.
    """

    def __init__(self, spec, core: nn.Module, act: nn.Module, *, flatten_input: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.kind: str = spec.kind
        self.core = core
        self.act = act
        self.flatten_input = flatten_input

    def forward(self, *inputs: Tensor) -> Tensor:
        if self.flatten_input:
            inputs = (inputs[0].flatten(1),)
        return self.act(self.core(*inputs))

    def init_targets(self) -> Iterator[tuple[Tensor, Tensor | None, int]]:
        """Yield ``(weight, bias or None, groups)`` for every weight matrix/kernel in ``core``.

        These are the tensors a layer's ``weight_init``/``bias_init`` apply to: the
        core itself for linear, conv and maxout layers, and the inner FCs/conv of
        squeeze-excite and spatial attention.
        """
        for module in self.core.modules():
            if isinstance(module, nn.Conv2d):
                yield module.weight, module.bias, module.groups
            elif isinstance(module, (nn.Linear, Maxout)):
                yield module.weight, module.bias, 1

    def extra_repr(self) -> str:
        return f"name={self.spec.name!r}, kind={self.kind!r}"


class BlockDict(nn.ModuleDict):
    """An ``nn.ModuleDict`` keyed by layer names, including names PyTorch forbids as child names.

    Layer names may contain ``.`` (``block1.conv``) or equal a ``ModuleDict``
    attribute (``train``, ``keys``, ``forward``); ``nn.Module`` rejects both as
    child names. This dict stores such a name under an escaped key (``.`` becomes
    U+2024 ONE DOT LEADER, which looks alike; an attribute name gets a leading
    U+2024) and translates back in every lookup, so ``blocks["block1.conv"]``,
    ``in``, iteration, ``keys()`` and ``items()`` speak layer names. Only
    ``named_modules()`` and ``state_dict()`` keys show the escaped form; the escape
    is a bijection because layer names never contain U+2024.
    """

    _DOT = "\u2024"
    _RESERVED: frozenset[str] = frozenset()  # every attribute name of an instance; filled below the class

    @classmethod
    def key(cls, name: str) -> str:
        """Layer name -> the child-module key it is stored under."""
        key = name.replace(".", cls._DOT)
        return cls._DOT + key if key in cls._RESERVED else key

    @classmethod
    def name(cls, key: str) -> str:
        """Child-module key -> layer name (the inverse of :meth:`key`)."""
        return key.removeprefix(cls._DOT).replace(cls._DOT, ".")

    def __getitem__(self, name: str) -> nn.Module:
        return self._modules[self.key(name)]

    def __setitem__(self, name: str, module: nn.Module) -> None:
        self.add_module(self.key(name), module)

    def __delitem__(self, name: str) -> None:
        del self._modules[self.key(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.key(name) in self._modules

    def __iter__(self) -> Iterator[str]:
        return (self.name(key) for key in self._modules)

    def keys(self) -> list[str]:  # type: ignore[override]
        return [self.name(key) for key in self._modules]

    def items(self) -> list[tuple[str, nn.Module]]:  # type: ignore[override]
        return [(self.name(key), module) for key, module in self._modules.items()]

    def pop(self, name: str) -> nn.Module:
        return self._modules.pop(self.key(name))


BlockDict._RESERVED = frozenset(dir(BlockDict()))
