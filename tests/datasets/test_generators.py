"""The generated sets draw what their names promise: geometry of the 2D sets, orientation of gratings, shapes."""

from __future__ import annotations

import numpy as np
import pytest

from server.datasets import generated, synthetic2d
from server.datasets.base import make_rng

POINT_SETS = [synthetic2d.circle, synthetic2d.xor, synthetic2d.gaussians, synthetic2d.spiral,
              synthetic2d.moons, synthetic2d.checkerboard]


def rng(seed: int = 0) -> np.random.Generator:
    return make_rng(seed, 0)


@pytest.mark.parametrize("make", POINT_SETS, ids=lambda f: f.__name__)
def test_point_sets_are_balanced_and_in_the_unit_square_without_noise(make):
    x, y = make(301, 0.0, rng())
    assert x.shape == (301, 2) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [151, 150]
    if make is not synthetic2d.gaussians:  # Gaussian blobs have unbounded tails
        assert np.abs(x).max() <= 1.0 + 1e-6


@pytest.mark.parametrize("make", POINT_SETS, ids=lambda f: f.__name__)
def test_noise_is_gaussian_jitter_of_half_the_noise_level(make):
    clean, y0 = make(2000, 0.0, rng(1))
    noisy, y1 = make(2000, 0.4, rng(1))
    assert np.array_equal(y0, y1)
    jitter = noisy - clean
    assert abs(jitter.std() - synthetic2d.NOISE_SCALE * 0.4) < 0.01


def test_circle_geometry():
    x, y = synthetic2d.circle(1000, 0.0, rng())
    r = np.linalg.norm(x, axis=1)
    assert r[y == 0].max() <= 0.5 + 1e-6
    assert r[y == 1].min() >= 0.7 - 1e-6 and r[y == 1].max() <= 1.0 + 1e-6


def test_xor_quadrants():
    x, y = synthetic2d.xor(1000, 0.0, rng())
    assert np.array_equal(y, (x[:, 0] * x[:, 1] < 0).astype(np.int64))
    assert np.abs(x).min() >= 0.05 - 1e-6


@pytest.mark.parametrize("seed", range(5))
def test_gaussians_are_linearly_separable_at_the_default_noise(seed):
    x, y = synthetic2d.gaussians(400, 0.1, rng(seed))
    assert np.array_equal(y, (x.sum(axis=1) > 0).astype(np.int64))


def test_gaussians_overlap_at_high_noise():
    x, y = synthetic2d.gaussians(400, 1.0, rng())
    assert not np.array_equal(y, (x.sum(axis=1) > 0).astype(np.int64))


def test_spiral_arms_are_half_a_turn_apart():
    x, y = synthetic2d.spiral(600, 0.0, rng())
    r = np.linalg.norm(x, axis=1)
    assert r.min() >= 0.05 - 1e-6
    # Radius fixes t, and t fixes the angle of each arm: the arms differ by pi exactly.
    t = (r - 0.05) / 0.95
    expected = 2.5 * np.pi * t + np.pi * y
    diff = np.angle(np.exp(1j * (np.arctan2(x[:, 1], x[:, 0]) - expected)))
    assert np.abs(diff).max() < 1e-4


def test_moons_ranges():
    x, y = synthetic2d.moons(1000, 0.0, rng())
    assert x[:, 0].min() >= -1.0 - 1e-6 and x[:, 0].max() <= 1.0 + 1e-6
    assert np.abs(x[:, 1]).max() <= 0.5 + 1e-6
    assert x[y == 0, 1].mean() > x[y == 1, 1].mean()  # upper moon above the lower one


def test_checkerboard_parity():
    x, y = synthetic2d.checkerboard(2000, 0.0, rng())
    cells = np.floor((x + 1) * 2).astype(int)
    assert np.array_equal(y, cells.sum(axis=1) % 2)
    assert len({tuple(c) for c in cells}) == 16


def test_gratings_have_their_orientation():
    x, y = generated.gratings(40, 0.0, rng())
    assert x.shape == (40, 1, 28, 28) and x.min() >= 0 and x.max() <= 1
    img = x[:, 0].astype(np.float64)
    r, c = np.meshgrid(np.arange(28), np.arange(28), indexing="ij")

    def spread_along(i: int, key: np.ndarray) -> float:
        """Largest std of the image over pixels sharing the same key (0 when the bars follow the key's lines)."""
        return max(img[i][key == k].std() for k in np.unique(key))

    for i, label in enumerate(y):
        keys = {0: r, 1: r + c, 2: c, 3: r - c}  # 0 deg: rows constant; 45: anti-diagonals; 90: columns; 135: diagonals
        assert spread_along(i, keys[label]) < 1e-5, f"image {i} (class {label}) is not constant along its bars"
        assert img[i].std() > 0.05


def test_gratings_noise_level():
    clean, _ = generated.gratings(100, 0.0, rng(2))
    noisy, _ = generated.gratings(100, 0.05, rng(2))
    inside = (clean > 0.2) & (clean < 0.8)  # where clipping cannot bite
    assert abs((noisy - clean)[inside].std() - 0.05) < 0.005


def test_shapes_are_whole_bright_objects_on_black():
    x, y = generated.shapes(200, 0.0, rng())
    assert x.shape == (200, 1, 28, 28) and np.bincount(y).tolist() == [50] * 4
    img = x[:, 0]
    border = np.concatenate([img[:, 0], img[:, -1], img[:, :, 0], img[:, :, -1]], axis=1)
    assert border.max() == 0.0  # never cut by the image edge
    assert img.max(axis=(1, 2)).min() >= 0.7 - 1e-6 and img.max() <= 1.0
    # Fill ratio inside the bounding box tells the shapes apart: square > circle > triangle and cross.
    ink = img > 0.35

    def fill(i: int) -> float:
        rows, cols = np.flatnonzero(ink[i].any(axis=1)), np.flatnonzero(ink[i].any(axis=0))
        box = ink[i][rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        return box.mean()

    fills = np.array([fill(i) for i in range(200)])
    by_class = [np.median(fills[y == k]) for k in range(4)]  # circle, square, triangle, cross
    assert by_class[1] > by_class[0] > max(by_class[2], by_class[3])
    assert 0.7 < by_class[0] < 0.85  # pi/4 for a disc
