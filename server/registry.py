"""The one map of names: layer kinds, activations, initializers, optimizers, schedules, losses, datasets.

Names are spelled once, in the ``kind`` literals of ``schemas.py`` (and in
``datasets.DATASETS``); this module reads them back from the schema classes so
the API, the page's menus and the builder can never disagree. Each entry
carries the JSON schema of its parameters: types, ranges, defaults and
descriptions, which is all the page needs to build a form.
"""

from __future__ import annotations

import functools
import typing
from typing import Any

from pydantic import BaseModel, TypeAdapter

from server import schemas


def _union_members(annotated: Any) -> list[type[BaseModel]]:
    """The model classes inside a (possibly nested) ``Annotated[Union[...], ...]``."""
    while typing.get_origin(annotated) is typing.Annotated:
        annotated = typing.get_args(annotated)[0]
    return [member for member in typing.get_args(annotated) if isinstance(member, type)]


def kind_of(model: type[BaseModel]) -> str:
    """The literal ``kind`` a spec class is discriminated by."""
    return model.model_fields["kind"].default


LAYERS: dict[str, type[BaseModel]] = {kind_of(m): m for m in _union_members(schemas.LayerSpec)}
ACTIVATIONS: dict[str, type[BaseModel]] = {kind_of(m): m for m in _union_members(schemas.ActivationSpec)}
INITIALIZERS: dict[str, type[BaseModel]] = {kind_of(m): m for m in _union_members(schemas.InitSpec)}
OPTIMIZERS: dict[str, type[BaseModel]] = {kind_of(m): m for m in _union_members(schemas.OptimizerSpec)}
SCHEDULES: dict[str, type[BaseModel]] = {kind_of(m): m for m in _union_members(schemas.ScheduleSpec)}
LOSSES: list[str] = list(typing.get_args(schemas.TrainConfig.model_fields["loss"].annotation))

# Fields every layer has; forms show them apart from the kind's own parameters.
_COMMON_LAYER_FIELDS = {"kind", "name", "inputs"}


def _entry(model: type[BaseModel], skip: set[str] = frozenset({"kind"})) -> dict[str, Any]:
    """Describe one kind: its docstring and the JSON schema of each parameter."""
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    params = {name: prop for name, prop in schema.get("properties", {}).items() if name not in skip}
    return {
        "kind": kind_of(model),
        "title": model.__name__,
        "description": (model.__doc__ or "").strip().split("\n")[0] if model.__doc__ else "",
        "params": params,
        "required": [name for name in schema.get("required", []) if name not in skip],
        "defs": schema.get("$defs", {}),
    }


@functools.lru_cache(maxsize=1)
def registry_document() -> dict[str, Any]:
    """Everything the page needs to build its menus and forms (GET /api/registry).

    Returns a JSON-safe dict with one list per family; each entry has ``kind``,
    ``description``, ``params`` (name -> JSON schema with type, range, default)
    and ``required``. ``experiment_schema`` is the whole document's JSON schema.
    """
    from server.datasets import DATASETS  # local: datasets import torch-heavy modules

    return {
        "layers": [_entry(m, _COMMON_LAYER_FIELDS) for m in LAYERS.values()],
        "activations": [_entry(m) for m in ACTIVATIONS.values()],
        "initializers": [_entry(m) for m in INITIALIZERS.values()],
        "optimizers": [_entry(m) for m in OPTIMIZERS.values()],
        "schedules": [_entry(m) for m in SCHEDULES.values()],
        "losses": LOSSES,
        # name, kind, description, source, licence, default_n, input_shape, classes, generated
        "datasets": [info.to_dict() for info in DATASETS.values()],
        "train_schema": schemas.TrainConfig.model_json_schema(),
        "data_schema": schemas.DataSpec.model_json_schema(),
        "experiment_schema": TypeAdapter(schemas.Experiment).json_schema(),
    }
