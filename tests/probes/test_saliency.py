"""Saliency and SmoothGrad against gradients computed directly with torch.autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from server.probes.saliency import saliency
from toy_nets import Block, ToyNet, all_hooks, mlp, small_cnn


def _grad(model, x, target):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x)[0, target], x)
    return g[0]


def test_map_is_normalized_max_abs_gradient_over_channels():
    model = small_cnn(in_ch=3, side=8).eval()
    x = torch.randn(1, 3, 8, 8)
    target = 2
    g = _grad(model, x, target)
    expected = g.abs().amax(dim=0)
    expected = (expected / expected.max()).numpy()

    result = saliency(model, x, target)

    assert result.map.shape == (8, 8) and result.map.dtype == np.float32
    assert result.map.min() >= 0.0 and result.map.max() == pytest.approx(1.0)
    np.testing.assert_allclose(result.map, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.raw, g.numpy(), rtol=1e-5, atol=1e-7)
    assert result.target == target


def test_target_defaults_to_the_predicted_class():
    model = small_cnn().eval()
    x = torch.randn(1, 1, 8, 8)
    predicted = int(model(x).argmax())
    result = saliency(model, x)
    assert result.target == result.predicted == predicted
    np.testing.assert_allclose(result.raw, _grad(model, x, predicted).numpy(), rtol=1e-5, atol=1e-7)


def test_feature_vector_input_gives_one_value_per_feature():
    model = mlp([5, 8, 3]).eval()
    x = torch.randn(1, 5)
    g = _grad(model, x, 1)
    result = saliency(model, x, 1)
    assert result.map.shape == (5,)
    np.testing.assert_allclose(result.map, (g.abs() / g.abs().max()).numpy(), rtol=1e-5)


def test_binary_network_scores_class_zero_with_the_negated_logit():
    model = mlp([4, 6, 1]).eval()
    x = torch.randn(1, 4)
    one, zero = saliency(model, x, 1), saliency(model, x, 0)
    np.testing.assert_allclose(zero.raw, -one.raw, rtol=1e-6)
    np.testing.assert_allclose(zero.map, one.map)
    assert one.predicted == int(model(x)[0, 0] > 0)
    with pytest.raises(ValueError, match="out of range"):
        saliency(model, x, 2)


def test_smoothgrad_averages_gradients_over_noisy_copies():
    model = small_cnn(in_ch=2, side=6).eval()
    x = torch.rand(1, 2, 6, 6)
    n, level, seed = 8, 0.2, 3
    std = level * float(x.max() - x.min())
    noise = torch.randn((n, 2, 6, 6), generator=torch.Generator().manual_seed(seed))
    expected = torch.stack([_grad(model, x + std * noise[i : i + 1], 0) for i in range(n)]).mean(dim=0)

    result = saliency(model, x, 0, smoothgrad_samples=n, noise_level=level, seed=seed)

    np.testing.assert_allclose(result.raw, expected.numpy(), rtol=1e-4, atol=1e-6)
    heat = expected.abs().amax(dim=0)
    np.testing.assert_allclose(result.map, (heat / heat.max()).numpy(), rtol=1e-4, atol=1e-6)
    assert not np.allclose(result.raw, saliency(model, x, 0).raw)  # the noise does change the picture
    again = saliency(model, x, 0, smoothgrad_samples=n, noise_level=level, seed=seed)
    np.testing.assert_array_equal(again.map, result.map)


def test_smoothgrad_of_a_linear_model_is_the_plain_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x = torch.randn(1, 3, 2, 2)
    np.testing.assert_allclose(
        saliency(model, x, 1, smoothgrad_samples=40).raw, saliency(model, x, 1).raw, rtol=1e-5, atol=1e-7
    )


def test_runs_in_eval_mode_and_restores_the_model():
    torch.manual_seed(0)
    model = ToyNet(
        {
            "conv": Block("conv2d", nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()),
            "bn": Block("batch_norm", nn.BatchNorm2d(4)),
            "drop": Block("dropout", nn.Dropout(0.5)),
            "out": Block("linear", nn.Linear(4 * 16, 3)),
        }
    )
    model.train()
    model.blocks["bn"].eval()  # a deliberately frozen BatchNorm inside a training model
    model.blocks["conv"].core.bias.requires_grad_(False)
    running = model.blocks["bn"].core.running_mean.clone()
    x = torch.randn(1, 1, 4, 4)

    first = saliency(model, x, 0)
    second = saliency(model, x, 0, smoothgrad_samples=4)

    assert model.training and model.blocks["drop"].training and not model.blocks["bn"].training
    assert [p.requires_grad for p in model.parameters()] == [True, False, True, True, True, True]
    assert all(p.grad is None for p in model.parameters())  # the trainer's .grad buffers are untouched
    assert torch.equal(model.blocks["bn"].core.running_mean, running)
    assert not x.requires_grad and all_hooks(model) == 0
    np.testing.assert_array_equal(first.map, saliency(model, x, 0).map)  # no dropout noise: eval mode
    assert second.map.shape == (4, 4)


def test_works_under_no_grad():
    model = mlp([3, 4, 2]).eval()
    x = torch.randn(1, 3)
    with torch.no_grad():
        result = saliency(model, x, 1)
    assert result.map.shape == (3,) and result.map.max() == pytest.approx(1.0)


@pytest.mark.parametrize("shape", [(2, 1, 4, 4), (1, 4, 4), (4,)])
def test_rejects_anything_but_one_example(shape):
    with pytest.raises(ValueError, match="one example"):
        saliency(small_cnn(side=4), torch.randn(shape))


def test_on_a_built_network():
    from server.builder import build_model

    spec = {"layers": [
        {"kind": "conv2d", "name": "c1", "out_channels": 4, "padding": 1, "activation": "relu"},
        {"kind": "max_pool2d", "name": "p1"},
        {"kind": "conv2d", "name": "c2", "out_channels": 6, "padding": 1, "activation": "relu"},
        {"kind": "global_avg_pool", "name": "gap"},
        {"kind": "linear", "name": "out", "out_features": 5},
    ]}
    model, _ = build_model(spec, (3, 10, 10), 5, seed=0)
    x = torch.rand(1, 3, 10, 10)
    result = saliency(model, x, smoothgrad_samples=3)
    assert result.map.shape == (10, 10)
    assert 0.0 <= result.map.min() and result.map.max() == pytest.approx(1.0)
    assert result.predicted == int(model.eval()(x).argmax())
