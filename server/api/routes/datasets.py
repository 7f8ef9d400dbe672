"""GET /api/datasets and /api/datasets/{name}/preview: what the data looks like before training."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query

from server import protocol
from server.api.deps import DatasetCache, get_datasets, get_store
from server.datasets import DATASETS, DataError, preview
from server.schemas import DataSpec
from server.store import Store

router = APIRouter(tags=["datasets"])

MAX_PREVIEW = 256  # examples per preview: a page of thumbnails, not a download


@router.get("/datasets", summary="The built-in datasets")
def datasets() -> list[dict[str, Any]]:
    return [info.to_dict() for info in DATASETS.values()]


@router.get("/datasets/{name}/preview", summary="The first n training examples: PNG images or 2D points")
def dataset_preview(
    name: str,
    n: int = Query(64, ge=1, le=MAX_PREVIEW, description="how many examples"),
    seed: int = Query(0, description="the data spec's seed (generated sets differ per seed)"),
    noise: float | None = Query(None, ge=0.0, le=10.0, description="generated sets: noise level"),
    n_samples: int | None = Query(None, ge=4, le=200_000, description="generated sets: how many to make"),
    cache: DatasetCache = Depends(get_datasets),
    store: Store = Depends(get_store),
) -> dict[str, Any]:
    spec = DataSpec(name=name, seed=seed, **{k: v for k, v in (("noise", noise), ("n_samples", n_samples)) if v is not None})
    try:
        dataset = cache.get(spec, store.uploads_dir)
    except DataError as error:
        raise HTTPException(status_code=404 if error.problem == "no such dataset" else 400, detail=str(error)) from None
    view = preview(dataset, n)
    out: dict[str, Any] = {
        "name": dataset.name, "kind": view["kind"], "classes": view["classes"], "labels": view["labels"],
        "input_shape": list(dataset.input_shape), "n_train": dataset.n_train, "n_val": dataset.n_val,
    }
    if view["kind"] == "image":
        out["images"] = [protocol.encode_image(image) for image in view["images"]]
    elif view["kind"] == "2d":
        out["points"] = protocol.jsonable(view["points"])
    else:
        out["rows"] = protocol.jsonable(view["rows"])
    return out
