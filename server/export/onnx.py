"""A trained network -> an ONNX model for onnxruntime (and any other ONNX tool).

The graph is the network exactly: its input ``input`` is a batch of preprocessed
examples ``(batch, *input_shape)`` (the batch size is free), its output ``logits``
is ``(batch, num_outputs)``: class scores before softmax, or the one logit of a
two-class network. The metadata (``metadata_props``) carries the experiment JSON,
the class names and the preprocessing to apply to raw inputs.

Export uses PyTorch's ``torch.export``-based exporter (the default since PyTorch
2.9; it needs ``onnxscript``) at opset :data:`ONNX_OPSET`, which every
onnxruntime since 1.14 runs. When onnxruntime is installed, the file is checked
against PyTorch on a random batch before it is returned, so a broken export is
an error here rather than a surprise later.
"""

from __future__ import annotations

import contextlib
import logging
import warnings

import torch

from server.export.model import TrainedModel, example_input, export_copy

ONNX_OPSET = 18  # onnxruntime >= 1.14 runs it; the torch.export-based exporter's lowest
CHECK_TOLERANCE = 1e-4  # max |onnxruntime - torch| on the check batch, relative to the largest output (float32)
INPUT_NAME, OUTPUT_NAME = "input", "logits"


class OnnxExportError(RuntimeError):
    """The exporter or the check failed: a bug or an unsupported operation, not the user's mistake."""


def onnx_bytes(trained: TrainedModel, *, run_id: str | None = None, opset: int = ONNX_OPSET) -> bytes:
    """The network of ``trained`` as a serialized ONNX ``ModelProto`` with a dynamic batch axis."""
    model = export_copy(trained.model)
    x = example_input(trained, batch=2)
    batch = torch.export.Dim("batch", min=1)
    with _quiet():
        program = torch.onnx.export(
            model, (x,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},), verbose=False,
        )
    proto = program.model_proto
    proto.doc_string = f"dlplay export of {trained.experiment.name!r}: preprocessed inputs -> logits"
    for key, value in trained.metadata(run_id).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    content = proto.SerializeToString()
    _check(content, model, trained)
    return content


@contextlib.contextmanager
def _quiet():
    """The exporter warns about optional packages it does not need (torchvision) and deprecations; keep logs clean.

    (``verbose=False`` already keeps it from printing; stdout is not touched, other threads write there.)
    """
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _check(content: bytes, model: torch.nn.Module, trained: TrainedModel) -> None:
    """Run the exported file in onnxruntime (when installed) on 3 random examples and compare with PyTorch."""
    try:
        import onnxruntime
    except ImportError:
        return
    x = example_input(trained, batch=3, seed=1)
    session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])
    with torch.no_grad():
        want = model(x)
    error = float((got - want).abs().max()) if got.shape == want.shape else float("inf")
    if not error <= CHECK_TOLERANCE * max(1.0, float(want.abs().max())):
        raise OnnxExportError(
            f"the ONNX export of {trained.experiment.name!r} disagrees with PyTorch (max difference {error:.3g}, "
            f"shapes {tuple(got.shape)} vs {tuple(want.shape)}); please report this network"
        )


__all__ = ["CHECK_TOLERANCE", "INPUT_NAME", "ONNX_OPSET", "OUTPUT_NAME", "OnnxExportError", "onnx_bytes"]
