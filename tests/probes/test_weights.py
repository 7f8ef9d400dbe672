"""Weight histograms and filter pictures: the pixels invert back to the weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from server.probes import (
    FilterNormalizer,
    filter_images,
    pixels_to_weights,
    tile_grid,
    weight_histograms,
)
from toy_nets import Block, ToyNet, built_cnn, small_cnn


def _conv(in_ch: int, out_ch: int, k: int = 3, seed: int = 0) -> Block:
    torch.manual_seed(seed)
    return Block("conv2d", nn.Conv2d(in_ch, out_ch, k), nn.ReLU())


def _assert_inverts(images: np.ndarray, scale: float, weights: torch.Tensor) -> None:
    """Pixels map back to the weights within half a grey level (scale / 254)."""
    back = pixels_to_weights(images, scale)
    np.testing.assert_allclose(back, weights.detach().numpy(), atol=scale / 254 + 1e-7, rtol=0)


def test_weight_histograms_match_torch():
    net = small_cnn()
    result = weight_histograms(net.blocks, bins=16)
    assert [h.layer for h in result] == ["conv1", "conv2", "out"]
    for h in result:
        w = net.blocks[h.layer].core.weight.detach()
        assert h.shape == tuple(w.shape) and h.kind == net.blocks[h.layer].kind
        assert h.stats.mean == pytest.approx(w.mean().item(), rel=1e-5, abs=1e-7)
        assert h.stats.std == pytest.approx(w.std().item(), rel=1e-5)
        expected = torch.histc(w, 16, min=w.min().item(), max=w.max().item())
        assert h.stats.hist == [int(c) for c in expected.tolist()]


def test_weight_histograms_skip_layers_without_weights():
    net = ToyNet({"pool": Block("max_pool2d", nn.MaxPool2d(2)), "c": _conv(1, 2)})
    assert [h.layer for h in weight_histograms(net.blocks)] == ["c"]


def test_first_layer_filters_in_colour():
    block = _conv(3, 8, k=5)
    grid = filter_images(block)
    w = block.core.weight
    assert grid.rgb and grid.images.shape == (8, 5, 5, 3) and grid.images.dtype == np.uint8
    assert grid.scale == pytest.approx(w.abs().max().item())
    assert grid.tiles == [(o, None) for o in range(8)]
    _assert_inverts(grid.images, grid.scale, w.permute(0, 2, 3, 1))
    assert grid.clipped == 0.0


def test_deeper_layer_one_tile_per_filter_and_input_channel():
    block = _conv(4, 6)
    grid = filter_images(block, scale=0.5)
    w = block.core.weight
    assert not grid.rgb and grid.images.shape == (24, 3, 3) and grid.cols == 4
    assert grid.tiles == [(o, i) for o in range(6) for i in range(4)]
    _assert_inverts(grid.images, 0.5, w.reshape(24, 3, 3))


def test_tile_cap_keeps_whole_rows():
    block = _conv(16, 32)  # 512 (out, in) pairs
    grid = filter_images(block)
    assert grid.images.shape == (64, 3, 3) and grid.cols == 8
    assert grid.tiles == [(o, i) for o in range(8) for i in range(8)]
    w = block.core.weight[:8, :8].reshape(64, 3, 3)
    _assert_inverts(grid.images, grid.scale, w)
    assert grid.scale == pytest.approx(block.core.weight.abs().max().item())  # whole layer, not the shown part


def test_zero_weight_is_grey_128_and_scale_is_symmetric():
    conv = nn.Conv2d(1, 3, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([0.0, 1.0, -1.0]).reshape(3, 1, 1, 1).expand(3, 1, 2, 2))
    grid = filter_images(conv)
    assert grid.images[:, 0, 0].tolist() == [128, 255, 1]


def test_normalizer_keeps_the_first_scale_so_growth_shows():
    block = _conv(1, 4)
    norm = FilterNormalizer(headroom=1.5)
    first = filter_images(block, normalizer=norm)
    w0 = block.core.weight.detach().clone()
    assert first.scale == norm.scale == pytest.approx(1.5 * w0.abs().max().item())
    with torch.no_grad():
        block.core.weight.mul_(1.2)  # the filters grow during training
    later = filter_images(block, normalizer=norm)
    assert later.scale == first.scale
    dev_first = np.abs(first.images.astype(int) - 128).sum()
    dev_later = np.abs(later.images.astype(int) - 128).sum()
    assert dev_later > 1.1 * dev_first  # brighter, not re-stretched
    _assert_inverts(later.images, later.scale, block.core.weight.reshape(4, 3, 3))
    # without a normalizer the new weights would be stretched to full contrast again
    assert filter_images(block).scale == pytest.approx(block.core.weight.abs().max().item())


def test_normalizer_clips_and_reports_outgrown_weights():
    block = _conv(1, 4)
    norm = FilterNormalizer(headroom=1.0)
    filter_images(block.core, normalizer=norm)  # a bare Conv2d works too
    with torch.no_grad():
        block.core.weight.mul_(3.0)
    grid = filter_images(block.core, normalizer=norm)
    assert grid.clipped > 0
    assert grid.images.min() >= 1 and grid.images.max() <= 255
    norm.reset()
    assert filter_images(block, normalizer=norm).clipped == 0


def test_normalizer_waits_for_nonzero_weights():
    conv = nn.Conv2d(1, 2, 3)
    nn.init.zeros_(conv.weight)
    norm = FilterNormalizer()
    assert (filter_images(conv, normalizer=norm).images == 128).all()
    assert norm.scale is None
    with torch.no_grad():
        conv.weight.fill_(0.1)
    assert filter_images(conv, normalizer=norm).scale == pytest.approx(0.15)


def test_scale_and_normalizer_are_exclusive():
    with pytest.raises(ValueError, match="not both"):
        filter_images(_conv(1, 2), scale=1.0, normalizer=FilterNormalizer())


def test_linear_layer_as_templates():
    lin = nn.Linear(2 * 4 * 4, 3)
    grid = filter_images(lin, input_shape=(2, 4, 4))
    assert grid.images.shape == (6, 4, 4) and grid.tiles[1] == (0, 1)
    _assert_inverts(grid.images, grid.scale, lin.weight.reshape(3, 2, 4, 4).reshape(6, 4, 4))
    with pytest.raises(ValueError, match="input_shape"):
        filter_images(lin)
    with pytest.raises(ValueError, match="cannot be drawn"):
        filter_images(lin, input_shape=(1, 5, 5))


def test_module_without_weight_is_an_error():
    with pytest.raises(ValueError, match="no weight"):
        filter_images(Block("max_pool2d", nn.MaxPool2d(2)))


def test_tile_grid_layout():
    tiles = np.arange(5 * 2 * 3, dtype=np.uint8).reshape(5, 2, 3)
    grid = tile_grid(tiles, cols=2, pad=1, fill=7)
    assert grid.shape == (3 * 2 + 2, 2 * 3 + 1) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[0:2, 0:3], tiles[0])
    np.testing.assert_array_equal(grid[0:2, 4:7], tiles[1])
    np.testing.assert_array_equal(grid[6:8, 0:3], tiles[4])
    assert (grid[2, :] == 7).all() and (grid[6:8, 4:7] == 7).all()  # gap row, empty cell


def test_tile_grid_colour():
    tiles = np.full((3, 2, 2, 3), 200, dtype=np.uint8)
    grid = tile_grid(tiles, cols=8, pad=0)
    assert grid.shape == (2, 6, 3) and (grid == 200).all()

# ---------------------------------------------------------------------------
# With the builder's GraphModel
# ---------------------------------------------------------------------------


def test_filters_and_histograms_of_built_graph_model():
    model = built_cnn()
    hists = weight_histograms(model.blocks, 8)
    assert [h.layer for h in hists] == ["conv1", "block2.conv", "fc", "out"]
    first = filter_images(model.blocks["conv1"], normalizer=FilterNormalizer())
    w1 = model.blocks["conv1"].core.weight
    assert first.rgb and first.images.shape == (4, 3, 3, 3)
    _assert_inverts(first.images, first.scale, w1.permute(0, 2, 3, 1))
    second = filter_images(model.blocks["block2.conv"].core, normalizer=FilterNormalizer())
    assert not second.rgb and second.images.shape == (24, 3, 3)
    _assert_inverts(second.images, second.scale, model.blocks["block2.conv"].core.weight.reshape(24, 3, 3))
    grid = tile_grid(second.images, second.cols)
    assert grid.shape == (6 * 3 + 5, 4 * 3 + 3)
