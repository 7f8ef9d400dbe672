"""GET /api/registry: every layer kind, activation, initializer, optimizer, schedule, loss and dataset."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from server.registry import registry_document

router = APIRouter(tags=["registry"])


@router.get("/registry", summary="Names, parameters, types, ranges and defaults the page builds its menus from")
def registry() -> dict[str, Any]:
    return registry_document()
