"""POST /api/uploads: a CSV or NPZ file of the user's own examples becomes dataset ``upload:<id>``.

The size limit is enforced while the body streams in: an oversized upload is
refused with 413 as soon as it passes the limit, before it is stored anywhere.
Files are parsed without unpickling anything (see ``server.datasets.uploads``).
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from server.api.deps import get_settings, get_store
from server.config import Settings
from server.datasets import UPLOAD_PREFIX, DataError, parse_upload, save_upload
from server.store import Store

router = APIRouter(tags=["uploads"])

# Room for the multipart envelope (boundaries, part headers) around the file itself.
MULTIPART_OVERHEAD = 64 * 1024  # bytes


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status_code=413,
        detail=f"the upload is larger than the limit of {limit:,} bytes ({limit / 1024**2:.0f} MB). "
        "Fix: upload fewer examples, or save an NPZ with numpy.savez_compressed",
    )


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body, failing with 413 once more than ``limit`` bytes have arrived."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit - MULTIPART_OVERHEAD)
        yield chunk


@router.post(
    "/uploads",
    summary="Upload a .csv or .npz dataset (multipart field 'file')",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}},
            }}},
        }
    },
)
async def upload(request: Request, settings: Settings = Depends(get_settings),
                 store: Store = Depends(get_store)) -> dict[str, Any]:
    limit = settings.max_upload_bytes
    if "multipart/form-data" not in request.headers.get("content-type", ""):
        raise HTTPException(status_code=400, detail="send the file as multipart/form-data in a field named 'file'")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise _too_large(limit)
    parser = MultiPartParser(request.headers, _limited(request, limit + MULTIPART_OVERHEAD),
                             max_files=1, max_fields=8, max_part_size=64 * 1024)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise HTTPException(status_code=400, detail=f"could not read the upload: {error.message}") from None
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise HTTPException(status_code=400, detail="no file in the upload. Fix: send it in a field named 'file'")
        if file.size is not None and file.size > limit:
            raise _too_large(limit)
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise _too_large(limit)
        filename = file.filename or "upload"
    finally:
        await form.close()
    try:
        uploaded = await run_in_threadpool(
            parse_upload, filename, data, max_bytes=limit, max_examples=settings.max_upload_examples)
        upload_id = await run_in_threadpool(save_upload, uploaded, store.uploads_dir)
    except DataError as error:
        raise HTTPException(status_code=400, detail=str(error)) from None
    return {
        "id": upload_id,
        "name": f"{UPLOAD_PREFIX}{upload_id}",
        "filename": uploaded.filename or filename,
        "kind": uploaded.kind,
        "input_shape": list(uploaded.input_shape),
        "classes": list(uploaded.classes),
        "n": uploaded.n,
        "notes": list(uploaded.notes),
    }
