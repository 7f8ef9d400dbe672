"""Export a run (``GET /api/runs/{id}/export?format=...``) and upload weights to start from (``POST /api/weights``).

``GET /api/export/formats`` lists the formats with whether this server can make
them: onnx and the notebook need the optional ``dlplay[export]`` packages, and an
unavailable format says what to install. Code exports (pytorch, notebook) work for
any run, since they train from scratch; trained formats (onnx, torchscript,
safetensors) need the weights a run saves when it ends.

An uploaded weights file is checked (safetensors, never a pickle) and stored in
the uploads directory by content hash; ``train.init_from = {"upload_id": id}``
then starts a run from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from server.api.deps import get_session_id, get_store, owned_run
from server.api.openapi import errors
from server.datasets.images import MNIST_PATH
from server.export import FORMATS, ExportError, check_format, export_file
from server.export.weights import WeightsError, save_weights_upload, temporary_weights_file
from server.schemas import Experiment
from server.store import Store

router = APIRouter(tags=["export"])

# Weights are bigger than datasets: the largest network the server trains (settings.max_params, 50 M
# float32 parameters) is 200 MB. Uploads stream to disk, never into memory whole.
MAX_WEIGHTS_BYTES = 256 * 1024**2  # bytes


@router.get("/export/formats", summary="Export formats, and whether this server can make each (what to install if not)")
def formats() -> list[dict[str, Any]]:
    return [info.to_dict() for info in FORMATS.values()]


def _status(error: ExportError) -> int:
    return {"missing_package": 501, "unknown_format": 400}.get(error.code, 400)


@router.get(
    "/runs/{run_id}/export",
    summary="Download a run as PyTorch code, a notebook, ONNX, TorchScript or safetensors",
    responses={200: {"content": {"application/octet-stream": {}}}, **errors(400, 404, 409, 501)},
)
async def export_run(
    run_id: str,
    request: Request,
    format: str = Query(..., description="pytorch | notebook | onnx | torchscript | safetensors"),
    session_id: str = Depends(get_session_id),
    store: Store = Depends(get_store),
) -> Response:
    record = owned_run(store, session_id, run_id)
    try:
        info = check_format(format)
    except ExportError as error:
        raise HTTPException(status_code=_status(error), detail=str(error)) from None
    weights = None
    if info.trained:
        weights = Path(record.weights_path) if record.weights_path else None
        if weights is None or not weights.is_file():
            raise HTTPException(
                status_code=409,
                detail=f"run {run_id} ({record.status}) has no saved weights yet. Fix: wait until it finishes or "
                "stop it (weights are saved when a run ends; failed runs keep none); the pytorch and notebook "
                "exports work for any run",
            )
    try:
        experiment = Experiment.model_validate(record.experiment)
        data_url = None if info.trained else str(request.url_for("mnist_file"))
        exported = await run_in_threadpool(
            _export_one_at_a_time, request.app.state.export_lock, format, experiment,
            weights=weights, run_id=run_id, uploads_dir=store.uploads_dir, data_url=data_url)
    except ValueError as error:  # ExportError, WeightsError, NetworkError, DataError: say what is wrong
        raise HTTPException(status_code=_status(error) if isinstance(error, ExportError) else 400,
                            detail=str(error)) from None
    filename = exported.filename
    return Response(
        content=exported.content,
        media_type=exported.media_type,
        headers={"Content-Disposition": f"attachment; filename=\"{filename}\"; filename*=UTF-8''{quote(filename)}"},
    )


@router.get("/export/data/mnist_5k.npz", responses={200: {"content": {"application/octet-stream": {}}}, **errors(404)},
            name="mnist_file",
            summary="The MNIST-5k file the exported code of an MNIST run reads (5,000 digits, CC BY-SA 3.0)")
def mnist_file() -> FileResponse:
    if not MNIST_PATH.is_file():
        raise HTTPException(status_code=404, detail="this dlplay install has no MNIST file. Fix: reinstall dlplay")
    return FileResponse(MNIST_PATH, media_type="application/octet-stream", filename="mnist_5k.npz")


def _export_one_at_a_time(lock, format_name: str, experiment: Experiment, **kwargs: Any):
    """ONNX export takes seconds of CPU and the trainers share the cores: one export at a time per server."""
    with lock:
        return export_file(format_name, experiment, **kwargs)


@router.post(
    "/weights",
    responses=errors(400, 413),
    summary="Upload a .safetensors weights file to start a run from (train.init_from.upload_id)",
    openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}}},
)
async def upload_weights(request: Request, store: Store = Depends(get_store)) -> dict[str, Any]:
    """The body is the file itself (``Content-Type: application/octet-stream``), at most MAX_WEIGHTS_BYTES.

    Returns ``{id, tensors, parameters, layers, experiment, init_from}``: ``experiment`` is the
    document a dlplay export carries (None for other files), ``init_from`` the value to put in
    ``train.init_from``.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_WEIGHTS_BYTES:
        raise _too_large()
    path = temporary_weights_file(store.uploads_dir)
    try:
        received = 0
        with open(path, "wb") as stream:
            async for chunk in request.stream():
                received += len(chunk)
                if received > MAX_WEIGHTS_BYTES:
                    raise _too_large()
                stream.write(chunk)
        if received == 0:
            raise HTTPException(status_code=400, detail="the upload is empty. Fix: send the .safetensors file as the body")
        upload = await run_in_threadpool(save_weights_upload, path, store.uploads_dir)
    except WeightsError as error:
        raise HTTPException(status_code=400, detail=str(error)) from None
    finally:
        path.unlink(missing_ok=True)  # moved into place on success; a leftover on any failure
    return upload.to_dict()


def _too_large() -> HTTPException:
    return HTTPException(
        status_code=413,
        detail=f"the weights file is larger than {MAX_WEIGHTS_BYTES // 1024**2} MB. Fix: dlplay trains smaller "
        "networks; export the weights of a dlplay run",
    )
