"""Preprocessing from training statistics, its undoing for display, devices, and the preview helper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from server.datasets import DataError, load_dataset, preview
from server.schemas import DataSpec


def load(name: str, **kw):
    return load_dataset(DataSpec(name=name, **kw))


@pytest.mark.parametrize("name", ["photo_patches", "mnist", "spiral"])
def test_standardize_uses_training_statistics_only(name):
    raw = load(name, n_samples=400, preprocessing="none")
    ds = load(name, n_samples=400, preprocessing="standardize")
    dims = (0, 2, 3) if ds.kind == "image" else (0,)
    # Oracle: torch's own mean/std (population, correction=0) over the raw training split.
    mean = raw.x_train.double().mean(dim=dims).float()
    std = raw.x_train.double().std(dim=dims, correction=0).float()
    channels = ds.input_shape[0]
    assert ds.mean.shape == (channels,) and ds.std.shape == (channels,)
    torch.testing.assert_close(ds.mean, mean)
    torch.testing.assert_close(ds.std, std)
    # Not the statistics of all the data: validation examples did not leak in.
    everything = torch.cat([raw.x_train, raw.x_val]).double().mean(dim=dims).float()
    assert not torch.allclose(ds.mean, everything, rtol=0, atol=1e-7)
    # The transform itself, on both splits, with the training stats.
    view = (1, -1) + (1,) * (len(ds.input_shape) - 1)
    torch.testing.assert_close(ds.x_train, (raw.x_train - mean.view(view)) / std.view(view))
    torch.testing.assert_close(ds.x_val, (raw.x_val - mean.view(view)) / std.view(view))
    # Training data come out with zero mean and unit std per channel.
    torch.testing.assert_close(ds.x_train.double().mean(dim=dims), torch.zeros(channels, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(ds.x_train.double().std(dim=dims, correction=0), torch.ones(channels, dtype=torch.float64),
                               atol=1e-5, rtol=0)


def test_center_subtracts_the_mean_only():
    raw = load("mnist", preprocessing="none")
    ds = load("mnist", preprocessing="center")
    assert ds.std is None
    torch.testing.assert_close(ds.mean, raw.x_train.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(ds.x_train, raw.x_train - ds.mean.view(1, -1, 1, 1))


def test_statistics_follow_the_training_subset():
    raw = load("digits", train_subset=30)
    ds = load("digits", train_subset=30, preprocessing="standardize")
    torch.testing.assert_close(ds.mean, raw.x_train.mean(dim=(0, 2, 3)))


def test_constant_features_do_not_divide_by_zero():
    ds = load("circle", train_subset=1, preprocessing="standardize")
    assert torch.equal(ds.std, torch.ones(2))  # a single example has std 0: treated as 1
    assert torch.isfinite(ds.x_val).all()


@pytest.mark.parametrize("preprocessing", ["none", "center", "standardize"])
@pytest.mark.parametrize("name", ["mnist", "photo_patches"])
def test_display_images_undoes_preprocessing(name, preprocessing):
    raw = load(name, n_samples=200, preprocessing="none")
    ds = load(name, n_samples=200, preprocessing=preprocessing)
    shown = ds.display_images(ds.x_train)
    c, h, w = ds.input_shape
    assert shown.dtype == torch.uint8 and shown.shape == (ds.n_train, h, w, c)
    expected = (raw.x_train * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    assert torch.equal(shown, expected)


def test_display_images_clamps_out_of_range_values():
    ds = load("gratings", n_samples=8, preprocessing="standardize")
    shown = ds.display_images(ds.x_train * 100)
    assert set(torch.unique(shown).tolist()) <= set(range(256))
    assert shown.min() == 0 and shown.max() == 255


def test_display_images_refuses_points():
    with pytest.raises(DataError, match="not images"):
        load("xor").display_images(torch.zeros(1, 2))


def test_normalize_and_denormalize_are_inverse():
    ds = load("photo_patches", n_samples=100, preprocessing="standardize")
    raw = torch.rand(5, 3, 32, 32)
    torch.testing.assert_close(ds.denormalize(ds.normalize(raw)), raw)


def test_to_moves_every_tensor():
    ds = load("digits", preprocessing="standardize")
    moved = ds.to("meta")  # a device every machine has
    for t in (moved.x_train, moved.y_train, moved.x_val, moved.y_val, moved.mean, moved.std):
        assert t.device.type == "meta"
    assert ds.x_train.device.type == "cpu"  # the original is untouched
    assert moved.classes == ds.classes and moved.num_classes == 10


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_to_cuda_and_display_there():
    ds = load("mnist", n_samples=100, preprocessing="standardize").to("cuda")
    assert ds.x_train.is_cuda and ds.mean.is_cuda
    shown = ds.display_images(ds.x_train[:4])
    assert shown.is_cuda and shown.dtype == torch.uint8


def test_preview_of_images():
    ds = load("shapes", n_samples=100, preprocessing="standardize")
    view = preview(ds, n=12)
    assert view["kind"] == "image" and view["classes"] == ["circle", "square", "triangle", "cross"]
    assert isinstance(view["images"], np.ndarray) and view["images"].dtype == np.uint8
    assert view["images"].shape == (12, 28, 28, 1)
    assert view["labels"] == ds.y_train[:12].tolist() and set(view["labels"]) == {0, 1, 2, 3}


def test_preview_of_points_is_in_raw_coordinates():
    raw = load("moons")
    ds = load("moons", preprocessing="standardize")
    view = preview(ds, n=1000)
    assert view["kind"] == "2d" and view["points"].shape == (ds.n_train, 2)
    np.testing.assert_allclose(view["points"], raw.x_train.numpy(), atol=1e-5)
    assert len(view["labels"]) == ds.n_train
