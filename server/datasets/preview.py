"""A first look at a dataset for the page: a few training examples as plain arrays (no JSON, no PNG).

`preview` shows the first examples of a Dataset already loaded; `preview_spec` shows the
same examples of a DataSpec without loading it: it finds which examples come first from
the labels alone (`split_plan`) and makes only those, so "the first 64 of 87,000 photo
patches" costs 64 patches, not a gigabyte.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..schemas import DataSpec
from .base import Dataset, split_plan
from .catalog import DATASETS, _info, _load_raw, examples_to_make
from .uploads import UPLOAD_PREFIX, kind_of, load_upload

DEFAULT_PREVIEW = 64  # examples; the training order is class-interleaved, so the first 64 show every class


def preview(dataset: Dataset, n: int = DEFAULT_PREVIEW) -> dict:
    """The first ``n`` training examples, preprocessing undone.

    Returns for images ``{"kind": "image", "images": uint8 (n, H, W, C), "labels", "classes"}``,
    for 2d ``{"kind": "2d", "points": float32 (n, 2), "labels", "classes"}`` and for tabular
    ``{"kind": "tabular", "rows": float32 (n, F), "labels", "classes"}``; labels are a list of ints.
    """
    n = max(0, min(int(n), dataset.n_train))
    x = dataset.x_train[:n]
    result = {"kind": dataset.kind, "labels": dataset.y_train[:n].tolist(), "classes": list(dataset.classes)}
    if dataset.kind == "image":
        result["images"] = dataset.display_images(x).cpu().numpy()
    else:
        key = "points" if dataset.kind == "2d" else "rows"
        result[key] = dataset.denormalize(x).cpu().numpy()
    return result


def preview_spec(spec: DataSpec, n: int = DEFAULT_PREVIEW, *, uploads_dir: Path | None = None) -> dict:
    """What ``preview(load_dataset(spec), n)`` shows, making only the ``n`` examples shown.

    The examples are the raw ones (before preprocessing), so they equal the full set's
    first ``n`` training examples exactly; ``preview`` of a preprocessed set shows them
    back through float32 normalize/denormalize (images: the same uint8 pixels up to rounding).
    Returns ``preview``'s keys plus ``name``, ``input_shape``, ``n_train`` and ``n_val``.
    Raises DataError like ``load_dataset`` (unknown name, missing upload, a set too large).
    Uploads are read whole (a stored upload is bounded by the upload limits); the
    generated and built-in sets make or copy nothing beyond the chosen examples and
    every example's label (8 bytes each).
    """
    if spec.name.startswith(UPLOAD_PREFIX):
        uploaded = load_upload(spec.name.removeprefix(UPLOAD_PREFIX), uploads_dir)
        name, kind, classes, input_shape = spec.name, kind_of(uploaded.input_shape), uploaded.classes, uploaded.input_shape
        labels, fixed_val, cap = uploaded.y, None, spec.n_samples

        def make(rows: np.ndarray) -> np.ndarray:
            return uploaded.x[rows]
    else:
        info = _info(spec.name)
        name, kind, classes, input_shape = info.name, info.kind, list(info.classes), info.input_shape
        total = examples_to_make(spec, info)
        labels, fixed_val = info.labeller(spec, total)
        cap = None if info.generated else spec.n_samples

        def make(rows: np.ndarray) -> np.ndarray:
            raw = _load_raw(info, spec, total, rows)
            if not np.array_equal(raw.y, labels[rows]):  # the labeller and the loader must agree
                raise RuntimeError(f"dataset '{info.name}': the labels of the chosen examples do not match")
            return raw.x

    train_idx, val_idx = split_plan(labels, fixed_val, seed=spec.seed, val_fraction=spec.val_fraction, cap=cap,
                                    train_subset=spec.train_subset)
    shown = train_idx[:max(0, int(n))]
    order = np.argsort(shown, kind="stable")  # loaders take sorted indices; put the examples back in training order
    x = np.empty((len(shown), *input_shape), dtype=np.float32)
    x[order] = make(shown[order])
    result: dict = {
        "name": name, "kind": kind, "labels": labels[shown].tolist(), "classes": list(classes),
        "input_shape": list(input_shape), "n_train": len(train_idx), "n_val": len(val_idx),
    }
    if kind == "image":
        pixels = (torch.from_numpy(x).clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
        result["images"] = pixels.permute(0, 2, 3, 1).contiguous().numpy()
    else:
        result["points" if kind == "2d" else "rows"] = x
    return result
