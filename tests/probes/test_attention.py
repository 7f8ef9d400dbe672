"""Attention masks read off the gates equal the sigmoids computed directly from the layers' weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from server.layers import GlobalAvgPool, SpatialAttention, SqueezeExcite
from server.probes.attention import AttentionMask, attention_masks
from toy_nets import Block, ToyNet, all_hooks, mlp, small_cnn


def attention_cnn(seed: int = 0) -> ToyNet:
    """conv (3x3 same, ReLU) -> SE -> max-pool 2 -> spatial attention (k=3) -> GAP -> linear."""
    torch.manual_seed(seed)
    return ToyNet(
        {
            "conv": Block("conv2d", nn.Conv2d(2, 6, 3, padding=1), nn.ReLU()),
            "se": Block("squeeze_excite", SqueezeExcite(6, 2)),
            "pool": Block("max_pool2d", nn.MaxPool2d(2)),
            "sa": Block("spatial_attention", SpatialAttention(3)),
            "gap": Block("global_avg_pool", GlobalAvgPool()),
            "out": Block("linear", nn.Linear(6, 3)),
        }
    )


def direct(model: ToyNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(SE weights (C,), spatial mask (h, w)) computed from the layers' weights, no hooks."""
    b = model.blocks
    a = b["conv"](x)
    se = b["se"].core
    s = torch.sigmoid(se.fc2(torch.relu(se.fc1(a.mean(dim=(2, 3))))))[0]
    p = b["pool"](a * s[None, :, None, None])
    sa = b["sa"].core
    mask = torch.sigmoid(sa.conv(torch.cat([p.mean(1, keepdim=True), p.amax(1, keepdim=True)], 1)))[0, 0]
    return s, mask


def test_masks_equal_the_direct_sigmoid_computation():
    model = attention_cnn().eval()
    x = torch.randn(1, 2, 8, 8)
    s, mask = direct(model, x)

    masks = attention_masks(model, x)

    assert [(m.layer, m.kind) for m in masks] == [("se", "channel"), ("sa", "spatial")]
    assert all(isinstance(m, AttentionMask) for m in masks)
    channel, spatial = masks
    assert isinstance(channel.values, list) and len(channel.values) == 6
    np.testing.assert_allclose(channel.values, s.detach().numpy(), rtol=1e-6)
    assert spatial.values.shape == (8, 8) and spatial.values.dtype == np.float32
    up = F.interpolate(mask[None, None], size=(8, 8), mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(spatial.values, up.detach().numpy(), rtol=1e-6, atol=1e-7)
    assert 0.0 <= spatial.values.min() and spatial.values.max() <= 1.0


def test_runs_in_eval_mode_releases_hooks_and_restores_modes():
    model = attention_cnn()
    model.train()
    masks = attention_masks(model, torch.randn(1, 2, 8, 8))
    assert len(masks) == 2
    assert model.training and all(m.training for m in model.modules())
    assert all_hooks(model) == 0


def test_a_network_without_attention_gives_no_masks():
    assert attention_masks(small_cnn(), torch.randn(1, 1, 8, 8)) == []
    assert attention_masks(mlp([3, 2]), torch.randn(1, 3)) == []


def test_rejects_a_batch():
    with pytest.raises(ValueError, match="one example"):
        attention_masks(attention_cnn(), torch.randn(2, 2, 8, 8))


def test_on_a_built_network():
    from server.builder import build_model

    spec = {"layers": [
        {"kind": "conv2d", "name": "c1", "out_channels": 8, "padding": 1, "activation": "relu"},
        {"kind": "squeeze_excite", "name": "se1", "reduction": 4},
        {"kind": "max_pool2d", "name": "p1"},
        {"kind": "spatial_attention", "name": "sa1", "kernel_size": 3},
        {"kind": "global_avg_pool", "name": "gap"},
        {"kind": "linear", "name": "out", "out_features": 3},
    ]}
    model, _ = build_model(spec, (1, 10, 10), 3, seed=0)
    x = torch.rand(1, 1, 10, 10)
    masks = attention_masks(model, x)
    assert [(m.layer, m.kind) for m in masks] == [("se1", "channel"), ("sa1", "spatial")]

    b = model.blocks
    with torch.no_grad():
        a = b["c1"](x)
        se = b["se1"].core
        s = torch.sigmoid(se.fc2(torch.relu(se.fc1(a.mean(dim=(2, 3))))))[0]
        p = b["p1"](a * s[None, :, None, None])
        m = torch.sigmoid(b["sa1"].core.conv(torch.cat([p.mean(1, keepdim=True), p.amax(1, keepdim=True)], 1)))
    np.testing.assert_allclose(masks[0].values, s.numpy(), rtol=1e-6)
    up = F.interpolate(m, size=(10, 10), mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(masks[1].values, up.numpy(), rtol=1e-6, atol=1e-7)
