"""POST /api/validate: check an experiment document as the user edits it.

``validate_document`` is the implementation (the websocket's ``start`` uses it
too); it returns data, the route only wraps it. Every problem comes back as
``{layer, problem, fix, message, path}`` with HTTP 200, whether pydantic found it
(a field's type or range), the datasets (an unknown name) or the builder (shapes,
limits). Nothing is allocated beyond a cached copy of the dataset.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends
from pydantic import ValidationError

from server.api.deps import DatasetCache, get_datasets, get_session_id, get_settings, get_store, get_uploads
from server.builder import NetworkError, infer_shapes
from server.config import Settings
from server.cost import CostError, check_cost, estimate_cost
from server.datasets import DataError, describe_data
from server.schemas import Experiment
from server.store import Store
from server.uploads import SessionUploads, UploadStore

router = APIRouter(tags=["validate"])


# ---------------------------------------------------------------------------
# pydantic errors -> {layer, problem, fix, message, path}
# ---------------------------------------------------------------------------


def _locate(raw: Any, loc: tuple[Any, ...]) -> tuple[str, str | None]:
    """Map a pydantic ``loc`` onto the document: a dotted path, and the layer's name when inside one.

    pydantic puts the tag of a discriminated union into ``loc`` (``layers.0.linear.out_features``);
    walking the document drops those, so the path names what the user wrote.
    """
    node, parts, layer = raw, [], None
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not last and part == node.get("kind"):
            continue  # the union tag
        elif isinstance(node, str) and isinstance(part, str) and part == node and not last:
            continue  # the tag of a shorthand such as "relu"
        else:
            node = None
        parts.append(str(part))
        if parts[:2] == ["network", "layers"] and len(parts) == 3:
            name = node.get("name") if isinstance(node, dict) else None
            layer = name if isinstance(name, str) and name else f"#{parts[2]}"
    return ".".join(parts), layer


def _fix(error: dict[str, Any], path: str) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    field = path.rsplit(".", 1)[-1] if path else "the document"
    comparisons = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind == "missing":
        return f"add '{field}'"
    if kind == "extra_forbidden":
        return f"remove '{field}': it is not a parameter here (see GET /api/registry)"
    if kind == "union_tag_invalid":
        return f"use one of {ctx.get('expected_tags', 'the kinds in GET /api/registry')}"
    if kind == "union_tag_not_found":
        return "add a 'kind' (see GET /api/registry for the kinds)"
    if kind == "literal_error":
        return f"use {ctx.get('expected', 'one of the allowed values')}"
    if kind in comparisons:
        limit = next(iter(ctx.values()), None)
        return f"use a value {comparisons[kind]} {limit}"
    if kind == "finite_number":
        return "use a finite number (JSON has no NaN or infinity; 1e999 reads as infinity)"
    if kind.startswith(("int_", "float_")):
        return "use a number"
    if kind.startswith("bool_"):
        return "use true or false"
    if kind.startswith("string_"):
        return "use a text value of the allowed length and characters"
    if kind in ("too_short", "too_long"):
        return "change the number of entries"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "send a JSON object"
    return f"correct '{path}'" if path else "correct the document"


def pydantic_problems(error: ValidationError, raw: Any) -> list[dict[str, Any]]:
    """One ``{layer, problem, fix, message, path}`` per pydantic error, in document order."""
    problems = []
    for item in error.errors(include_url=False):
        path, layer = _locate(raw, tuple(item["loc"]))
        problem = item["msg"].removeprefix("Value error, ")
        if item["type"] == "union_tag_invalid":
            problem = f"unknown kind {(item.get('ctx') or {}).get('tag')!r}"
        fix = _fix(item, path)
        if item["type"] == "document":  # a cross-field check (schemas.document_error) says where and how to fix
            ctx = item["ctx"]
            path = ".".join(filter(None, (path, ctx["path"])))
            problem, fix = ctx["problem"], ctx["fix"]
        where = f"layer '{layer}'" if layer else (path or "experiment")
        problems.append({"layer": layer, "problem": problem, "fix": fix, "path": path or None,
                         "message": f"{where}: {problem}. Fix: {fix}"})
    return problems


def _network_problem(error: NetworkError, experiment: Experiment) -> dict[str, Any]:
    path = "network"
    for index, layer in enumerate(experiment.network.layers):
        if layer.name == error.layer:
            path = f"network.layers.{index}"
            break
    return {**error.to_dict(), "path": path}


def _data_problem(error: DataError) -> dict[str, Any]:
    return {"layer": None, "problem": error.problem, "fix": error.fix, "message": str(error), "path": "data"}


# ---------------------------------------------------------------------------
# The implementation
# ---------------------------------------------------------------------------


def run_shape(experiment: Experiment, n_train: int) -> tuple[int, int | None]:
    """(steps_per_epoch, total_steps) the trainer will use, for the schedule preview; total None: until stopped."""
    train = experiment.train
    batch = n_train if train.batch_size == "full" else min(train.batch_size, max(n_train, 1))
    per_epoch = max(1, n_train // max(batch, 1))
    if train.max_steps is not None:
        return per_epoch, train.max_steps
    if train.epochs is None:
        return per_epoch, None
    return per_epoch, max(1, math.ceil(train.epochs * per_epoch - 1e-9))


def validate_document(raw: Any, *, datasets: DatasetCache, settings: Settings, uploads_dir: Path | None,
                      uploads: SessionUploads | None = None) -> tuple[Experiment | None, dict[str, Any]]:
    """Check a raw experiment document; returns (the Experiment or None, the report).

    ``uploads``: the caller's session's view of the upload store; an experiment naming
    another session's upload is then refused like a missing one (server/uploads.py).
    None only for trusted local callers (the CLI, exports).

    The report is ``{"ok": False, "errors": [...]}`` or ``{"ok": True, "errors": [],
    "summary": NetworkSummary.to_dict(), "dataset": {...}, "steps_per_epoch", "total_steps"}``.
    """
    try:
        experiment = Experiment.model_validate(raw)
    except ValidationError as error:
        return None, {"ok": False, "errors": pydantic_problems(error, raw)}
    try:
        if uploads is not None:
            uploads.check_access(experiment.data)
        shape = describe_data(experiment.data, uploads_dir=uploads_dir)  # cheap: no examples made
        summary = infer_shapes(
            experiment.network, shape.input_shape, shape.num_classes,
            max_params=settings.max_params, max_activation_bytes=settings.max_activation_bytes,
        )
        dataset = datasets.get(experiment.data, uploads_dir)  # catches split/subset problems too
    except NetworkError as error:
        return None, {"ok": False, "errors": [_network_problem(error, experiment)]}
    except DataError as error:
        return None, {"ok": False, "errors": [_data_problem(error)]}
    # Admission by cost at the real batch ("full" = every training example), before anything is queued.
    cost = estimate_cost(summary, batch_size=experiment.train.batch_size, n_train=dataset.n_train,
                         optimizer=experiment.train.optimizer.kind)
    try:
        check_cost(cost, summary, max_memory_bytes=settings.max_run_memory_bytes, max_step_macs=settings.max_step_macs)
    except CostError as error:
        return None, {"ok": False, "errors": [{
            "code": error.code, "layer": error.layer, "problem": "too large for this server", "fix": error.fix,
            "message": str(error), "path": "train.batch_size"}]}
    steps_per_epoch, total_steps = run_shape(experiment, dataset.n_train)
    return experiment, {
        "ok": True,
        "errors": [],
        "summary": summary.to_dict(),
        "dataset": {
            "name": dataset.name, "kind": dataset.kind, "input_shape": list(dataset.input_shape),
            "classes": list(dataset.classes), "n_train": dataset.n_train, "n_val": dataset.n_val,
        },
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "cost": cost.to_dict(),
    }


@router.post("/validate", summary="Check an experiment document (errors come back with HTTP 200)")
def validate(
    document: Any = Body(..., description="an Experiment document (see GET /api/registry: experiment_schema)"),
    datasets: DatasetCache = Depends(get_datasets),
    settings: Settings = Depends(get_settings),
    store: Store = Depends(get_store),
    upload_store: UploadStore = Depends(get_uploads),
    session_id: str = Depends(get_session_id),
) -> dict[str, Any]:
    _, report = validate_document(document, datasets=datasets, settings=settings, uploads_dir=store.uploads_dir,
                                  uploads=upload_store.for_session(session_id))
    return report
