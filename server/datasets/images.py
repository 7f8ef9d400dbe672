"""Real image sets shipped with the package or with scikit-learn: digits, MNIST-5k, photo patches.

Nothing is downloaded. Loaders have the signature ``(spec, n) -> RawData`` and return
float32 ``(N, C, H, W)`` images in [0, 1]. For the fixed sets (digits, mnist) ``n`` is
ignored and ``DataSpec.n_samples`` is applied later as a class-balanced cap; photo
patches are sampled, so ``n`` is how many. Errors carry no culprit: load_dataset adds
the dataset's name.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from ..schemas import DataSpec
from .base import STREAM_GENERATE, DataError, RawData, make_rng

MNIST_PATH = Path(__file__).resolve().parent.parent / "data" / "mnist_5k.npz"
PATCH = 32  # side of a photo patch, in pixels
PHOTO_FILES = ("china.jpg", "flower.jpg")  # class order of photo_patches


def _sklearn_file(*parts: str) -> Path | None:
    """A data file inside the installed scikit-learn, found without importing it (None if absent).

    Importing sklearn.datasets pulls in scipy (~1.5 s), so the files are read directly and
    scikit-learn's public loaders are only the fallback.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent.joinpath(*parts)
    return path if path.is_file() else None


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    path = _sklearn_file("datasets", "data", "digits.csv.gz")
    if path is not None:
        table = np.loadtxt(path, delimiter=",")  # 1797 rows: 64 pixel counts 0..16, then the digit
        pixels, labels = table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    else:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        pixels, labels = bunch.images, bunch.target
    return _frozen((pixels / 16.0).astype(np.float32)[:, None]), _frozen(labels.astype(np.int64))


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    if not MNIST_PATH.is_file():
        raise DataError(
            f"the MNIST subset file is missing ({MNIST_PATH})", "reinstall dlplay, which ships it"
        )
    with np.load(MNIST_PATH, allow_pickle=False) as archive:
        images = archive["images"].astype(np.float32)[:, None] / 255.0
        labels = archive["labels"].astype(np.int64)
    return _frozen(images), _frozen(labels)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)  # cached arrays are shared between loads
    return a


def _rows(images: np.ndarray, labels: np.ndarray, only: np.ndarray | None) -> RawData:
    return RawData(images, labels) if only is None else RawData(images[only], labels[only])


def digits(spec: DataSpec, n: int | None, only: np.ndarray | None = None) -> RawData:
    """scikit-learn's 1,797 8x8 digits (pixel counts 0..16 scaled to [0, 1]) -> (N, 1, 8, 8); ``only``: those rows."""
    return _rows(*_digits_arrays(), only)


def mnist(spec: DataSpec, n: int | None, only: np.ndarray | None = None) -> RawData:
    """5,000 MNIST digits, 500 per class -> (N, 1, 28, 28) in [0, 1]; ``only``: those rows."""
    return _rows(*_mnist_arrays(), only)


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """The two scikit-learn sample photos as uint8 (427, 640, 3) arrays, in PHOTO_FILES order.

    Read with Pillow from scikit-learn's package data; if that fails, through
    ``sklearn.datasets.load_sample_images`` (which needs Pillow too).
    """
    try:
        from PIL import Image
    except ImportError:
        raise DataError(
            "decoding scikit-learn's sample photos needs Pillow, which is not installed",
            "pip install pillow, or pick another dataset",
        ) from None
    paths = [_sklearn_file("datasets", "images", file) for file in PHOTO_FILES]
    try:
        if None in paths:
            raise FileNotFoundError(f"{PHOTO_FILES} not found in scikit-learn's package data")
        photos = []
        for path in paths:
            with Image.open(path) as image:
                photos.append(_frozen(np.asarray(image.convert("RGB"), dtype=np.uint8)))
        return tuple(photos)
    except OSError as direct_error:
        try:
            from sklearn.datasets import load_sample_images

            bunch = load_sample_images()
            by_name = {Path(f).name: img for f, img in zip(bunch.filenames, bunch.images)}
            return tuple(_frozen(np.asarray(by_name[f], dtype=np.uint8)) for f in PHOTO_FILES)
        except Exception as error:  # noqa: BLE001 - report both failures in one clear message
            raise DataError(
                f"cannot read scikit-learn's sample photos ({direct_error}; then {type(error).__name__}: {error})",
                "reinstall scikit-learn, or pick another dataset",
            ) from None


def photo_layout(n: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(n,)`` and the fixed validation mask ``(n,)`` of ``n`` photo patches, without drawing any.

    Photo k gets ``n // 2`` patches (+1 for the first when n is odd), its last
    ``round(val_fraction * count)`` of them for validation (at least one left to train).
    """
    ys, vals = [], []
    for label in range(len(PHOTO_FILES)):
        count = n // 2 + (1 if label < n % 2 else 0)
        n_val = int(round(val_fraction * count))
        if 0 < n_val == count:
            n_val = count - 1  # keep at least one training patch per photo
        ys.append(np.full(count, label, dtype=np.int64))
        vals.append(np.arange(count) >= count - n_val)
    return np.concatenate(ys), np.concatenate(vals)


def photo_patches(spec: DataSpec, n: int | None, only: np.ndarray | None = None) -> RawData:
    """``n`` random 32x32 RGB patches, half from each photo, labelled by photo -> (n, 3, 32, 32).

    Validation patches come from the right-hand ``val_fraction`` of each photo's width and
    training patches from the rest, so no validation patch overlaps a training patch
    (random patches of one photo overlap heavily, which would let a network memorise).
    ``only`` (sorted indices): cut just those patches of the n, exactly as the full set has
    them (the patch positions are drawn for all n: two integers each).
    """
    assert n is not None
    rng = make_rng(spec.seed, STREAM_GENERATE)
    y, is_val = photo_layout(n, spec.val_fraction)
    xs, offset = [], 0
    for label, photo in enumerate(_photos()):
        height, width, _ = photo.shape
        count = int((y == label).sum())
        n_val = int(is_val[offset:offset + count].sum())
        boundary = width if n_val == 0 else int(np.clip(round(width * (1 - spec.val_fraction)), PATCH, width - PATCH))
        # Leftmost patch column: training patches lie in [0, boundary), validation ones in [boundary, width).
        left = np.concatenate([
            rng.integers(0, boundary - PATCH + 1, size=count - n_val),
            rng.integers(boundary, width - PATCH + 1, size=n_val),
        ])
        top = rng.integers(0, height - PATCH + 1, size=count)
        if only is not None:  # this photo's share of the chosen patches
            mine = only[(only >= offset) & (only < offset + count)] - offset
            left, top = left[mine], top[mine]
        windows = np.lib.stride_tricks.sliding_window_view(photo, (PATCH, PATCH), axis=(0, 1))  # (H', W', 3, P, P)
        xs.append(windows[top, left])
        offset += count
    x = np.concatenate(xs).astype(np.float32)
    x /= 255.0  # in place: at 200,000 patches every float copy is 2.4 GB
    if only is not None:
        y, is_val = y[only], is_val[only]
    return RawData(x, y, is_val=is_val)
