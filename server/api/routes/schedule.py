"""POST /api/schedule/preview: the learning rate of every step, drawn before training."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from server.schedules import lr_curve, schedule_note
from server.schemas import TrainConfig

router = APIRouter(tags=["schedule"])

MAX_POINTS = 1000  # (step, lr) pairs per curve: more than a chart's width in pixels


class SchedulePreviewRequest(BaseModel):
    train: TrainConfig
    steps_per_epoch: int = Field(ge=1, le=10_000_000, description="steps in one pass over the training set")
    total_steps: int = Field(ge=1, le=100_000_000, description="steps of the whole run")


# The answer's schema, spelled out: a (step, lr) pair as a tuple model would need JSON Schema's
# ``prefixItems``, which OpenAPI 3.0 tools reject; a pair of numbers is valid in 3.0 and 3.1 alike.
SCHEDULE_POINTS_SCHEMA = {
    "type": "array",
    "title": "SchedulePoints",
    "description": "[step, lr] pairs: the step (an integer from 1) and its learning rate",
    "maxItems": MAX_POINTS,
    "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
}


@router.post(
    "/schedule/preview",
    summary="[[step, lr], ...] for a TrainConfig (step 1 first, at most 1000 pairs)",
    response_model=None,
    responses={200: {"description": "the learning rate of each step", "content": {"application/json": {
        "schema": SCHEDULE_POINTS_SCHEMA}}}},
)
def schedule_preview(request: SchedulePreviewRequest, response: Response) -> list[tuple[int, float]]:
    """The curve a run will follow; a plateau schedule (which depends on validation losses) is drawn
    flat and explained in the ``X-Schedule-Note`` header."""
    note = schedule_note(request.train.schedule)
    if note:
        response.headers["X-Schedule-Note"] = note
    return lr_curve(request.train, request.steps_per_epoch, request.total_steps, max_points=MAX_POINTS)
