"""``dlplay export``: a run (by id, from the data directory) or an experiment file, in one export format.

    dlplay export RUN_ID --format onnx --out net.onnx
    dlplay export models/lenet5_mnist.json --format pytorch --out lenet5.py
    dlplay export RUN_ID --format safetensors            # -> <experiment name>.safetensors here

A run id is looked up in the store of the data directory (``DLPLAY_DATA_DIR``, the
same the server uses); an experiment file has no trained weights, so the trained
formats then export the network as initialized from ``train.seed`` (and say so).
Invalid input exits with code 2 and one line on stderr, like ``dlplay run``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from server.export import FORMATS, ExportError, check_format, export_file

EXIT_INVALID = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlplay export",
        description="Export a run or an experiment as PyTorch code, a notebook, ONNX, TorchScript or safetensors.",
    )
    parser.add_argument("source", help="a run id (see the page's run list or GET /api/runs) or an experiment JSON file")
    parser.add_argument("--format", "-f", required=True, choices=list(FORMATS),
                        help="; ".join(f"{name}: {info.description}" for name, info in FORMATS.items()))
    parser.add_argument("--out", "-o", default=None,
                        help="the file to write (default: the experiment's name and the format's suffix, here)")
    return parser


def _open_store():
    from server.config import get_settings
    from server.store import Store

    return Store(get_settings().data_dir)


def _load_source(source: str, trained: bool):
    """(experiment, weights path or None, run id or None, uploads dir or None) for a file or a run id."""
    from server.cli import load_experiment
    from server.schemas import Experiment

    if Path(source).suffix.lower() == ".json" or Path(source).is_file():
        return load_experiment(source), None, None, None
    store = _open_store()
    try:
        record = store.get_run(source)
        uploads_dir = store.uploads_dir
    finally:
        store.close()
    if record is None:
        raise ExportError(f"{source}: no such experiment file or run id. Fix: give an experiment .json file, or a "
                          "run id from GET /api/runs (runs live in DLPLAY_DATA_DIR)")
    weights = Path(record.weights_path) if record.weights_path else None
    if trained and (weights is None or not weights.is_file()):
        raise ExportError(f"run {source} ({record.status}) has no saved weights. Fix: export a finished or stopped "
                          "run; failed runs keep none")
    return Experiment.model_validate(record.experiment), weights, record.id, uploads_dir


def export_main(argv: Sequence[str]) -> int:
    """Run ``dlplay export``; returns the exit code."""
    args = _parser().parse_args(list(argv))
    try:
        info = check_format(args.format)
        experiment, weights, run_id, uploads_dir = _load_source(args.source, info.trained)
        if info.trained and weights is None:
            print(f"dlplay: {args.source} is an experiment, not a run: exporting its network as initialized from "
                  "train.seed (untrained). Export a run id for trained weights.", file=sys.stderr)
        exported = export_file(args.format, experiment, weights=weights, run_id=run_id, uploads_dir=uploads_dir)
    except ValueError as exc:  # ExportError, NetworkError, DataError, WeightsError, invalid documents
        print(f"dlplay: {exc}", file=sys.stderr)
        return EXIT_INVALID
    out = Path(args.out) if args.out else Path(exported.filename)
    try:
        out.write_bytes(exported.content)
    except OSError as exc:
        print(f"dlplay: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return EXIT_INVALID
    print(f"dlplay: wrote {out} ({len(exported.content):,} bytes, {FORMATS[args.format].label})", file=sys.stderr)
    return 0


def local_init_weights(experiment, init_from: str | None = None) -> Path | None:
    """The weights file ``dlplay run`` starts from: ``--init-from FILE``, else ``train.init_from`` in the data directory."""
    if init_from is not None:
        return Path(init_from)
    if experiment.train.init_from is None:
        return None
    from server.export.weights import resolve_init_from

    store = _open_store()
    try:
        return resolve_init_from(experiment.train.init_from, store=store, session_id=None)
    finally:
        store.close()


__all__ = ["export_main", "local_init_weights"]
