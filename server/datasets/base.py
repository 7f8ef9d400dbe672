"""The Dataset container, DataError, and the splitting and preprocessing every family shares.

A family module (synthetic2d, images, generated, uploads) produces a `RawData`: all
examples as numpy arrays, images in [0, 1]. `assemble` turns that into a `Dataset`:
cap -> stratified train/validation split -> train subset -> preprocessing from
training statistics -> float32/int64 tensors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

Kind = Literal["2d", "image", "tabular"]
KINDS: tuple[str, ...] = ("2d", "image", "tabular")

# Independent random streams derived from DataSpec.seed, so that changing the split
# (val_fraction) never changes the generated points, and vice versa.
STREAM_GENERATE = 0
STREAM_SPLIT = 1
STREAM_CAP = 2

# A training std below this is treated as 1 (constant pixel/feature): dividing by ~0
# would turn float noise into huge inputs.
MIN_STD = 1e-6


class DataError(ValueError):
    """A data problem a user caused; the message names the culprit, the problem and the fix.

    ``str(e) == "<culprit>: <problem>. Fix: <fix>"`` (culprit and fix when given).
    """

    def __init__(self, problem: str, fix: str | None = None, *, culprit: str | None = None):
        self.culprit = culprit
        self.problem = problem
        self.fix = fix
        message = problem if culprit is None else f"{culprit}: {problem}"
        if fix:
            message += f". Fix: {fix}"
        super().__init__(message)


@dataclass(eq=False)
class Dataset:
    """Train and validation tensors of one dataset, preprocessed, on one device.

    x_train/x_val: float32 ``(N, *input_shape)``; images are ``(N, C, H, W)`` and lie in
    [0, 1] before preprocessing. y_train/y_val: int64 class indices ``(N,)``.
    mean/std: the preprocessing that was applied, ``(C,)`` per channel for images and
    ``(F,)`` per feature otherwise, computed on the training split only:
    ``x = (raw - mean) / std`` ("standardize"), ``x = raw - mean`` ("center", std None),
    both None for "none". The training examples are ordered so that every prefix holds
    the classes in about their overall proportions (``train_subset`` relies on it).
    """

    name: str
    kind: Kind
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    classes: list[str]
    input_shape: tuple[int, ...]
    mean: Tensor | None
    std: Tensor | None
    source: str
    licence: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_val(self) -> int:
        return int(self.x_val.shape[0])

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def to(self, device: torch.device | str) -> Dataset:
        """A copy with every tensor (data and statistics) on ``device``."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return dataclasses.replace(
            self,
            x_train=self.x_train.to(device), y_train=self.y_train.to(device),
            x_val=self.x_val.to(device), y_val=self.y_val.to(device),
            mean=move(self.mean), std=move(self.std),
        )

    def _stat(self, t: Tensor, x: Tensor) -> Tensor:
        # (C,) -> (1, C, 1, 1) for images; (F,) -> (1, F) otherwise.
        shape = (1, -1) + (1,) * (len(self.input_shape) - 1)
        return t.to(device=x.device, dtype=x.dtype).reshape(shape)

    def normalize(self, raw: Tensor) -> Tensor:
        """Apply this dataset's preprocessing to raw inputs ``(N, *input_shape)`` (e.g. a drawn digit in [0, 1])."""
        x = raw.float()
        if self.mean is not None:
            x = x - self._stat(self.mean, x)
        if self.std is not None:
            x = x / self._stat(self.std, x)
        return x

    def denormalize(self, x: Tensor) -> Tensor:
        """Undo the preprocessing: ``(N, *input_shape)`` network inputs -> raw values (images in [0, 1])."""
        x = x.float()
        if self.std is not None:
            x = x * self._stat(self.std, x)
        if self.mean is not None:
            x = x + self._stat(self.mean, x)
        return x

    def display_images(self, x: Tensor) -> Tensor:
        """Network inputs ``(N, C, H, W)`` -> displayable uint8 ``(N, H, W, C)``, preprocessing undone.

        Values are clamped to [0, 1] first, so augmentation noise or padding cannot wrap around.
        """
        if self.kind != "image":
            raise DataError(
                f"is {self.kind} data, not images", "show it as points or a table", culprit=f"dataset '{self.name}'"
            )
        if x.dim() != 4:
            raise ValueError(f"display_images expects (N, C, H, W), got shape {tuple(x.shape)}")
        raw = self.denormalize(x.detach()).clamp(0.0, 1.0)
        return (raw * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, kind={self.kind!r}, input_shape={self.input_shape}, "
            f"classes={len(self.classes)}, n_train={self.n_train}, n_val={self.n_val}, "
            f"preprocessed={self.mean is not None}, device={self.device})"
        )


@dataclass
class RawData:
    """Every example of one dataset before splitting.

    x: float32 ``(N, *input_shape)``, images in [0, 1]; y: int64 ``(N,)`` class indices.
    is_val: a fixed validation mask when the family must split itself (photo patches
    come from disjoint image regions so that validation patches never overlap training
    ones); None for a random stratified split.
    """

    x: np.ndarray
    y: np.ndarray
    is_val: np.ndarray | None = None


def make_rng(seed: int, stream: int) -> np.random.Generator:
    """A numpy generator for one stream of one seed; any Python int (negative too) is a valid seed."""
    return np.random.default_rng([seed & (2**64 - 1), stream])


def balanced_labels(n: int, num_classes: int) -> np.ndarray:
    """``n`` labels with class counts differing by at most one: 0, 1, ..., k-1, 0, 1, ..."""
    return np.arange(n, dtype=np.int64) % num_classes


def stratified_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of ``range(len(y))`` whose every prefix holds each class in about its overall share.

    Each class is shuffled, and its k-th member gets the key (k + u) / n_class, u ~ U[0, 1);
    sorting by key interleaves the classes evenly (so "train on the first 20" gets 2 of each digit).
    """
    keys = np.empty(len(y), dtype=np.float64)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        members = members[rng.permutation(len(members))]
        keys[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return np.argsort(keys, kind="stable")


def validation_counts(class_counts: np.ndarray, val_fraction: float) -> np.ndarray:
    """Per-class validation sizes summing to round(val_fraction * N) (largest remainders), leaving >= 1 per class to train."""
    exact = val_fraction * class_counts
    counts = np.floor(exact).astype(np.int64)
    missing = int(round(val_fraction * class_counts.sum())) - int(counts.sum())
    if missing > 0:
        by_remainder = np.argsort(-(exact - counts), kind="stable")
        counts[by_remainder[:missing]] += 1
    return np.minimum(counts, np.maximum(class_counts - 1, 0))


def split_indices(y: np.ndarray, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified random split -> (train indices, validation indices), each in `stratified_order`."""
    classes, counts = np.unique(y, return_counts=True)
    n_val = validation_counts(counts, val_fraction)
    is_val = np.zeros(len(y), dtype=bool)
    for c, k in zip(classes, n_val):
        members = np.flatnonzero(y == c)
        is_val[rng.choice(members, size=int(k), replace=False)] = True
    return _ordered_parts(y, is_val, rng)


def _ordered_parts(y: np.ndarray, is_val: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    train, val = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    return train[stratified_order(y[train], rng)], val[stratified_order(y[val], rng)]


def channel_stats(x: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """Per-channel (images, over N, H, W) or per-feature (over N) mean and population std (correction 0).

    Computed in float64 and returned as float32; a std below MIN_STD becomes 1.
    """
    dims = (0, 2, 3) if kind == "image" else (0,)
    x64 = x.double()
    mean = x64.mean(dim=dims)
    std = x64.std(dim=dims, correction=0) if x.shape[0] > 0 else torch.ones_like(mean)
    std = torch.where(std < MIN_STD, torch.ones_like(std), std)
    return mean.float(), std.float()


def split_plan(
    y: np.ndarray,
    is_val: np.ndarray | None,
    *,
    seed: int,
    val_fraction: float,
    cap: int | None = None,
    train_subset: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Which examples train and which validate: (train indices, validation indices) into the full ``y`` (N,).

    Only the labels are needed, never the examples: so a preview can find "the first n
    training examples" of a large generated set and make only those. Cap (class-balanced),
    then stratified split (or the family's fixed ``is_val`` mask), then the first
    ``train_subset`` training examples; both index arrays are in `stratified_order`.
    """
    keep = None
    if cap is not None and cap < len(y):
        keep = np.sort(stratified_order(y, make_rng(seed, STREAM_CAP))[:cap])
        y = y[keep]
        is_val = None if is_val is None else is_val[keep]
    split_rng = make_rng(seed, STREAM_SPLIT)
    if is_val is None:
        train_idx, val_idx = split_indices(y, val_fraction, split_rng)
    else:
        train_idx, val_idx = _ordered_parts(y, is_val, split_rng)
    if train_subset is not None:
        train_idx = train_idx[:train_subset]
    if keep is not None:
        train_idx, val_idx = keep[train_idx], keep[val_idx]
    return train_idx, val_idx


def dataset_nbytes(dataset: Dataset) -> int:
    """Bytes held by a dataset's tensors (examples, labels and statistics): what a cache of it costs."""
    tensors = (dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val, dataset.mean, dataset.std)
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def assemble(
    raw: RawData,
    *,
    name: str,
    kind: Kind,
    classes: list[str],
    input_shape: tuple[int, ...],
    source: str,
    licence: str,
    seed: int,
    val_fraction: float,
    cap: int | None = None,
    train_subset: int | None = None,
    preprocessing: str = "none",
) -> Dataset:
    """RawData -> Dataset: cap (class-balanced), split, keep the first ``train_subset``, preprocess from training stats.

    Memory: at most the raw examples plus one float32 copy of the kept ones at a time
    (preprocessing works in place on the fresh train/validation tensors).
    """
    x, y = raw.x, raw.y
    if x.shape[0] != y.shape[0] or tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(f"{name}: raw data {x.shape}/{y.shape} does not match input shape {input_shape}")
    if preprocessing not in ("none", "center", "standardize"):
        raise DataError(
            f"unknown preprocessing '{preprocessing}'", "use none, center or standardize", culprit=f"dataset '{name}'"
        )
    train_idx, val_idx = split_plan(y, raw.is_val, seed=seed, val_fraction=val_fraction, cap=cap,
                                    train_subset=train_subset)
    x_train = torch.from_numpy(np.ascontiguousarray(x[train_idx], dtype=np.float32))
    x_val = torch.from_numpy(np.ascontiguousarray(x[val_idx], dtype=np.float32))
    y_train = torch.from_numpy(np.ascontiguousarray(y[train_idx], dtype=np.int64))
    y_val = torch.from_numpy(np.ascontiguousarray(y[val_idx], dtype=np.int64))

    mean = std = None
    if preprocessing in ("center", "standardize"):
        mean, std = channel_stats(x_train, kind)
        if preprocessing == "center":
            std = None
    dataset = Dataset(
        name=name, kind=kind, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
        classes=list(classes), input_shape=tuple(int(s) for s in input_shape),
        mean=mean, std=std, source=source, licence=licence,
    )
    if mean is not None:
        # In place on tensors nobody else holds yet: the same arithmetic as Dataset.normalize
        # (subtract, then divide, in float32), without a second copy of a large set.
        for x_part in (x_train, x_val):
            x_part.sub_(dataset._stat(mean, x_part))
            if std is not None:
                x_part.div_(dataset._stat(std, x_part))
    return dataset
