"""Weights in and out: safetensors under the document's layer names, and ``train.init_from``.

Names. Inside dlplay a tensor is named by the ``GraphModel`` that holds it
(``blocks.conv1.core.weight``); in an export it is named by the document:
``<layer>.<tensor>``, e.g. ``conv1.weight``, ``bn1.running_mean``, ``se1.fc1.weight``,
and ``hidden.act.weight`` for the slopes of a PReLU activation. Reading weights
back, three namings are accepted, so a file from any of dlplay's exports fits:

* the document's names (a safetensors export),
* the ``GraphModel``'s (the store's weight files),
* the generated PyTorch script's ``Net`` (``model.state_dict()`` of an exported script).

A safetensors export carries the experiment JSON, classes, input shape and
preprocessing in its metadata (see ``TrainedModel.metadata``).

Import. :func:`apply_init_from` loads a file into a freshly built model: all
layers, or those ``init_from.layers`` names; ``strict`` wants every chosen layer
complete with equal shapes, and no tensor in the file left unused when loading
all. The server resolves ``init_from`` to a file with :func:`resolve_init_from`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from server import schemas
from server.builder import GraphModel
from server.layers import BlockDict

WEIGHTS_SUFFIX = ".safetensors"
UPLOAD_ID = re.compile(r"[a-f0-9]{8,32}")
SHOWN = 4  # names listed in an error message before "..."


class WeightsError(ValueError):
    """Weights that do not fit: the message names the layer or tensor, says what is wrong and the fix."""


@dataclass
class InitReport:
    """What :func:`apply_init_from` did: the layers loaded and the layers skipped (non-strict), with why."""

    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    tensors: int = 0


# ---------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------


def _split(key: str) -> tuple[str, str]:
    """``blocks.<escaped layer>.<rest>`` -> (layer name, rest within the block, e.g. ``core.weight``)."""
    parts = key.split(".", 2)
    if len(parts) < 3 or parts[0] != "blocks":
        raise ValueError(f"not a GraphModel tensor name: {key!r}")
    return BlockDict.name(parts[1]), parts[2]


def document_name(layer: str, rest: str) -> str:
    """The export name of a block's tensor: ``core.`` is dropped, ``act.`` kept (``conv1.weight``, ``h.act.weight``)."""
    return f"{layer}.{rest.removeprefix('core.')}"


def document_names(model: GraphModel) -> dict[str, str]:
    """GraphModel state-dict key -> document name, for every tensor (parameters and buffers).

    Raises:
        WeightsError: when two tensors would get one name (layers ``se`` and ``se.fc1``
            beside a squeeze-excite ``se``), which a file could not tell apart.
    """
    names: dict[str, str] = {}
    seen: dict[str, str] = {}
    for key in model.state_dict():
        name = document_name(*_split(key))
        if name in seen:
            raise WeightsError(
                f"tensors {seen[name]!r} and {key!r} would both be saved as {name!r}. "
                "Fix: rename one of the layers involved"
            )
        seen[name] = key
        names[key] = name
    return names


def document_state_dict(model: GraphModel) -> dict[str, Tensor]:
    """The model's tensors under document names, as contiguous CPU copies (what a safetensors export holds)."""
    names = document_names(model)
    return {names[key]: t.detach().to("cpu").contiguous().clone() for key, t in model.state_dict().items()}


def _aliases(model: GraphModel) -> dict[str, str]:
    """Every accepted name of each tensor -> its GraphModel key (names that two tensors could claim are dropped)."""
    from server.export.pytorch_code import script_tensor_names

    script = script_tensor_names(model)
    claims: dict[str, set[str]] = {}
    for key in model.state_dict():
        layer, rest = _split(key)
        for alias in (key, f"blocks.{layer}.{rest}", document_name(layer, rest), script[key]):
            claims.setdefault(alias, set()).add(key)
    return {alias: next(iter(keys)) for alias, keys in claims.items() if len(keys) == 1}


def _listing(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def _as_tensors(weights: Path | str | Mapping[str, Tensor]) -> dict[str, Tensor]:
    if isinstance(weights, Mapping):
        return dict(weights)
    from server.export.model import read_safetensors

    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"the weights file {path.name!r} is missing. Fix: export or upload the weights again")
    try:
        return read_safetensors(path)[0]
    except Exception as error:  # safetensors raises its own error types for a damaged header
        raise WeightsError(
            f"{path.name!r} is not a readable safetensors file ({error}). "
            "Fix: use a .safetensors file exported by dlplay (or saved with safetensors.torch.save_file)"
        ) from None


def apply_init_from(model: GraphModel, spec: schemas.InitFromSpec | None,
                    weights: Path | str | Mapping[str, Tensor] | None) -> InitReport:
    """Load saved weights into ``model`` in place, as ``spec`` (``train.init_from``) chooses.

    Args:
        model: a freshly built GraphModel (any device; tensors are copied onto it).
        spec: which layers (None: all) and how strictly; None means all layers, strict.
        weights: the resolved file (safetensors) or a state dict in any accepted naming.

    Returns:
        An :class:`InitReport`.

    Raises:
        WeightsError: no weights resolved, unknown or weightless layers named, a tensor
            missing or of another shape (strict), unused tensors when loading all
            (strict), or nothing that fits at all.
    """
    spec = spec or schemas.InitFromSpec.model_construct(run_id=None, upload_id=None, layers=None, strict=True)
    if weights is None:
        source = f"run {spec.run_id!r}" if spec.run_id else f"upload {spec.upload_id!r}"
        raise WeightsError(
            f"train.init_from names {source}, but no weights file was found for it here. "
            "Fix: start the run from the dlplay server (or `dlplay run`, which looks in the data directory)"
        )
    tensors = _as_tensors(weights)
    state = model.state_dict()
    aliases = _aliases(model)
    names = document_names(model)

    found: dict[str, tuple[str, Tensor]] = {}  # GraphModel key -> (name in the file, tensor)
    unused: list[str] = []
    for name, tensor in tensors.items():
        key = aliases.get(name)
        if key is None:
            unused.append(name)
        elif key in found:
            raise WeightsError(
                f"the file holds {names[key]!r} twice, as {found[key][0]!r} and {name!r}. Fix: keep one of them"
            )
        else:
            found[key] = (name, tensor)

    by_layer: dict[str, list[str]] = {}
    for key in state:
        by_layer.setdefault(_split(key)[0], []).append(key)
    layer_names = list(model.blocks.keys())
    if spec.layers is None:
        chosen = [name for name in layer_names if name in by_layer]
    else:
        unknown = [name for name in spec.layers if name not in model.blocks]
        if unknown:
            raise WeightsError(
                f"train.init_from.layers names {_listing(unknown)}, which the network does not have. "
                f"Fix: choose among {_listing(list(by_layer))}"
            )
        empty = [name for name in spec.layers if name not in by_layer]
        if empty:
            raise WeightsError(
                f"train.init_from.layers names {_listing(empty)}, which hold no weights. "
                f"Fix: choose among the layers with weights: {_listing(list(by_layer))}"
            )
        chosen = list(dict.fromkeys(spec.layers))

    report = InitReport()
    plan: list[tuple[Tensor, Tensor]] = []
    for layer in chosen:
        problems, pairs = [], []
        for key in by_layer[layer]:
            target = state[key]
            if key not in found:
                problems.append(f"{names[key]!r} is not in the file")
                continue
            tensor = found[key][1]
            if tuple(tensor.shape) != tuple(target.shape):
                problems.append(
                    f"{names[key]!r} is {_shape(tensor.shape)} in the file but {_shape(target.shape)} here"
                )
            elif tensor.dtype.is_floating_point != target.dtype.is_floating_point:
                problems.append(f"{names[key]!r} is {tensor.dtype} in the file but {target.dtype} here")
            else:
                pairs.append((target, tensor))
        if problems:
            if spec.strict:
                raise WeightsError(
                    f"layer {layer!r}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                    + ". Fix: build the same layer as the saved network, leave it out of train.init_from.layers, "
                    "or set train.init_from.strict to false to skip layers that do not fit"
                )
            report.skipped[layer] = "; ".join(problems)
        else:
            report.loaded.append(layer)
            plan += pairs
    if spec.strict and spec.layers is None and unused:
        raise WeightsError(
            f"the file has tensors no layer of this network takes: {_listing(unused)}. Fix: name the layers as "
            "in the saved network, list the layers to load in train.init_from.layers, or set strict to false"
        )
    if not report.loaded:
        raise WeightsError(
            "no layer of this network fits the weights in the file"
            + (f" ({_listing([f'{k}: {v}' for k, v in report.skipped.items()])})" if report.skipped else "")
            + ". Fix: load weights saved from a network with the same layer names and sizes"
        )
    with torch.no_grad():
        for target, tensor in plan:
            target.copy_(tensor.to(dtype=target.dtype))
    report.tensors = len(plan)
    return report


def _shape(shape) -> str:
    return "x".join(str(int(s)) for s in shape) or "a scalar"


def load_weights_into(model: GraphModel, weights: Path | str | Mapping[str, Tensor]) -> InitReport:
    """Load every layer's weights, strictly (what re-opening a stored run needs)."""
    return apply_init_from(model, None, weights)


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------


def safetensors_bytes(trained, *, run_id: str | None = None) -> bytes:
    """A ``TrainedModel``'s weights as a safetensors file: document names, the experiment in the metadata."""
    from safetensors.torch import save

    return save(document_state_dict(trained.model), metadata=trained.metadata(run_id))


# ---------------------------------------------------------------------------
# Where init_from's file lies (the server's side)
# ---------------------------------------------------------------------------


def resolve_init_from(spec: schemas.InitFromSpec, *, store: Any, session_id: str | None) -> Path:
    """The safetensors file ``spec`` names: a run's stored weights, or an uploaded file.

    Args:
        store: the ``Store`` (it knows where run weights and uploads lie).
        session_id: the session starting the run; a run of another session is "not
            found". None skips the check (``dlplay run`` on the user's own data directory).

    Raises:
        WeightsError: no such run or upload, or a run without saved weights.
    """
    if spec.run_id is not None:
        record = store.get_run(spec.run_id)
        if record is None or (session_id is not None and record.session_id != session_id):
            raise WeightsError(
                f"train.init_from: no run {spec.run_id!r} here. Fix: pick a finished run of your own (GET /api/runs)"
            )
        path = Path(record.weights_path) if record.weights_path else None
        if path is None or not path.is_file():
            raise WeightsError(
                f"train.init_from: run {spec.run_id!r} ({record.status}) has no saved weights. Fix: wait until it "
                "finishes or stop it (weights are saved when a run ends; failed runs keep none)"
            )
        return path
    upload_id = spec.upload_id or ""
    if not UPLOAD_ID.fullmatch(upload_id):
        raise WeightsError("train.init_from.upload_id must be the 8 to 32 hex digits POST /api/weights returned")
    path = Path(store.uploads_dir) / f"{upload_id}{WEIGHTS_SUFFIX}"
    if not path.is_file():
        raise WeightsError(
            f"train.init_from: no uploaded weights {upload_id!r} (they may have expired). Fix: upload the "
            ".safetensors file again"
        )
    return path


@dataclass
class WeightsUpload:
    """An uploaded weights file, checked: its id and what it holds."""

    id: str
    tensors: int
    parameters: int
    layers: list[str]  # the layers holding tensors: in document order for a dlplay export, else sorted
    experiment: dict[str, Any] | None  # from the metadata of a dlplay export, when valid
    metadata: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "tensors": self.tensors, "parameters": self.parameters, "layers": self.layers,
            "experiment": self.experiment, "init_from": {"upload_id": self.id},
        }


def save_weights_upload(source: Path, uploads_dir: Path) -> WeightsUpload:
    """Check that ``source`` is a safetensors file and store it as ``<uploads_dir>/<id>.safetensors``.

    The id is a content hash, so uploading one file twice gives one id. ``source`` is
    consumed (moved or deleted).

    Raises:
        WeightsError: not a safetensors file, or one without tensors.
    """
    from safetensors import safe_open

    try:  # the header only: names, shapes and metadata (the tensors are read when a run loads them)
        with safe_open(str(source), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            shapes = {name: handle.get_slice(name).get_shape() for name in handle.keys()}
    except Exception as error:  # a damaged or foreign file: safetensors' own error types
        source.unlink(missing_ok=True)
        raise WeightsError(
            f"this is not a safetensors file ({str(error)[:200]}). Fix: upload a .safetensors file exported by dlplay "
            "(Export > Weights) or saved with safetensors.torch.save_file"
        ) from None
    if not shapes:
        source.unlink(missing_ok=True)
        raise WeightsError("the file holds no tensors. Fix: upload the weights of a trained network")
    digest = hashlib.sha256()
    with open(source, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    upload_id = digest.hexdigest()[:16]
    uploads_dir.mkdir(parents=True, exist_ok=True)
    target = uploads_dir / f"{upload_id}{WEIGHTS_SUFFIX}"
    os.replace(source, target)
    experiment = None
    if "experiment" in metadata:
        try:
            experiment = schemas.Experiment.model_validate(json.loads(metadata["experiment"]))
        except (ValueError, TypeError):
            experiment = None  # a foreign or outdated document: the weights are still usable
    if experiment is not None:  # the layers holding tensors, in document order
        layers = [layer.name for layer in experiment.network.layers
                  if any(name.startswith(f"{layer.name}.") for name in shapes)]
    else:
        layers = sorted({name.rsplit(".", 1)[0] for name in shapes})
    document = None if experiment is None else experiment.model_dump(mode="json")
    parameters = sum(math.prod(shape) for shape in shapes.values())
    return WeightsUpload(upload_id, len(shapes), parameters, layers, document, metadata)


def temporary_weights_file(uploads_dir: Path) -> Path:
    """A fresh temporary file beside the uploads (same file system, so storing it is a rename)."""
    uploads_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=uploads_dir, prefix=".weights.", suffix=".tmp")
    os.close(fd)
    return Path(name)


__all__ = [
    "InitReport", "WeightsError", "WeightsUpload", "apply_init_from", "document_name", "document_names",
    "document_state_dict", "load_weights_into", "resolve_init_from", "safetensors_bytes", "save_weights_upload",
    "temporary_weights_file",
]
