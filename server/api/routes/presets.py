"""GET /api/presets and /api/presets/{id}: the classic networks in models/, ready to load."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from server.api.deps import get_settings
from server.api.openapi import errors
from server.config import Settings
from server.presets import get_preset, list_presets

router = APIRouter(tags=["presets"])


@router.get("/presets", summary="Every preset: {id, name, description, experiment}")
def presets(settings: Settings = Depends(get_settings)) -> list[dict[str, Any]]:
    return list_presets(settings.models_dir)


@router.get("/presets/{preset_id}", responses=errors(404), summary="One preset by id (its file name without .json)")
def preset(preset_id: str, settings: Settings = Depends(get_settings)) -> dict[str, Any]:
    found = get_preset(preset_id, settings.models_dir)
    if found is None:
        known = ", ".join(p["id"] for p in list_presets(settings.models_dir))
        raise HTTPException(status_code=404, detail=f"no preset {preset_id!r}; the presets are: {known}")
    return found
