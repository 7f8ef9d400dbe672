"""GET /api/datasets and /api/datasets/{name}/preview: what the data looks like before training.

A preview makes only the examples it shows (``preview_spec``), or reads them from the
dataset cache when the spec is loaded already; it never adds to the cache, so a plain
GET cannot pin memory. A spec too large to train on is refused here as in validation.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query

from server import protocol
from server.api.deps import DatasetCache, get_datasets, get_session_id, get_store, get_uploads
from server.api.openapi import errors
from server.data_cache import DatasetBusy, DatasetTooLarge
from server.datasets import DATASETS, UPLOAD_PREFIX, DataError, preview
from server.datasets.catalog import dataset_bytes
from server.datasets.preview import preview_spec
from server.isolation import run_aside
from server.schemas import DataSpec
from server.store import Store
from server.uploads import UploadStore

router = APIRouter(tags=["datasets"])

# Previews being made at once, process-wide (the CPU is): the rest wait up to PREVIEW_WAIT_SECONDS, then 503.
_PREVIEW_SLOT = threading.BoundedSemaphore(1)
PREVIEW_WAIT_SECONDS = 10.0
MAX_PREVIEW = 256  # examples per preview: a page of thumbnails, not a download


@router.get("/datasets", summary="The built-in datasets")
def datasets() -> list[dict[str, Any]]:
    return [info.to_dict() for info in DATASETS.values()]


def data_http_error(error: DataError) -> HTTPException:
    """A DataError as HTTP: 404 for a missing dataset or upload, 413 too large, 503 busy, else 400."""
    if isinstance(error, DatasetTooLarge):
        status = 413
    elif isinstance(error, DatasetBusy):
        status = 503
    elif error.problem.startswith("no such"):
        status = 404
    else:
        status = 400
    return HTTPException(status_code=status, detail=str(error))


def _make_preview(spec: dict[str, Any], n: int, uploads_dir: Any) -> dict[str, Any] | tuple[str, str | None, str | None]:
    """``preview_spec`` for the helper process; a DataError comes back as (problem, fix, culprit), which pickles."""
    try:
        return preview_spec(DataSpec.model_validate(spec), n, uploads_dir=uploads_dir)
    except DataError as error:
        return (error.problem, error.fix, error.culprit)


@router.get("/datasets/{name}/preview", responses=errors(400, 404, 413, 503), summary="The first n training examples: PNG images or 2D points")
def dataset_preview(
    name: str,
    n: int = Query(64, ge=1, le=MAX_PREVIEW, description="how many examples"),
    seed: int = Query(0, description="the data spec's seed (generated sets differ per seed)"),
    noise: float | None = Query(None, ge=0.0, le=10.0, description="generated sets: noise level"),
    n_samples: int | None = Query(None, ge=4, le=200_000, description="generated sets: how many to make"),
    cache: DatasetCache = Depends(get_datasets),
    store: Store = Depends(get_store),
    uploads: UploadStore = Depends(get_uploads),
    session_id: str = Depends(get_session_id),
) -> dict[str, Any]:
    spec = DataSpec(name=name, seed=seed, **{k: v for k, v in (("noise", noise), ("n_samples", n_samples)) if v is not None})
    try:
        uploads.check_access(spec, session_id)  # another session's upload is a missing one
        cache.estimate(spec, store.uploads_dir)  # a set too large to train on is not previewed either
        dataset = cache.peek(spec)
        if dataset is not None:
            view = preview(dataset, n)
            view.update(name=dataset.name, input_shape=list(dataset.input_shape), n_train=dataset.n_train,
                        n_val=dataset.n_val)
        else:
            # Generated and built-in sets make only the n examples shown; an upload is read whole (a large one
            # waits its turn with the large loads).
            cost = dataset_bytes(spec, uploads_dir=store.uploads_dir) if name.startswith(UPLOAD_PREFIX) else 0
            # One preview is made at a time: a flood of them (any page can fire GETs) then takes at most one
            # core from training, however many arrive (bench/bench_abuse.py, preview_flood).
            if not _PREVIEW_SLOT.acquire(timeout=PREVIEW_WAIT_SECONDS):
                raise HTTPException(status_code=503, detail="the server is busy making other previews; try again "
                                    "in a moment")
            try:
                with cache.large_load(cost, name):
                    # In a helper process at low priority: the examples are made without this process's
                    # interpreter lock, which the workers handing out run slices need (server/isolation.py).
                    outcome = run_aside(_make_preview, spec.model_dump(mode="json"), n, store.uploads_dir)
            finally:
                _PREVIEW_SLOT.release()
            if isinstance(outcome, tuple):
                problem, fix, culprit = outcome
                raise DataError(problem, fix, culprit=culprit)
            view = outcome
    except DataError as error:
        raise data_http_error(error) from None
    out: dict[str, Any] = {key: view[key] for key in
                           ("name", "kind", "classes", "labels", "input_shape", "n_train", "n_val")}
    if view["kind"] == "image":
        out["images"] = [protocol.encode_image(image) for image in view["images"]]
    elif view["kind"] == "2d":
        out["points"] = protocol.jsonable(view["points"])
    else:
        out["rows"] = protocol.jsonable(view["rows"])
    return out
