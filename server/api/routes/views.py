"""GET /api/views: the live views the frame clock streams, their rates and arguments (the page's tabs read it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from server import live

router = APIRouter(tags=["views"])


@router.get("/views", summary="Every live view: its messages, default frames per second, arguments and data kinds")
def views() -> list[dict[str, Any]]:
    return live.describe()
