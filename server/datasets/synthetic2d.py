"""Two-class 2D point sets for decision-boundary lessons (TensorFlow-Playground style).

Every generator has the signature ``(n, noise, rng) -> (x float32 (n, 2), y int64 (n,))``.
The clean shapes lie in the square [-1, 1]^2; then every point gets Gaussian jitter
with std ``NOISE_SCALE * noise``, so a few points leave the square and, as noise
grows, cross into the other class. Labels are assigned before the jitter. Classes
are balanced (counts differ by at most one). Class names live in the catalog.
"""

from __future__ import annotations

import numpy as np

from .base import balanced_labels

# noise 1.0 -> jitter std 0.5, a quarter of the plane's width: the classes dissolve.
# The default noise 0.1 (std 0.05) leaves every set cleanly learnable.
NOISE_SCALE = 0.5


def _finish(x: np.ndarray, y: np.ndarray, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = x + rng.normal(0.0, NOISE_SCALE * noise, size=x.shape)
    return x.astype(np.float32), y.astype(np.int64)


def _polar(r: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)


def circle(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: a disc of radius 0.5 (uniform over its area); class 1: a ring 0.7 <= r <= 1."""
    y = balanced_labels(n, 2)
    theta = rng.uniform(0.0, 2 * np.pi, n)
    r_inner = 0.5 * np.sqrt(rng.random(n))
    r_outer = np.sqrt(rng.uniform(0.7**2, 1.0, n))
    return _finish(_polar(np.where(y == 0, r_inner, r_outer), theta), y, noise, rng)


def xor(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Uniform in the four quadrants, kept 0.05 away from the axes; class 0: x*y > 0, class 1: x*y < 0."""
    y = balanced_labels(n, 2)
    magnitude = rng.uniform(0.05, 1.0, size=(n, 2))
    sign_x = rng.choice([-1.0, 1.0], size=n)
    sign_y = np.where(y == 0, sign_x, -sign_x)
    return _finish(magnitude * np.stack([sign_x, sign_y], axis=1), y, noise, rng)


def gaussians(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two round blobs (std 0.15) at (-0.5, -0.5) and (0.5, 0.5): the line x + y = 0 separates them at low noise."""
    y = balanced_labels(n, 2)
    centres = np.where(y[:, None] == 0, -0.5, 0.5)
    return _finish(centres + rng.normal(0.0, 0.15, size=(n, 2)), y, noise, rng)


def spiral(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved arms of 1.25 turns, radius 0.05 -> 1, the second arm the first turned by 180 degrees."""
    y = balanced_labels(n, 2)
    t = rng.random(n)
    r = 0.05 + 0.95 * t
    theta = 2.5 * np.pi * t + np.pi * y
    return _finish(_polar(r, theta), y, noise, rng)


def moons(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's two interleaved half circles, scaled into x in [-1, 1], y in [-0.5, 0.5]."""
    y = balanced_labels(n, 2)
    t = rng.uniform(0.0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    x = np.where(y[:, None] == 0, upper, lower)
    x = (x - np.array([0.5, 0.25])) / 1.5
    return _finish(x, y, noise, rng)


def checkerboard(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 4x4 board of 0.5-wide cells over [-1, 1]^2; class = parity of (column + row)."""
    y = balanced_labels(n, 2)
    cells = rng.integers(0, 4, size=(n, 2))
    # Pick cells of the right colour: flip the column when the parity is wrong.
    wrong = (cells.sum(axis=1) % 2) != y
    cells[wrong, 0] = np.where(cells[wrong, 0] % 2 == 0, cells[wrong, 0] + 1, cells[wrong, 0] - 1)
    x = -1.0 + 0.5 * (cells + rng.random((n, 2)))
    return _finish(x, y, noise, rng)
