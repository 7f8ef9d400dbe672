"""Tiny stand-ins for the builder's GraphModel, so probe tests do not depend on the builder.

A ``ToyNet`` is a chain of ``Block``s in ``.blocks`` (an ``nn.ModuleDict``), each
with ``.kind``, ``.core`` and ``.act`` like a LayerBlock.
"""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, kind: str, core: nn.Module, act: nn.Module | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.core = core
        self.act = act if act is not None else nn.Identity()

    def forward(self, x):
        if self.kind == "linear" and x.dim() > 2:
            x = x.flatten(1)
        return self.act(self.core(x))


class ToyNet(nn.Module):
    def __init__(self, blocks: dict[str, nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict(blocks)

    def forward(self, x):
        for block in self.blocks.values():
            x = block(x)
        return x


def mlp(sizes: list[int], act=nn.Tanh, *, bias: bool = True, seed: int = 0) -> ToyNet:
    """Linear layers ``sizes[0] -> sizes[1] -> ...``; ``act`` after every layer but the last."""
    torch.manual_seed(seed)
    blocks = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        blocks[f"fc{i + 1}" if not last else "out"] = Block(
            "linear", nn.Linear(a, b, bias=bias), None if last else act()
        )
    return ToyNet(blocks)


def small_cnn(in_ch: int = 1, side: int = 8, classes: int = 3, seed: int = 0) -> ToyNet:
    """conv(in->4, 3x3 same) ReLU -> conv(4->6, 3x3 same) Tanh -> linear -> classes."""
    torch.manual_seed(seed)
    return ToyNet(
        {
            "conv1": Block("conv2d", nn.Conv2d(in_ch, 4, 3, padding=1), nn.ReLU()),
            "conv2": Block("conv2d", nn.Conv2d(4, 6, 3, padding=1), nn.Tanh()),
            "out": Block("linear", nn.Linear(6 * side * side, classes)),
        }
    )


def all_hooks(model: nn.Module) -> int:
    """How many module hooks of any sort are registered anywhere in ``model``."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )


# The builder's own networks, for integration tests.
CNN_SPEC = {
    "layers": [
        {"kind": "conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "padding": 1, "activation": "relu"},
        {"kind": "max_pool2d", "name": "pool"},
        {"kind": "conv2d", "name": "block2.conv", "out_channels": 6, "kernel_size": 3, "padding": 1,
         "activation": "tanh"},
        {"kind": "linear", "name": "fc", "out_features": 16, "activation": "sigmoid"},
        {"kind": "dropout", "name": "drop", "p": 0.5},
        {"kind": "linear", "name": "out", "out_features": 10},
    ]
}

MLP2D_SPEC = {
    "layers": [
        {"kind": "linear", "name": "hidden", "out_features": 12, "activation": "tanh"},
        {"kind": "linear", "name": "hidden2", "out_features": 6, "activation": "relu"},
        {"kind": "linear", "name": "out", "out_features": 1},
    ]
}


def built_cnn(seed: int = 0):
    """A GraphModel from ``build_model``: (3, 12, 12) images -> 10 classes; note the dotted layer name."""
    from server.builder import build_model

    model, _ = build_model(CNN_SPEC, (3, 12, 12), 10, seed=seed)
    return model


def built_mlp2d(seed: int = 0):
    """A GraphModel from ``build_model``: 2D points -> one logit (binary)."""
    from server.builder import build_model

    model, _ = build_model(MLP2D_SPEC, (2,), 2, seed=seed)
    return model
