"""The trained network of a run, rebuilt for export: the model, its data's shape and preprocessing.

The store keeps a run's weights as the ``GraphModel``'s state dict in a safetensors
file; :func:`trained_model` rebuilds the network from the experiment document and
loads them (no pickles anywhere). :func:`export_copy` makes the evaluation-mode copy
the ONNX and TorchScript exporters trace: the perceptron's sign step is an
``autograd.Function``, which tracing cannot record, so it is swapped for the same
function written with plain tensor ops.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from server import schemas
from server.builder import GraphModel, NetworkSummary, build_model
from server.datasets import describe_data, load_dataset
from server.layers import Sign


@dataclass
class TrainedModel:
    """A rebuilt network and what a user of its export needs to feed it.

    ``mean``/``std``: the preprocessing the network expects on its inputs, per channel
    (images) or feature, ``x = (raw - mean) / std``; None when not applied.
    ``trained``: False when no weights were given (the network as initialized from ``train.seed``).
    """

    experiment: schemas.Experiment
    model: GraphModel
    summary: NetworkSummary
    classes: list[str]
    mean: list[float] | None
    std: list[float] | None
    trained: bool

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.summary.input_shape)

    def metadata(self, run_id: str | None = None) -> dict[str, str]:
        """String metadata every trained export carries (safetensors, ONNX, TorchScript extra files)."""
        from server.config import version

        out = {
            "format": "dlplay",
            "dlplay_version": version(),
            "experiment": json.dumps(self.experiment.model_dump(mode="json"), separators=(",", ":")),
            "input_shape": json.dumps(list(self.input_shape)),
            "classes": json.dumps(self.classes),
            "preprocessing": json.dumps({
                "kind": self.experiment.data.preprocessing, "mean": self.mean, "std": self.std,
                "formula": "x = (raw - mean) / std per channel; raw images in [0, 1]",
            }),
            "trained": "true" if self.trained else "false",
        }
        if run_id:
            out["run_id"] = run_id
        return out


def read_safetensors(path: Path | str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors and metadata of a safetensors file (never unpickles anything)."""
    from safetensors import safe_open

    tensors: dict[str, Tensor] = {}
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        metadata = dict(handle.metadata() or {})
        for name in handle.keys():
            tensors[name] = handle.get_tensor(name)
    return tensors, metadata


def trained_model(experiment: schemas.Experiment, weights: Path | str | dict[str, Tensor] | None, *,
                  uploads_dir: Path | None = None) -> TrainedModel:
    """Rebuild ``experiment``'s network on the CPU, in eval mode, with ``weights`` loaded.

    Args:
        weights: a safetensors file or a state dict, in the store's naming (the
            ``GraphModel`` state dict) or the document's (:mod:`server.export.weights`);
            None gives the network as initialized from ``train.seed``.

    Raises:
        NetworkError / DataError for a document that cannot be built; WeightsError when
        the weights do not fit the network.
    """
    from server.export.weights import load_weights_into

    shape = describe_data(experiment.data, uploads_dir=uploads_dir)
    model, summary = build_model(experiment.network, shape.input_shape, shape.num_classes, seed=experiment.train.seed)
    if weights is not None:
        tensors = read_safetensors(weights)[0] if isinstance(weights, (str, Path)) else dict(weights)
        load_weights_into(model, tensors)
    model.eval()
    mean = std = None
    if experiment.data.preprocessing != "none":
        dataset = load_dataset(experiment.data, uploads_dir=uploads_dir)
        mean = None if dataset.mean is None else [float(v) for v in dataset.mean]
        std = None if dataset.std is None else [float(v) for v in dataset.std]
    return TrainedModel(experiment, model, summary, list(shape.classes), mean, std, trained=weights is not None)


class TraceableSign(nn.Module):
    """The sign step as plain tensor ops, so tracing records it: +1 where x >= 0, -1 elsewhere (same shape)."""

    def forward(self, x: Tensor) -> Tensor:
        return (x >= 0).to(x.dtype) * 2 - 1


def export_copy(model: nn.Module) -> nn.Module:
    """An eval-mode deep copy of ``model`` with every ``Sign`` replaced by :class:`TraceableSign`, no grads."""
    clone = copy.deepcopy(model).eval()
    for module in list(clone.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, Sign):
                setattr(module, name, TraceableSign())
    clone.requires_grad_(False)
    return clone


def example_input(trained: TrainedModel, batch: int = 2, seed: int = 0) -> Tensor:
    """A random batch ``(batch, *input_shape)`` to trace with (tracing only needs the shape)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((batch, *trained.input_shape), generator=generator)


__all__ = ["TrainedModel", "TraceableSign", "example_input", "export_copy", "read_safetensors", "trained_model"]
