"""GET /api/health: is the server up, what does it train on, how busy is it."""

from __future__ import annotations

from typing import Any

import torch
from fastapi import APIRouter, Depends

from server.api.deps import get_scheduler, get_settings
from server.config import Settings, version
from server.isolation import spare_children
from server.scheduler import Scheduler

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness, device and load")
def health(settings: Settings = Depends(get_settings), scheduler: Scheduler = Depends(get_scheduler)) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    device = settings.device if settings.device != "auto" else ("cuda" if cuda else "cpu")
    counts = scheduler.counts()
    return {
        "status": "ok",
        "device": device,
        "cuda": cuda,
        "cuda_name": torch.cuda.get_device_name(0) if cuda else None,
        "version": version(),
        "active_runs": counts["active"],
        "queued_runs": counts["queued"],
        # run processes forked and warmed up ahead of need (server/isolation.py): starts wait for none of them
        "spare_processes": spare_children().ready if settings.isolation == "process" else 0,
    }
