"""Procedurally drawn 1x28x28 image sets: shapes and oriented gratings.

Generators have the signature ``(n, noise, rng, only=None) -> (x float32 (n, 1, 28, 28), y int64 (n,))``;
images lie in [0, 1]; ``noise`` is the std of Gaussian pixel noise added last (then
clipped to [0, 1]). Classes are balanced. Class names live in the catalog.

``only`` (sorted example indices, optional) draws just those examples of the n-example
set, bit for bit as the full set has them: every random parameter is drawn for all n
(a few numbers per image), but only the chosen images are rendered and noised. A
preview of "the first 16 of 87,000" then costs 16 images, not 87,000.
"""

from __future__ import annotations

import numpy as np

from .base import balanced_labels

SIDE = 28  # image side, in pixels
SUPERSAMPLE = 2  # shapes are drawn on a 2x finer grid and averaged: soft, anti-aliased edges
CHUNK = 1024  # images drawn at once (bounds the temporary grids' memory)

SHAPE_CLASSES = 4  # circle, square, triangle, cross
ORIENTATIONS_DEG = (0.0, 45.0, 90.0, 135.0)  # bar orientation, counter-clockwise from horizontal


def _add_noise(images: np.ndarray, noise: float, rng: np.random.Generator, n: int,
               only: np.ndarray | None = None) -> np.ndarray:
    """Add N(0, noise^2) to float32 images in place, chunk by chunk, and clip to [0, 1].

    The noise of the full n-image set is drawn CHUNK images at a time; with ``only``
    (the sorted indices ``images`` holds), each chunk is still drawn whole, to keep the
    random stream in step, and only its chosen rows are used (one chunk in memory at a time).
    """
    rows = np.arange(n) if only is None else only
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        lo, hi = np.searchsorted(rows, [start, stop])  # the rows of images that fall in this chunk
        if noise > 0:
            if lo == len(rows):
                break  # nothing chosen beyond here: the rest of the stream is never used
            draw = rng.standard_normal((stop - start,) + images.shape[1:], dtype=np.float32)
            if only is None:
                images[start:stop] += noise * draw
            else:
                images[lo:hi] += noise * draw[rows[lo:hi] - start]
        np.clip(images[lo:hi], 0.0, 1.0, out=images[lo:hi])
    return images


def _chunks(n: int, only: np.ndarray | None):
    """(rows of the output, examples of the full set) per chunk: slices for the full set, indices for ``only``."""
    count = n if only is None else len(only)
    for start in range(0, count, CHUNK):
        out = slice(start, min(start + CHUNK, count))
        yield out, (out if only is None else only[out])


def _per_image(part: slice | np.ndarray, a: np.ndarray) -> np.ndarray:
    """Per-image parameters ``(n,)`` of one chunk, shaped ``(k, 1, 1)`` to broadcast over pixels."""
    return a[part, None, None].astype(np.float32)


def _inside(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Which shape-frame points (u right, v down; unit = the shape's radius) lie inside shape ``kind``.

    0 circle: unit disc; 1 square: half-side 0.8; 2 triangle: equilateral, circumradius 1,
    apex up; 3 cross: a plus of arm length 1 and half-width 0.25.
    """
    if kind == 0:
        return u**2 + v**2 <= 1.0
    if kind == 1:
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if kind == 2:
        # Outward edge normals, y down: (0, 1) and (+-sqrt(3)/2, -1/2); the inradius is 1/2.
        s3 = np.sqrt(3.0) / 2
        return (v <= 0.5) & (s3 * u - 0.5 * v <= 0.5) & (-s3 * u - 0.5 * v <= 0.5)
    return ((np.abs(u) <= 0.25) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.25) & (np.abs(u) <= 1.0))


def shapes(n: int, noise: float, rng: np.random.Generator,
           only: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Filled circle / square / triangle / cross of radius 5-10 px, random position, rotation within
    +-15 degrees and brightness 0.7-1, on black. ``only``: see the module docstring."""
    y = balanced_labels(n, SHAPE_CLASSES)
    radius = rng.uniform(5.0, 10.0, n)
    margin = 1.2 * radius + 0.5  # a rotated square's corner reaches 1.13 radii
    cx = rng.uniform(margin, SIDE - margin)
    cy = rng.uniform(margin, SIDE - margin)
    angle = np.deg2rad(rng.uniform(-15.0, 15.0, n))
    brightness = rng.uniform(0.7, 1.0, n)

    fine = SIDE * SUPERSAMPLE
    grid = (np.arange(fine, dtype=np.float32) + 0.5) / SUPERSAMPLE  # sub-pixel centres, in pixels
    images = np.empty((n if only is None else len(only), 1, SIDE, SIDE), dtype=np.float32)
    for out, part in _chunks(n, only):
        dx = grid[None, None, :] - _per_image(part, cx)
        dy = grid[None, :, None] - _per_image(part, cy)
        a, r = _per_image(part, angle), _per_image(part, radius)
        cos, sin = np.cos(a), np.sin(a)
        u = (cos * dx + sin * dy) / r  # rotate by -angle into the shape's frame
        v = (-sin * dx + cos * dy) / r
        mask = np.empty(u.shape, dtype=np.float32)
        for kind in range(SHAPE_CLASSES):
            these = y[part] == kind
            mask[these] = _inside(kind, u[these], v[these])
        coarse = mask.reshape(-1, SIDE, SUPERSAMPLE, SIDE, SUPERSAMPLE).mean(axis=(2, 4))
        images[out, 0] = coarse * _per_image(part, brightness)
    return _add_noise(images, noise, rng, n, only), (y if only is None else y[only])


def gratings(n: int, noise: float, rng: np.random.Generator,
             only: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sinusoidal gratings whose bars lie at 0, 45, 90 or 135 degrees (the class), with a random
    period of 4-10 px, phase and contrast 0.3-1 around mid-grey.

    In the frame X = column, Y = up, the intensity varies along the normal of the bars,
    (-sin a, cos a): 0 degrees gives horizontal bars (constant rows), 90 vertical bars.
    ``only``: see the module docstring.
    """
    y = balanced_labels(n, len(ORIENTATIONS_DEG))
    angle = np.deg2rad(np.asarray(ORIENTATIONS_DEG))[y]
    period = rng.uniform(4.0, 10.0, n)
    phase = rng.uniform(0.0, 2 * np.pi, n)
    contrast = rng.uniform(0.3, 1.0, n)

    centre = (SIDE - 1) / 2
    coords = np.arange(SIDE, dtype=np.float32) - centre
    images = np.empty((n if only is None else len(only), 1, SIDE, SIDE), dtype=np.float32)
    for out, part in _chunks(n, only):
        a = _per_image(part, angle)
        along_normal = -np.sin(a) * coords[None, None, :] + np.cos(a) * -coords[None, :, None]
        wave = np.sin(2 * np.pi * along_normal / _per_image(part, period) + _per_image(part, phase))
        images[out, 0] = 0.5 + 0.5 * _per_image(part, contrast) * wave
    return _add_noise(images, noise, rng, n, only), (y if only is None else y[only])
