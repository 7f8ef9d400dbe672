"""FastAPI dependencies: the app's settings, store, scheduler, dataset cache and uploads, and the caller's session.

Everything lives on ``app.state`` (set by ``server.app.create_app`` and its
lifespan), never in module globals, so a test can build as many apps as it likes.
"""

from __future__ import annotations

from fastapi import HTTPException, Request

from server.config import Settings
from server.data_cache import DatasetCache  # re-exported: it lived here before server/data_cache.py
from server.scheduler import Scheduler
from server.sessions import request_session
from server.store import RunRecord, Store
from server.uploads import UploadStore


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_scheduler(request: Request) -> Scheduler:
    return request.app.state.scheduler


def get_datasets(request: Request) -> DatasetCache:
    return request.app.state.datasets


def get_uploads(request: Request) -> UploadStore:
    return request.app.state.uploads


def get_session_id(request: Request) -> str:
    """The caller's session: its cookie's, else one issued now (429 past the address's limit; server/sessions.py)."""
    return request_session(request)


def owned_run(store: Store, session_id: str, run_id: str) -> RunRecord:
    """A run of this session, or 404: another session's run is indistinguishable from a missing one."""
    record = store.get_run(run_id)
    if record is None or record.session_id != session_id:
        raise HTTPException(status_code=404, detail=f"no run {run_id!r} in this session")
    return record
