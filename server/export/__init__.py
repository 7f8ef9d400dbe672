"""Take a run home: export it as PyTorch code, a notebook, ONNX, TorchScript or safetensors; import weights.

One file per format, each a pure function from an experiment (and, for the
trained formats, its model) to the bytes of a file:

================  ==================  ===============================================================
format            module              what comes out
================  ==================  ===============================================================
``pytorch``       pytorch_code.py     one standalone, readable ``.py``: the network layer by layer,
                                      the data, optimizer, schedule and loop exactly as configured
``notebook``      notebook.py         the same as a Jupyter notebook, a markdown cell per block, plots
``onnx``          onnx.py             the trained network for onnxruntime (opset ``ONNX_OPSET``)
``torchscript``   torchscript.py      the trained network, traced, loadable with ``torch.jit.load``
``safetensors``   weights.py          the trained weights under the document's layer names, the
                                      experiment JSON in the metadata; ``train.init_from`` reads it back
================  ==================  ===============================================================

``onnx``, ``onnxruntime``, ``onnxscript`` and ``nbformat`` are optional (``pip install
'dlplay[export]'``); :func:`missing_packages` says what a format lacks here, so the
CLI and the page can say what to install instead of failing late.

:func:`export_file` is the one entry point the CLI and the API share.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Format = Literal["pytorch", "notebook", "onnx", "torchscript", "safetensors"]

INSTALL_HINT = "pip install 'dlplay[export]'"


@dataclass(frozen=True)
class FormatInfo:
    """What the menu and the CLI know about one export format."""

    name: str
    label: str  # what the menu shows
    extension: str  # file suffix, with the dot
    media_type: str
    trained: bool  # needs the run's trained weights (False: the code trains from scratch)
    packages: tuple[str, ...]  # importable modules it needs beyond dlplay's own dependencies
    description: str

    def to_dict(self) -> dict[str, Any]:
        missing = missing_packages(self.name)
        return {
            "format": self.name, "label": self.label, "extension": self.extension, "media_type": self.media_type,
            "trained": self.trained, "description": self.description, "available": not missing,
            "missing": missing, "install": INSTALL_HINT if missing else None,
        }


FORMATS: dict[str, FormatInfo] = {info.name: info for info in (
    FormatInfo("pytorch", "PyTorch script (.py)", ".py", "text/x-python", False, (),
               "standalone code: the network layer by layer, the data, optimizer, schedule and training loop"),
    FormatInfo("notebook", "Jupyter notebook (.ipynb)", ".ipynb", "application/x-ipynb+json", False, ("nbformat",),
               "the same code as a notebook, each block explained, with plots of the curves"),
    FormatInfo("onnx", "ONNX model (.onnx)", ".onnx", "application/octet-stream", True,
               ("onnx", "onnxscript"),
               "the trained network for onnxruntime and other ONNX tools"),
    FormatInfo("torchscript", "TorchScript (.pt)", ".pt", "application/octet-stream", True, (),
               "the trained network as TorchScript: torch.jit.load, no dlplay needed"),
    FormatInfo("safetensors", "Weights (.safetensors)", ".safetensors", "application/octet-stream", True, (),
               "the trained weights under the document's layer names, the experiment in the metadata"),
)}


class ExportError(ValueError):
    """An export that cannot be made (unknown format, missing package, no weights); the message says the fix."""

    def __init__(self, message: str, *, code: str = "export_failed") -> None:
        super().__init__(message)
        self.code = code


def missing_packages(format_name: str) -> list[str]:
    """The optional modules ``format_name`` needs that are not importable here (empty: ready)."""
    return [name for name in FORMATS[format_name].packages if importlib.util.find_spec(name) is None]


def check_format(format_name: str) -> FormatInfo:
    """The format's info, or ExportError naming the formats (unknown) or what to install (missing packages)."""
    info = FORMATS.get(format_name)
    if info is None:
        raise ExportError(f"unknown export format {format_name!r}. Fix: use one of {', '.join(FORMATS)}",
                          code="unknown_format")
    missing = missing_packages(format_name)
    if missing:
        raise ExportError(
            f"the {format_name} export needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed. Fix: {INSTALL_HINT}", code="missing_package",
        )
    return info


def file_stem(name: str) -> str:
    """A file-name stem from an experiment name: ``"LeNet-5 on MNIST"`` -> ``"lenet-5_on_mnist"``."""
    stem = re.sub(r"[^a-z0-9_.-]+", "_", name.lower()).strip("._-")
    return stem[:80] or "experiment"


@dataclass
class ExportedFile:
    """An export's bytes and how to save or serve them."""

    content: bytes
    filename: str
    media_type: str


def export_file(
    format_name: str,
    experiment,
    *,
    weights: Path | dict | None = None,
    run_id: str | None = None,
    uploads_dir: Path | None = None,
    data_url: str | None = None,
) -> ExportedFile:
    """Export an experiment (and, for trained formats, its weights) in one format.

    Args:
        format_name: a key of :data:`FORMATS`.
        experiment: a ``schemas.Experiment``.
        weights: the run's stored weights (a safetensors path, or a state dict); trained
            formats without weights export the network as initialized from ``train.seed``.
        run_id: named in the file, so an export can be traced back to its run.
        uploads_dir: where uploaded datasets live (their shape is read from there).
        data_url: where the server offers the MNIST-5k file; the code exports name it.

    Raises:
        ExportError: unknown format or missing optional package; ValueError subclasses
            (``NetworkError``, ``DataError``) for documents that cannot be built.
    """
    info = check_format(format_name)
    stem = file_stem(experiment.name)
    if format_name == "pytorch":
        from server.export.pytorch_code import pytorch_script

        content = pytorch_script(experiment, run_id=run_id, uploads_dir=uploads_dir,
                                 filename=f"{stem}{info.extension}", data_url=data_url).encode("utf-8")
    elif format_name == "notebook":
        from server.export.notebook import notebook_json

        content = notebook_json(experiment, run_id=run_id, uploads_dir=uploads_dir, data_url=data_url).encode("utf-8")
    else:
        from server.export.model import trained_model

        loaded = trained_model(experiment, weights, uploads_dir=uploads_dir)
        if format_name == "onnx":
            from server.export.onnx import onnx_bytes

            content = onnx_bytes(loaded, run_id=run_id)
        elif format_name == "torchscript":
            from server.export.torchscript import torchscript_bytes

            content = torchscript_bytes(loaded, run_id=run_id)
        else:
            from server.export.weights import safetensors_bytes

            content = safetensors_bytes(loaded, run_id=run_id)
    return ExportedFile(content, f"{stem}{info.extension}", info.media_type)


__all__ = [
    "FORMATS", "INSTALL_HINT", "ExportError", "ExportedFile", "FormatInfo", "check_format", "export_file",
    "file_stem", "missing_packages",
]
