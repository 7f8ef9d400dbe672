"""The HTTP surface: REST routers (``routes/``, mounted under /api) and the websocket (``ws.py``, at /ws)."""

from __future__ import annotations

from fastapi import APIRouter

from server.api.routes import datasets, health, presets, registry, runs, schedule, uploads, validate, views

api_router = APIRouter(prefix="/api")
for module in (health, registry, presets, validate, datasets, uploads, runs, schedule, views):
    api_router.include_router(module.router)

__all__ = ["api_router"]
