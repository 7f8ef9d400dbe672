"""layers.py: each custom module against the same computation written in plain torch."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from server import schemas
from server.layers import (
    Add,
    BlockDict,
    Concat,
    GlobalAvgPool,
    LayerBlock,
    Maxout,
    MaxoutActivation,
    Sign,
    SpatialAttention,
    SqueezeExcite,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_sign_maps_zero_to_plus_one_and_has_zero_gradient():
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-9, 3.0], requires_grad=True)
    y = Sign()(x)
    assert y.tolist() == [-1.0, 1.0, 1.0, 1.0, 1.0]
    assert y.requires_grad  # the graph stays connected: backward runs and gives zeros
    (y * torch.arange(5.0)).sum().backward()
    assert torch.equal(x.grad, torch.zeros(5))
    # Away from zero it agrees with torch.sign, gradient included.
    z = torch.randn(100, requires_grad=True)
    torch.testing.assert_close(Sign()(z), torch.sign(z))


def test_sign_keeps_dtype_and_shape():
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    assert Sign()(x).dtype == torch.float64 and Sign()(x).shape == x.shape


@pytest.mark.parametrize("shape", [(5, 12), (2, 12, 3, 4)])
@pytest.mark.parametrize("pieces", [2, 3, 4])
def test_maxout_activation_takes_the_max_of_consecutive_groups(shape, pieces):
    x = torch.randn(shape)
    out = MaxoutActivation(pieces)(x)
    expected = torch.stack([x[:, c * pieces:(c + 1) * pieces].amax(dim=1) for c in range(12 // pieces)], dim=1)
    torch.testing.assert_close(out, expected)
    assert out.shape == (shape[0], 12 // pieces, *shape[2:])


def test_maxout_layer_is_the_max_over_pieces_affine_maps():
    layer = Maxout(7, 4, pieces=3)
    x = torch.randn(6, 7)
    pieces = [F.linear(x, layer.weight[j::3], layer.bias[j::3]) for j in range(3)]
    torch.testing.assert_close(layer(x), torch.stack(pieces).amax(dim=0))
    assert sum(p.numel() for p in layer.parameters()) == 3 * (7 * 4 + 4)
    # Its default init is nn.Linear's: weight and bias within 1/sqrt(fan_in).
    assert layer.weight.abs().max() <= 7**-0.5 and layer.bias.abs().max() <= 7**-0.5


def test_maxout_layer_equals_linear_then_maxout_activation():
    layer = Maxout(5, 3, pieces=2)
    linear = nn.Linear(5, 6)
    linear.load_state_dict({"weight": layer.weight, "bias": layer.bias})
    x = torch.randn(4, 5)
    torch.testing.assert_close(layer(x), MaxoutActivation(2)(linear(x)))


@pytest.mark.parametrize("channels, reduction, hidden", [(16, 4, 4), (3, 8, 1)])
def test_squeeze_excite_matches_the_formula(channels, reduction, hidden):
    se = SqueezeExcite(channels, reduction)
    assert (se.fc1.out_features, se.fc2.in_features) == (hidden, hidden)
    x = torch.randn(2, channels, 5, 6)
    s = torch.sigmoid(se.fc2(torch.relu(se.fc1(x.mean(dim=(2, 3))))))
    masks = []
    se.gate.register_forward_hook(lambda m, a, out: masks.append(out))
    torch.testing.assert_close(se(x), x * s[:, :, None, None])
    assert masks[0].shape == (2, channels) and torch.all((masks[0] > 0) & (masks[0] < 1))


@pytest.mark.parametrize("kernel_size", [1, 3, 7])
def test_spatial_attention_matches_the_formula(kernel_size):
    sa = SpatialAttention(kernel_size)
    x = torch.randn(2, 4, 9, 8)
    pooled = torch.cat([x.mean(1, keepdim=True), x.max(1, keepdim=True).values], dim=1)
    mask = torch.sigmoid(F.conv2d(pooled, sa.conv.weight, sa.conv.bias, padding=kernel_size // 2))
    masks = []
    sa.gate.register_forward_hook(lambda m, a, out: masks.append(out))
    torch.testing.assert_close(sa(x), x * mask)
    assert masks[0].shape == (2, 1, 9, 8)
    assert sum(p.numel() for p in sa.parameters()) == 2 * kernel_size**2 + 1


def test_plumbing_modules():
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    torch.testing.assert_close(GlobalAvgPool()(a), F.adaptive_avg_pool2d(a, 1).flatten(1))
    torch.testing.assert_close(Add()(a, a, a), 3 * a)
    torch.testing.assert_close(Concat()(a, b), torch.cat([a, b], 1))


def _spec(**fields):
    return schemas.NetworkSpec.model_validate({"layers": [fields]}).layers[0]


def test_layer_block_applies_core_then_act_and_flattens_for_linear():
    spec = _spec(kind="linear", name="fc", out_features=3, activation="relu")
    block = LayerBlock(spec, nn.Linear(24, 3), nn.ReLU(), flatten_input=True)
    x = torch.randn(4, 2, 3, 4)
    torch.testing.assert_close(block(x), torch.relu(block.core(x.reshape(4, 24))))
    assert (block.kind, block.spec.name) == ("linear", "fc")


def test_layer_block_init_targets():
    conv = LayerBlock(_spec(kind="conv2d", name="c", out_channels=4, groups=2), nn.Conv2d(2, 4, 3, groups=2), nn.Identity())
    assert [(w.shape, b is conv.core.bias, g) for w, b, g in conv.init_targets()] == [((4, 1, 3, 3), True, 2)]
    se = LayerBlock(_spec(kind="squeeze_excite", name="se"), SqueezeExcite(8, 4), nn.Identity())
    assert [w.shape for w, _, _ in se.init_targets()] == [(2, 8), (8, 2)]
    mo = LayerBlock(_spec(kind="maxout", name="m", out_features=2), Maxout(3, 2, 2), nn.Identity())
    assert [w is mo.core.weight for w, _, _ in mo.init_targets()] == [True]
    pool = LayerBlock(_spec(kind="max_pool2d", name="p"), nn.MaxPool2d(2), nn.Identity())
    assert list(pool.init_targets()) == []


def test_block_dict_speaks_layer_names():
    names = ["a.b", "train", "keys", "key", "_modules", "plain", "x.y.z"]
    blocks = BlockDict()
    for name in names:
        blocks[name] = nn.Linear(1, 1)
    assert list(blocks) == names == blocks.keys() == [n for n, _ in blocks.items()]
    assert all(name in blocks for name in names) and "a" not in blocks and 3 not in blocks
    assert isinstance(blocks["train"], nn.Linear) and callable(blocks.train)  # the method still works
    assert len(blocks) == len(names) and len(list(blocks.values())) == len(names)
    # Escaped keys are a bijection and state dicts round-trip.
    assert all(BlockDict.name(BlockDict.key(n)) == n for n in names)
    clone = copy.deepcopy(blocks)
    clone.load_state_dict(blocks.state_dict())
    assert clone.keys() == names
    assert isinstance(blocks.pop("a.b"), nn.Linear) and "a.b" not in blocks
    del blocks["train"]
    assert "train" not in blocks
