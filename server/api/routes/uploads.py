"""POST/GET/DELETE /api/uploads: a CSV or NPZ file of the user's own examples becomes dataset ``upload:<id>``.

The work is the upload store's (``server/uploads.py``): the body streams to disk with the
byte limit enforced as it arrives (413 as soon as it passes, Content-Length or not), a
CSV's rows are counted as they arrive, an NPZ is measured from its array headers, and
only then is the file parsed (without unpickling anything; ``server.datasets.uploads``).
Uploads belong to the session that made them: each session lists and uses its own, and
another session's id answers 404 like a missing one. They count against per-session and
server-wide quotas (429 / 507 when full) and expire after ``upload_max_age_seconds``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from server.api.deps import get_session_id, get_uploads
from server.api.openapi import errors
from server.classroom import ClassError
from server.uploads import UploadError, UploadRecord, UploadStore

router = APIRouter(tags=["uploads"])


def _owned(uploads: UploadStore, session_id: str, upload_id: str) -> UploadRecord:
    record = uploads.get(session_id, upload_id)
    if record is None:
        raise HTTPException(status_code=404, detail=f"no such upload in this session: {upload_id[:40]!r} (it may have expired)")
    return record


@router.post(
    "/uploads",
    responses=errors(400, 413),
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
async def upload(request: Request, uploads: UploadStore = Depends(get_uploads),
                 session_id: str = Depends(get_session_id)) -> Any:
    classroom = request.app.state.classroom
    member = classroom.member_of_session(session_id)
    if member is not None:  # a class member keeps at most the class's quota of files (issue 10)
        try:
            classroom.check_upload(member, len(uploads.list(session_id)))
        except ClassError as error:
            return JSONResponse(status_code=error.status, content={"detail": error.message, "code": error.code})
    try:
        record = await uploads.add(session_id, request.stream(), request.headers.get("content-type", ""),
                                   declared_length=request.headers.get("content-length"))
    except UploadError as error:
        raise HTTPException(status_code=error.status, detail=error.detail) from None
    return record.to_dict()


@router.get("/uploads", summary="This session's uploads, oldest first")
def list_uploads(uploads: UploadStore = Depends(get_uploads),
                 session_id: str = Depends(get_session_id)) -> list[dict[str, Any]]:
    return [record.to_dict() for record in uploads.list(session_id)]


@router.get("/uploads/{upload_id}", responses=errors(404), summary="One of this session's uploads")
def get_upload(upload_id: str, uploads: UploadStore = Depends(get_uploads),
               session_id: str = Depends(get_session_id)) -> dict[str, Any]:
    return _owned(uploads, session_id, upload_id).to_dict()


@router.delete("/uploads/{upload_id}", responses=errors(404), summary="Delete one of this session's uploads (frees its quota)")
def delete_upload(upload_id: str, uploads: UploadStore = Depends(get_uploads),
                  session_id: str = Depends(get_session_id)) -> dict[str, Any]:
    _owned(uploads, session_id, upload_id)
    uploads.delete(session_id, upload_id)  # the app's store also drops it from the dataset cache
    return {"deleted": upload_id}
