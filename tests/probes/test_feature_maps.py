"""Feature maps equal the intermediate outputs torch computes directly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from server.probes import feature_maps
from toy_nets import Block, ToyNet, all_hooks, built_cnn, mlp, small_cnn


def _decode(fm) -> np.ndarray:
    return fm.lo + fm.images.astype(np.float32) / 255.0 * (fm.hi - fm.lo)


def _assert_pictures(fm, expected: torch.Tensor) -> None:
    """uint8 maps decode to ``expected`` (k, h, w) within half a grey level of the layer's range."""
    exp = expected.detach().numpy()
    assert fm.images.dtype == np.uint8 and fm.images.shape == exp.shape
    assert fm.lo == pytest.approx(exp.min()) and fm.hi == pytest.approx(exp.max())
    np.testing.assert_allclose(_decode(fm), exp, atol=(fm.hi - fm.lo) / 510 + 1e-6, rtol=0)


def test_maps_equal_direct_intermediate_outputs():
    net = small_cnn(side=8)
    x = torch.randn(1, 1, 8, 8)
    result = feature_maps(net, net.blocks, x)
    assert [fm.layer for fm in result] == ["conv1", "conv2", "out"]

    with torch.no_grad():
        h1 = net.blocks["conv1"].act(net.blocks["conv1"].core(x))
        h2 = net.blocks["conv2"].act(net.blocks["conv2"].core(h1))
        out = net.blocks["out"].core(h2.flatten(1))
    conv1, conv2, logits = result
    assert conv1.shape == (4, 8, 8) and conv1.kind == "conv2d" and conv1.values is None
    _assert_pictures(conv1, h1[0])
    _assert_pictures(conv2, h2[0])
    assert logits.images is None and logits.shape == (3,)
    np.testing.assert_allclose(logits.values, out[0].numpy(), rtol=1e-6, atol=1e-6)


def test_large_maps_are_pooled_and_channels_capped():
    torch.manual_seed(0)
    net = ToyNet({"c": Block("conv2d", nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())})
    x = torch.randn(1, 1, 100, 50)
    (fm,) = feature_maps(net, net.blocks, x, max_channels=3, max_side=32)
    with torch.no_grad():
        direct = net(x)[0, :3]
    expected = F.adaptive_avg_pool2d(direct.unsqueeze(0), (32, 16))[0]  # aspect ratio kept
    assert fm.shape == (8, 100, 50)
    _assert_pictures(fm, expected)


def test_flat_model_gives_values():
    net = mlp([5, 7, 2], act=nn.Sigmoid)
    x = torch.randn(1, 5)
    fc1, out = feature_maps(net, net.blocks, x)
    with torch.no_grad():
        h = torch.sigmoid(net.blocks["fc1"].core(x))
    np.testing.assert_allclose(fc1.values, h[0].numpy(), rtol=1e-6)
    assert fc1.lo == pytest.approx(h.min().item()) and fc1.hi == pytest.approx(h.max().item())


def test_eval_mode_no_grad_and_state_restored():
    torch.manual_seed(0)
    net = ToyNet(
        {
            "fc": Block("linear", nn.Linear(4, 16), nn.ReLU()),
            "drop": Block("dropout", nn.Dropout(0.9)),
        }
    )
    net.train()
    x = torch.randn(1, 4)
    a = feature_maps(net, net.blocks, x)[1].values
    b = feature_maps(net, net.blocks, x)[1].values
    np.testing.assert_array_equal(a, b)  # dropout is off
    with torch.no_grad():
        np.testing.assert_allclose(a, net.blocks["fc"](x)[0].numpy(), rtol=1e-6)
    assert net.training and all_hooks(net) == 0


def test_constant_map_is_black():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    net = ToyNet({"c": Block("conv2d", conv)})
    (fm,) = feature_maps(net, net.blocks, torch.randn(1, 1, 5, 5))
    assert (fm.images == 0).all() and fm.lo == fm.hi == 0.0


def test_batch_of_more_than_one_is_rejected():
    net = mlp([2, 2])
    with pytest.raises(ValueError, match=r"\(1, \.\.\.\)"):
        feature_maps(net, net.blocks, torch.randn(3, 2))

# ---------------------------------------------------------------------------
# With the builder's GraphModel
# ---------------------------------------------------------------------------


def test_feature_maps_of_built_graph_model():
    model = built_cnn()
    model.train()
    x = torch.rand(1, 3, 12, 12)
    result = {fm.layer: fm for fm in feature_maps(model, model.blocks, x, max_side=4)}
    assert list(result) == list(model.blocks)
    model.eval()
    with torch.no_grad():
        a1 = model.blocks["conv1"](x)
        p = model.blocks["pool"](a1)
        a2 = model.blocks["block2.conv"](p)
        fc = model.blocks["fc"](a2)
    model.train()
    _assert_pictures(result["conv1"], F.adaptive_avg_pool2d(a1, (4, 4))[0])
    _assert_pictures(result["block2.conv"], F.adaptive_avg_pool2d(a2, (4, 4))[0])
    assert result["pool"].shape == (4, 6, 6)
    np.testing.assert_allclose(result["fc"].values, fc[0].numpy(), rtol=1e-5)
    np.testing.assert_allclose(result["drop"].values, fc[0].numpy(), rtol=1e-5)  # eval: dropout is identity
    assert model.training and all_hooks(model) == 0

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
def test_feature_maps_on_cuda_equal_cpu():
    model = built_cnn()
    x = torch.rand(1, 3, 12, 12)
    cpu = feature_maps(model, None, x)
    gpu = feature_maps(model.cuda(), None, x.cuda())
    for a, b in zip(cpu, gpu):
        assert a.layer == b.layer and a.lo == pytest.approx(b.lo, abs=1e-5)
        if a.images is not None:
            assert np.abs(a.images.astype(int) - b.images.astype(int)).max() <= 1
        else:
            np.testing.assert_allclose(a.values, b.values, atol=1e-5)
