"""A trained network -> TorchScript (``torch.jit.load`` runs it with PyTorch alone, no dlplay).

The network is traced in eval mode on a batch of two (tracing records the
operations; none of dlplay's layers branches on the data, so the trace is the
network, for any batch size). The file carries ``dlplay/metadata.json`` as an
extra file: the experiment JSON, classes, input shape and preprocessing::

    extra = {"dlplay/metadata.json": ""}
    model = torch.jit.load("net.pt", _extra_files=extra)
    logits = model(x)            # x: (N, *input_shape), preprocessed
"""

from __future__ import annotations

import io
import json
import warnings

import torch

from server.export.model import TrainedModel, example_input, export_copy

METADATA_FILE = "dlplay/metadata.json"


def torchscript_bytes(trained: TrainedModel, *, run_id: str | None = None) -> bytes:
    """The traced network of ``trained``, serialized with ``torch.jit.save``."""
    model = export_copy(trained.model)
    x = example_input(trained, batch=2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice; the format still loads everywhere
        traced = torch.jit.trace(model, (x,), check_trace=True, check_inputs=[(example_input(trained, 5, seed=1),)])
    buffer = io.BytesIO()
    metadata = json.dumps(trained.metadata(run_id))
    torch.jit.save(traced, buffer, _extra_files={METADATA_FILE: metadata})
    return buffer.getvalue()


__all__ = ["METADATA_FILE", "torchscript_bytes"]
