"""The session's runs: list, inspect, metric history, compare, delete (REST; training itself is on /ws)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from server import protocol
from server.api.class_ws import teacher_may_watch
from server.api.deps import get_scheduler, get_session_id, get_settings, get_store, owned_run
from server.api.openapi import errors
from server.config import Settings
from server.scheduler import Scheduler
from server.store import RunRecord, Store

router = APIRouter(tags=["runs"])

MAX_COMPARE = 8  # runs side by side: more is unreadable on one chart
_ENVELOPE = ("type", "run_id")


def _live(record: RunRecord, scheduler: Scheduler) -> dict[str, Any]:
    """A run's stored view, with the state of the scheduler where it is fresher (running/paused/queued)."""
    view = record.to_dict()
    run = scheduler.get(record.id)
    if run is not None and run.state in ("queued", "starting", "running", "paused"):
        view["status"] = "running" if run.state == "starting" else run.state
        if run.state == "queued":
            view["position"] = run.position
    return view


def metric_points(record: RunRecord, store: Store, scheduler: Scheduler, cap: int) -> list[dict[str, Any]]:
    """A run's metric points (``metrics`` payloads with seq and t), thinned to at most ``cap``.

    In-memory runs answer from their channel (complete, up to this instant); others from the store.
    """
    run = scheduler.get(record.id)
    points = run.channel.messages("metrics") if run is not None else store.metrics(record.id)
    points = protocol.downsample(points, cap)
    return [{k: v for k, v in p.items() if k not in _ENVELOPE} for p in points]


def readable_run(request: Request, store: Store, session_id: str, run_id: str) -> RunRecord:
    """A run of this session, or any class member's run for the class's teacher (issue 10); else 404."""
    record = store.get_run(run_id)
    if record is not None and record.session_id != session_id and teacher_may_watch(request, record.session_id):
        return record
    return owned_run(store, session_id, run_id)


def flatten(document: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train.optimizer.lr": 0.01, "network.layers.0.out_features": 16, ...}``: leaves by dotted path."""
    if isinstance(document, dict):
        out: dict[str, Any] = {}
        for key, value in document.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(document, list) and document and any(isinstance(v, (dict, list)) for v in document):
        out = {}
        for index, value in enumerate(document):
            out.update(flatten(value, f"{prefix}.{index}" if prefix else str(index)))
        return out
    return {prefix: document}


def config_diff(experiments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The paths where the documents differ, each with every document's value (None where absent)."""
    flat = [flatten(e) for e in experiments]
    paths = sorted(set().union(*flat)) if flat else []
    diff = []
    for path in paths:
        values = [f.get(path) for f in flat]
        if any(v != values[0] for v in values[1:]):
            diff.append({"path": path, "values": values})
    return diff


@router.get("/runs", summary="This session's runs, newest first")
def list_runs(session_id: str = Depends(get_session_id), store: Store = Depends(get_store),
              scheduler: Scheduler = Depends(get_scheduler)) -> list[dict[str, Any]]:
    out = []
    for record in store.list_runs(session_id):
        view = _live(record, scheduler)
        view.pop("experiment", None)
        view.pop("summary", None)
        out.append(view)
    return out


@router.get("/runs/compare", responses=errors(400, 404), summary="Metric histories of several runs and where their configurations differ")
def compare_runs(
    ids: str = Query(..., description="comma-separated run ids, e.g. ids=a1b2,c3d4"),
    session_id: str = Depends(get_session_id), store: Store = Depends(get_store),
    scheduler: Scheduler = Depends(get_scheduler), settings: Settings = Depends(get_settings),
) -> dict[str, Any]:
    run_ids = [i for i in (part.strip() for part in ids.split(",")) if i]
    if not run_ids:
        raise HTTPException(status_code=400, detail="give the runs to compare: ?ids=<id>,<id>")
    if len(run_ids) > MAX_COMPARE:
        raise HTTPException(status_code=400, detail=f"compare at most {MAX_COMPARE} runs at a time")
    records = [owned_run(store, session_id, run_id) for run_id in dict.fromkeys(run_ids)]
    return {
        "runs": [
            {
                "id": r.id, "name": r.name, "status": _live(r, scheduler)["status"], "final": r.final,
                "metrics": metric_points(r, store, scheduler, settings.metric_history_points),
            }
            for r in records
        ],
        "diff": config_diff([r.experiment for r in records]),
    }


@router.get("/runs/{run_id}", responses=errors(404), summary="One run: its experiment, summary, status and final figures")
def get_run(run_id: str, request: Request, session_id: str = Depends(get_session_id),
            store: Store = Depends(get_store), scheduler: Scheduler = Depends(get_scheduler)) -> dict[str, Any]:
    return _live(readable_run(request, store, session_id, run_id), scheduler)


@router.get("/runs/{run_id}/metrics", responses=errors(404), summary="A run's metric history (at most metric_history_points points)")
def get_metrics(run_id: str, request: Request, session_id: str = Depends(get_session_id),
                store: Store = Depends(get_store), scheduler: Scheduler = Depends(get_scheduler),
                settings: Settings = Depends(get_settings)) -> dict[str, Any]:
    record = readable_run(request, store, session_id, run_id)
    return {"run_id": run_id, "points": metric_points(record, store, scheduler, settings.metric_history_points)}


@router.delete("/runs/{run_id}", responses=errors(404), status_code=204, summary="Stop (if active) and delete a run, its history and weights")
async def delete_run(run_id: str, session_id: str = Depends(get_session_id), store: Store = Depends(get_store),
                     scheduler: Scheduler = Depends(get_scheduler)) -> Response:
    owned_run(store, session_id, run_id)
    await asyncio.wrap_future(scheduler.delete(run_id))
    store.delete_run(run_id)
    return Response(status_code=204)
