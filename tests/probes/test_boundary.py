"""Decision boundary maps equal a direct forward of the model on the grid points."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from server.probes import data_extent, decision_boundary
from server.probes.boundary import MAX_RESOLUTION
from toy_nets import Block, ToyNet, all_hooks, built_mlp2d, mlp

EXTENT = (-2.0, 3.0, -1.0, 1.5)


def _grid(extent, r):
    """Cell centres, row 0 at the top: an independent construction of the documented grid."""
    xmin, xmax, ymin, ymax = extent
    xs = [xmin + (c + 0.5) * (xmax - xmin) / r for c in range(r)]
    ys = [ymax - (i + 0.5) * (ymax - ymin) / r for i in range(r)]
    pts = torch.tensor([[x, y] for y in ys for x in xs], dtype=torch.float32)
    return pts, xs, ys


def test_multiclass_probs_equal_direct_forward():
    net = mlp([2, 8, 5, 3], act=nn.Tanh)
    b = decision_boundary(net, net.blocks, extent=EXTENT, resolution=20)
    pts, xs, ys = _grid(EXTENT, 20)
    with torch.no_grad():
        logits = net(pts)
    expected = torch.softmax(logits, dim=1).reshape(20, 20, 3).numpy()
    assert b.probs.dtype == np.float32 and b.probs.shape == (20, 20, 3)
    np.testing.assert_allclose(b.probs, expected, atol=1e-5)
    np.testing.assert_array_equal(b.predicted, logits.argmax(1).reshape(20, 20).numpy().astype(np.uint8))
    assert b.predicted.dtype == np.uint8 and b.resolution == 20
    np.testing.assert_allclose(b.xs, xs, atol=1e-5)
    np.testing.assert_allclose(b.ys, ys, atol=1e-5)
    assert b.extent == EXTENT


def test_neuron_maps_are_hidden_outputs_over_the_grid():
    net = mlp([2, 8, 5, 3], act=nn.ReLU)
    b = decision_boundary(net, net.blocks, extent=EXTENT, resolution=16)
    pts, _, _ = _grid(EXTENT, 16)
    with torch.no_grad():
        h1 = net.blocks["fc1"](pts)
        h2 = net.blocks["fc2"](h1)
    assert set(b.neuron_maps) == {"fc1", "fc2"}  # not the output layer
    np.testing.assert_allclose(b.neuron_maps["fc1"], h1.T.reshape(8, 16, 16).numpy(), atol=1e-5)
    np.testing.assert_allclose(b.neuron_maps["fc2"], h2.T.reshape(5, 16, 16).numpy(), atol=1e-5)


def test_binary_single_output():
    net = mlp([2, 6, 1], act=nn.Tanh)
    b = decision_boundary(net, net.blocks, extent=EXTENT, resolution=12)
    pts, _, _ = _grid(EXTENT, 12)
    with torch.no_grad():
        z = net(pts)[:, 0]
    assert b.probs.shape == (12, 12)
    np.testing.assert_allclose(b.probs, torch.sigmoid(z).reshape(12, 12).numpy(), atol=1e-6)
    np.testing.assert_array_equal(b.predicted, (z > 0).reshape(12, 12).numpy().astype(np.uint8))


@pytest.mark.parametrize("axis", [0, 1])
def test_image_orientation(axis):
    """Logit = x: class 1 on the right; logit = y: class 1 on top (row 0)."""
    lin = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0]] if axis == 0 else [[0.0, 1.0]]))
    net = ToyNet({"out": Block("linear", lin)})
    b = decision_boundary(net, net.blocks, extent=(-1, 1, -1, 1), resolution=10)
    if axis == 0:
        assert (b.predicted[:, :5] == 0).all() and (b.predicted[:, 5:] == 1).all()
    else:
        assert (b.predicted[:5] == 1).all() and (b.predicted[5:] == 0).all()
    assert b.neuron_maps == {}


def test_resolution_and_units_are_capped():
    net = mlp([2, 40, 2], act=nn.ReLU)
    b = decision_boundary(net, net.blocks, extent=EXTENT, resolution=10_000)
    assert b.predicted.shape == (MAX_RESOLUTION, MAX_RESOLUTION)
    assert b.neuron_maps["fc1"].shape == (32, MAX_RESOLUTION, MAX_RESOLUTION)


def test_mode_restored_and_hooks_released():
    net = ToyNet({"fc": Block("linear", nn.Linear(2, 4), nn.ReLU()), "drop": Block("dropout", nn.Dropout(0.9)),
                  "out": Block("linear", nn.Linear(4, 2))})
    net.train()
    a = decision_boundary(net, net.blocks, extent=EXTENT, resolution=8)
    b = decision_boundary(net, net.blocks, extent=EXTENT, resolution=8)
    np.testing.assert_array_equal(a.probs, b.probs)  # eval mode: dropout off
    assert net.training and all_hooks(net) == 0


def test_data_extent_and_bad_extent():
    x = torch.tensor([[0.0, -1.0], [2.0, 3.0]])
    assert data_extent(x, margin=0.5) == pytest.approx((-1.0, 3.0, -3.0, 5.0))
    net = mlp([2, 2])
    with pytest.raises(ValueError, match="xmin < xmax"):
        decision_boundary(net, net.blocks, extent=(1, 0, 0, 1), resolution=8)

# ---------------------------------------------------------------------------
# With the builder's GraphModel
# ---------------------------------------------------------------------------


def test_boundary_of_built_binary_model():
    model = built_mlp2d()
    b = decision_boundary(model, model.blocks, extent=EXTENT, resolution=24)
    pts, _, _ = _grid(EXTENT, 24)
    with torch.no_grad():
        z = model(pts)[:, 0]
        h = model.blocks["hidden"](pts)
        h2 = model.blocks["hidden2"](h)
    np.testing.assert_allclose(b.probs, torch.sigmoid(z).reshape(24, 24).numpy(), atol=1e-6)
    np.testing.assert_array_equal(b.predicted, (z > 0).reshape(24, 24).numpy().astype(np.uint8))
    assert set(b.neuron_maps) == {"hidden", "hidden2"}
    np.testing.assert_allclose(b.neuron_maps["hidden"], h.T.reshape(12, 24, 24).numpy(), atol=1e-6)
    np.testing.assert_allclose(b.neuron_maps["hidden2"], h2.T.reshape(6, 24, 24).numpy(), atol=1e-6)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_layers_default_to_model_blocks():
    model = built_mlp2d()
    b = decision_boundary(model, extent=EXTENT, resolution=8)
    assert set(b.neuron_maps) == {"hidden", "hidden2"}


@pytest.mark.gpu
@needs_cuda
def test_boundary_on_cuda_equals_cpu():
    model = built_mlp2d()
    cpu = decision_boundary(model, extent=EXTENT, resolution=32)
    gpu = decision_boundary(model.cuda(), extent=EXTENT, resolution=32)
    np.testing.assert_allclose(gpu.probs, cpu.probs, atol=1e-5)
    np.testing.assert_allclose(gpu.neuron_maps["hidden"], cpu.neuron_maps["hidden"], atol=1e-5)
