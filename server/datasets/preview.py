"""A first look at a dataset for the page: a few training examples as plain arrays (no JSON, no PNG)."""

from __future__ import annotations

from .base import Dataset

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
