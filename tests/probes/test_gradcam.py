"""Grad-CAM against a computation by hand: ReLU(sum_k mean(dS/dA_k) A_k) with torch.autograd.grad."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from server.layers import GlobalAvgPool
from server.probes.gradcam import CAM, BaseCAM, GradCAM, conv_layers, gradcam
from toy_nets import Block, ToyNet, all_hooks, mlp


def pooled_cnn(seed: int = 0) -> ToyNet:
    """conv1 (3x3 same, ReLU) -> max-pool 2 -> conv2 (3x3 same, ReLU) -> global avg pool -> linear 4 classes."""
    torch.manual_seed(seed)
    return ToyNet(
        {
            "conv1": Block("conv2d", nn.Conv2d(2, 5, 3, padding=1), nn.ReLU()),
            "pool": Block("max_pool2d", nn.MaxPool2d(2)),
            "conv2": Block("conv2d", nn.Conv2d(5, 6, 3, padding=1), nn.ReLU()),
            "gap": Block("global_avg_pool", GlobalAvgPool()),
            "out": Block("linear", nn.Linear(6, 4)),
        }
    )


def by_hand(model: ToyNet, x: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(raw (h, w), map (H, W)) for layer conv2, written out without hooks."""
    b = model.blocks
    a = b["conv2"](b["pool"](b["conv1"](x)))             # A: (1, K, h, w)
    score = b["out"](b["gap"](a))[0, target]
    (g,) = torch.autograd.grad(score, a)
    weights = g.mean(dim=(2, 3))[0]                      # (K,)
    raw = torch.relu((weights[:, None, None] * a[0]).sum(0))
    up = F.interpolate(raw[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return raw.detach(), (up / up.max()).detach()


@pytest.mark.parametrize("target", [0, 1, 2, 3])
def test_matches_the_computation_by_hand(target):
    model = pooled_cnn().eval()
    x = torch.randn(1, 2, 12, 12)
    raw, expected = by_hand(model, x, target)

    cam = gradcam(model, x, layer="conv2", target=target)

    assert isinstance(cam, CAM) and cam.layer == "conv2" and cam.target == target
    assert cam.raw.shape == (6, 6) and cam.map.shape == (12, 12) and cam.map.dtype == np.float32
    np.testing.assert_allclose(cam.raw, raw.numpy(), rtol=1e-5, atol=1e-6)
    if raw.max() > 0:
        np.testing.assert_allclose(cam.map, expected.numpy(), rtol=1e-5, atol=1e-6)
        assert cam.map.max() == pytest.approx(1.0) and cam.map.min() >= 0.0
    else:  # no positive evidence for this class anywhere
        assert not cam.map.any()


def test_defaults_to_the_last_conv_layer_and_the_predicted_class():
    model = pooled_cnn().eval()
    x = torch.randn(1, 2, 12, 12)
    predicted = int(model(x).argmax())
    cam = gradcam(model, x)
    assert conv_layers(model) == ["conv1", "conv2"]
    assert cam.layer == "conv2" and cam.target == cam.predicted == predicted
    np.testing.assert_allclose(cam.raw, by_hand(model, x, predicted)[0].numpy(), rtol=1e-5, atol=1e-6)


def test_an_earlier_layer_is_upsampled_to_the_input():
    cam = gradcam(pooled_cnn(), torch.randn(1, 2, 12, 12), layer="conv1")
    assert cam.raw.shape == (12, 12) and cam.map.shape == (12, 12)


def test_unknown_layer_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown layer 'conv9'.*conv1, conv2"):
        gradcam(pooled_cnn(), torch.randn(1, 2, 12, 12), layer="conv9")


@pytest.mark.parametrize("layer", ["gap", "out"])
def test_a_layer_after_global_pooling_is_refused(layer):
    model = pooled_cnn()
    with pytest.raises(ValueError, match=rf"layer '{layer}' outputs \(1, \d+\).*conv1, conv2"):
        gradcam(model, torch.randn(1, 2, 12, 12), layer=layer)
    assert all_hooks(model) == 0  # released on the error path too


def test_a_network_without_conv_layers_is_refused():
    with pytest.raises(ValueError, match="no conv2d layer"):
        gradcam(mlp([4, 3, 2]), torch.randn(1, 4))


def test_binary_network_and_target_range():
    torch.manual_seed(1)
    model = ToyNet(
        {
            "conv": Block("conv2d", nn.Conv2d(1, 3, 3, padding=1), nn.Tanh()),
            "gap": Block("global_avg_pool", GlobalAvgPool()),
            "out": Block("linear", nn.Linear(3, 1)),
        }
    ).eval()
    x = torch.randn(1, 1, 6, 6)
    acts = model.blocks["conv"](x)
    one, zero = gradcam(model, x, target=1), gradcam(model, x, target=0)
    # d(-s)/dA = -dS/dA, so the two classes' weights are opposite: ReLU keeps complementary parts.
    w = model.blocks["out"].core.weight[0] / 36
    expected_one = torch.relu((w[:, None, None] * acts[0]).sum(0)).detach().numpy()
    np.testing.assert_allclose(one.raw, expected_one, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(zero.raw, np.maximum(-(w[:, None, None] * acts[0]).sum(0).detach().numpy(), 0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        gradcam(model, x, target=2)


def test_leaves_the_model_as_it_was():
    model = pooled_cnn()
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    x = torch.randn(1, 2, 12, 12)
    gradcam(model, x)
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all_hooks(model) == 0 and not x.requires_grad


def test_a_variant_overrides_only_the_channel_weights():
    class UniformCAM(BaseCAM):
        """Every channel weighs 1: the plain sum of the feature maps."""

        def channel_weights(self, activations, gradients):
            return torch.ones(activations.shape[1])

    model = pooled_cnn().eval()
    x = torch.randn(1, 2, 12, 12)
    b = model.blocks
    a = b["conv2"](b["pool"](b["conv1"](x)))
    cam = UniformCAM(model, "conv2")(x, 0)
    np.testing.assert_allclose(cam.raw, a[0].sum(0).detach().numpy(), rtol=1e-5)
    assert isinstance(GradCAM(model), BaseCAM) and GradCAM(model).layer == "conv2"


def test_on_a_built_network():
    from server.builder import build_model

    spec = {"layers": [
        {"kind": "conv2d", "name": "c1", "out_channels": 4, "padding": 1, "activation": "relu"},
        {"kind": "max_pool2d", "name": "p1"},
        {"kind": "conv2d", "name": "block.c2", "out_channels": 6, "padding": 1, "activation": "relu"},
        {"kind": "global_avg_pool", "name": "gap"},
        {"kind": "linear", "name": "out", "out_features": 3},
    ]}
    model, _ = build_model(spec, (1, 8, 8), 3, seed=0)
    model.eval()
    x = torch.rand(1, 1, 8, 8)
    assert conv_layers(model) == ["c1", "block.c2"]
    cam = gradcam(model, x)
    assert cam.layer == "block.c2" and cam.raw.shape == (4, 4) and cam.map.shape == (8, 8)
    # the same numbers as the hand computation on the built blocks
    b = model.blocks
    a = b["block.c2"](b["p1"](b["c1"](x)))
    (g,) = torch.autograd.grad(b["out"](b["gap"](a))[0, cam.target], a)
    raw = torch.relu((g.mean(dim=(2, 3))[0][:, None, None] * a[0]).sum(0))
    np.testing.assert_allclose(cam.raw, raw.detach().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="c1, block.c2"):
        gradcam(model, x, layer="gap")
