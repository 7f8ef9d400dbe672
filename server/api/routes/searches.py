"""Hyperparameter searches (lesson 21): start one, follow it, stop it (REST; trials are ordinary runs on /ws).

``POST /api/searches`` takes a ``SearchSpec`` (strategy, log-scale ranges for lr and l2, trials,
steps, an optional fine stage, the base experiment) and answers the new search; ``GET
/api/searches/{id}`` answers its trials (each with its run id, for ``subscribe`` on the
websocket), status and best trial; ``DELETE`` stops it. A search belongs to the session that
started it: another session gets 404, as for runs. See ``server/search_runner.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from server.api.deps import (DatasetCache, get_datasets, get_scheduler, get_session_id, get_settings, get_store,
                             get_uploads)
from server.api.openapi import errors
from server.api.routes.validate import validate_document
from server.classroom import ClassError, ClassroomService, Member
from server.config import Settings
from server.search_runner import SearchBook, SearchError, SearchRunner, SearchSpec
from server.security import client_ip
from server.store import Store
from server.uploads import UploadStore

router = APIRouter(tags=["searches"])


def get_searches(request: Request) -> SearchBook:
    """The app's searches; made on first use (the event loop is single-threaded: no race)."""
    state = request.app.state
    book = getattr(state, "searches", None)
    if book is None or book.scheduler is not get_scheduler(request):  # a restarted app gets a fresh book
        settings = get_settings(request)
        book = SearchBook(get_scheduler(request),
                          max_parallel=min(settings.max_active_runs_per_session, settings.max_runs_per_ip),
                          outbox_frames=settings.outbox_max_frames)
        state.searches = book
    return book


def _owned(book: SearchBook, session_id: str, search_id: str) -> SearchRunner:
    runner = book.get(session_id, search_id)
    if runner is None:
        raise HTTPException(status_code=404, detail=f"no search {search_id!r} in this session")
    return runner


@router.post("/searches", responses=errors(403, 409, 429), status_code=201, summary="Start a hyperparameter search: its trials run as runs")
async def start_search(spec: SearchSpec, request: Request, session_id: str = Depends(get_session_id),
                       book: SearchBook = Depends(get_searches), datasets: DatasetCache = Depends(get_datasets),
                       settings: Settings = Depends(get_settings), store: Store = Depends(get_store),
                       upload_store: UploadStore = Depends(get_uploads)) -> Any:
    experiment, report = await asyncio.to_thread(
        validate_document, spec.experiment, datasets=datasets, settings=settings, uploads_dir=store.uploads_dir,
        uploads=upload_store.for_session(session_id))  # only this session's uploads
    if experiment is None:
        errors = report["errors"]
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        return JSONResponse(status_code=422, content={
            "detail": f"experiment: {errors[0]['message']}{more}", "errors": errors})
    classroom = request.app.state.classroom
    member = classroom.member_of_session(session_id)
    try:
        if member is None:
            # the trials count against the caller's address like its own runs (max_runs_per_ip)
            runner = book.start(session_id, spec, experiment, client_ip=client_ip(request.scope))
        else:
            runner = book.start(session_id, spec, experiment, **_class_terms(classroom, member, report))
    except SearchError as error:
        raise HTTPException(status_code=error.status, detail=str(error)) from None
    except ClassError as error:
        return JSONResponse(status_code=error.status, content={"detail": error.message, "code": error.code})
    return runner.to_dict()


def _class_terms(classroom: ClassroomService, member: Member, report: dict[str, Any]) -> dict[str, Any]:
    """How a class member's search runs (issue 10): held to the class's quotas like their own runs.

    Its longest trial must pass what a run of theirs must (steps, parameters, multiply-adds, runs at once, the
    lesson's locked fields: a lesson that locks the learning rate allows no search over it); at most their
    quota of runs at once trains, less what they train already; the trials take the student's fair share
    and are their runs on the teacher's dashboard. The per-address limit is not theirs (a class shares one
    NAT address), as for their runs.
    """
    def check(runner: SearchRunner) -> None:
        trial = runner.longest_trial()
        classroom.check_start(member, trial, dict(report, total_steps=trial.train.max_steps))

    return {"owner": member.id, "max_parallel": classroom.runs_left(member),
            "check": check, "on_trial_started": lambda run_id: classroom.record_run(member.id, run_id)}


@router.get("/searches", summary="This session's searches, newest first (without their base experiments)")
def list_searches(session_id: str = Depends(get_session_id),
                  book: SearchBook = Depends(get_searches)) -> list[dict[str, Any]]:
    return [s.to_dict(with_experiment=False) for s in book.of(session_id)]


@router.get("/searches/{search_id}", responses=errors(404), summary="One search: spec, trials with their run ids, status, best trial")
def get_search(search_id: str, session_id: str = Depends(get_session_id),
               book: SearchBook = Depends(get_searches)) -> dict[str, Any]:
    return _owned(book, session_id, search_id).to_dict()


@router.delete("/searches/{search_id}", responses=errors(404), summary="Stop a search: no new trial starts, the running ones stop")
def stop_search(search_id: str, session_id: str = Depends(get_session_id),
                book: SearchBook = Depends(get_searches)) -> dict[str, Any]:
    runner = _owned(book, session_id, search_id)
    runner.stop()
    return runner.to_dict()
