"""Message encoding: the one place where tensors and dataclasses become JSON objects.

Every message is a dict with a ``type``; ``Stamper`` adds the envelope
(``run_id``, ``seq``, ``t``). ``dlplay run`` prints them as JSON Lines and the
websocket sends the same objects.

The shape of every message is its pydantic model in ``server/messages.py`` (which
generates PROTOCOL.md's tables and the page's ``protocol.ts``). The builders here
return plain dicts and do not validate: a validation per message would cost
training speed. The tests validate what real sessions send against the models,
so a new field or message type needs its model first.

Images travel as PNG (base64 inside the JSON object), never as lists of floats.
"""

from __future__ import annotations

import base64
import json
import math
import re
import struct
import time
import zlib
from dataclasses import asdict, is_dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from server.probes.weights import tile_grid

# Message types that carry images. A slow client only needs the newest of each,
# so the server may coalesce them; every other type is kept in full.
IMAGE_TYPES = frozenset(
    {"filters", "feature_maps", "saliency", "gradcam", "attention", "boundary", "misclassified",
     "fgsm", "optimizer_race"}
)

# Series sent to the page are thinned to at most this many points per series.
DEFAULT_MAX_POINTS = 1000  # points per time series

# Gaps between tiles of a filter or feature-map grid: mid-grey, which is weight 0 on the filters' scale.
FILTER_GAP_GREY = 128

# Floats in messages are rounded to this many significant digits: charts need
# no more, and it keeps JSON lines short.
SIGNIFICANT_DIGITS = 6


class Stamper:
    """Adds the envelope to a run's messages: ``run_id``, ``seq`` (1, 2, ...) and ``t`` (s since start)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.seq = 0
        self._t0 = time.perf_counter()

    def stamp(self, message: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        return {
            "type": message["type"],
            "run_id": self.run_id,
            "seq": self.seq,
            "t": round(time.perf_counter() - self._t0, 4),
            **{k: v for k, v in message.items() if k != "type"},
        }


def clean_float(value: float | None) -> float | str | None:
    """A JSON-safe float: rounded; NaN and infinities become the strings "nan", "inf", "-inf"."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0.0:
        return 0.0
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def jsonable(value: Any) -> Any:
    """Convert dataclasses, numpy values and tensors (small ones) to JSON-safe Python values."""
    if is_dataclass(value) and not isinstance(value, type):
        return {k: jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, tuple) else ",".join(map(str, k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return clean_float(value)
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if hasattr(value, "detach"):  # a torch tensor
        return jsonable(value.detach().cpu().numpy())
    return value


# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------


# zlib level of message PNGs. Live views send tens of small images a second (a 32-unit boundary frame holds 34),
# and level 1 compresses a 64x64 map about 3x faster than level 6 for a few percent more bytes.
PNG_ZLIB_LEVEL = 1


def _png_bytes(pixels: np.ndarray) -> bytes:
    """Encode a uint8 array (H, W), (H, W, 3) or (H, W, 4) as PNG (no filter, zlib level ``PNG_ZLIB_LEVEL``)."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width, channels = pixels.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    # Each scanline starts with filter byte 0 (none).
    raw = np.concatenate([np.zeros((height, 1), np.uint8), pixels.reshape(height, width * channels)], axis=1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes(), PNG_ZLIB_LEVEL)) + chunk(b"IEND", b"")


def encode_image(pixels: np.ndarray | Any) -> dict[str, Any]:
    """A message image: ``{"w", "h", "c", "png"}`` with the PNG in base64.

    Args:
        pixels: uint8 (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA; float arrays are taken
            as values in [0, 1]. Tensors are accepted too.
    """
    if hasattr(pixels, "detach"):
        pixels = pixels.detach().cpu().numpy()
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        pixels = (np.clip(np.nan_to_num(pixels.astype(np.float32)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    return {
        "w": int(pixels.shape[1]),
        "h": int(pixels.shape[0]),
        "c": int(channels),
        "png": base64.b64encode(_png_bytes(np.ascontiguousarray(pixels))).decode("ascii"),
    }


def decode_image(image: dict[str, Any]) -> np.ndarray:
    """Inverse of ``encode_image`` for our own PNGs (used by tests and by predict on uploaded drawings)."""
    data = base64.b64decode(image["png"])
    pos, idat, width, height, color_type = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if tag == b"IHDR":
            width, height, _, color_type = struct.unpack(">IIBB", body[:10])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[color_type]
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, width * channels + 1)
    if raw[:, 0].any():
        raise ValueError("only unfiltered PNG scanlines are supported")
    pixels = raw[:, 1:].reshape(height, width, channels)
    return pixels[:, :, 0] if channels == 1 else pixels


# ---------------------------------------------------------------------------
# Series
# ---------------------------------------------------------------------------


def downsample(points: Sequence[Any], max_points: int = DEFAULT_MAX_POINTS) -> list[Any]:
    """Keep at most ``max_points`` evenly spaced points, always including the first and the last."""
    n = len(points)
    if n <= max_points:
        return list(points)
    idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    return [points[i] for i in idx]


# ---------------------------------------------------------------------------
# Core messages
# ---------------------------------------------------------------------------


def error_message(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


# ---------------------------------------------------------------------------
# Commands: the client's text frames, decoded safely
# ---------------------------------------------------------------------------

# Arrays and objects may nest this many levels in one command. The deepest real command, `start`
# with an experiment document (a lesson's compared values inside its steps), nests under 10; the
# limit stops a hostile frame (10,000 "[") before the JSON decoder recurses into it.
MAX_COMMAND_DEPTH = 32  # levels

# An integer in a command must fit in 64 bits: every count, index and seed the server takes does,
# and a bigger one (1 followed by 400 zeros) cannot even be turned into a float.
MAX_COMMAND_INT = 2**63 - 1

# Strings and escapes hide brackets from the depth count: ``"[[["`` is one string, not three levels.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_OPENERS = np.frombuffer(b"[{", np.uint8)
_CLOSERS = np.frombuffer(b"]}", np.uint8)


class CommandError(ValueError):
    """A command a client got wrong: becomes ``{"type": "error", "code", "message"}`` (PROTOCOL.md, Error codes).

    ``code`` is one of ``messages.ERROR_CODES``; ``message`` names the culprit and the fix. ``request_id``
    and ``run_id`` are the command's, when it was read far enough to know them.
    """

    def __init__(self, code: str, message: str, *, request_id: Any = None, run_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.run_id = run_id


class OutOfRange(float):
    """A JSON number no command field can take, as the decoder hands it on: infinity, plus the literal.

    Inside an experiment document it stays infinity, which the schema refuses with the field's path
    (``Spec`` forbids non-finite floats); anywhere else ``decode_command`` refuses the command.
    """

    literal: str

    def __new__(cls, literal: str) -> "OutOfRange":
        number = super().__new__(cls, math.inf if not literal.startswith("-") else -math.inf)
        number.literal = literal
        return number


# More digits than any 64-bit integer has (2**64 has 20): such a literal is not even converted (Python
# refuses to convert over 4,300 digits at all, and a million would take seconds).
_MAX_INT_DIGITS = 20


def _parse_int(literal: str) -> int | float:
    if len(literal.lstrip("-")) > _MAX_INT_DIGITS:
        return OutOfRange(literal)
    value = int(literal)
    return value if -MAX_COMMAND_INT <= value <= MAX_COMMAND_INT else OutOfRange(literal)


def _parse_float(literal: str) -> float:
    value = float(literal)
    return value if value - value == 0.0 else OutOfRange(literal)  # only inf - inf is not 0 (NaN has no literal)


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in the JSON ``text`` (0 for a bare number or string), without parsing it.

    Counts brackets outside strings in one vectorized pass: a 2 MB frame costs milliseconds and no
    recursion. For malformed text the count is still a depth the decoder would have to reach.
    """
    skeleton = np.frombuffer(_JSON_STRING.sub('""', text).encode("utf-8"), np.uint8)
    steps = np.isin(skeleton, _OPENERS).astype(np.int32) - np.isin(skeleton, _CLOSERS).astype(np.int32)
    return int(np.cumsum(steps).max(initial=0))


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number; send a finite number (or null where a field allows it)")


def decode_command(text: str, *, max_bytes: int, checked_elsewhere: tuple[str, ...] = ("experiment",)) -> dict[str, Any]:
    """A client's text frame as a command object; raises ``CommandError`` saying what is wrong.

    Codes: ``too_large`` (more than ``max_bytes`` UTF-8 bytes), ``bad_json`` (not JSON, the
    non-standard ``NaN``/``Infinity``, or nested deeper than ``MAX_COMMAND_DEPTH``),
    ``bad_command`` (JSON that is not an object), ``bad_arguments`` (a number out of range: an
    integer beyond 64 bits, or a literal too large for a double such as ``1e999``; the error
    names its field). The top-level fields in ``checked_elsewhere`` keep their ``OutOfRange``
    numbers for their own validation (an experiment document's schema names the path).
    """
    if len(text) > max_bytes or len(text.encode("utf-8")) > max_bytes:  # a character is at least one byte
        raise CommandError("too_large", f"a command may be at most {max_bytes:,} bytes; this one is {len(text.encode('utf-8')):,}")
    # A frame with fewer brackets than the limit cannot nest deeper (the common case, counted at C speed).
    if text.count("[") + text.count("{") > MAX_COMMAND_DEPTH:
        depth = json_depth(text)
        if depth > MAX_COMMAND_DEPTH:
            raise CommandError("bad_json", f"a command may nest arrays and objects at most {MAX_COMMAND_DEPTH} levels "
                                           f"deep; this one nests {depth:,}")
    out_of_range = False

    def parse_int(literal: str) -> int | float:
        nonlocal out_of_range
        value = _parse_int(literal)
        out_of_range = out_of_range or isinstance(value, OutOfRange)
        return value

    def parse_float(literal: str) -> float:
        nonlocal out_of_range
        value = _parse_float(literal)
        out_of_range = out_of_range or isinstance(value, OutOfRange)
        return value

    try:
        command = json.loads(text, parse_constant=_reject_constant, parse_int=parse_int, parse_float=parse_float)
    except (ValueError, RecursionError) as error:  # RecursionError: cannot happen below MAX_COMMAND_DEPTH; kept as a guard
        raise CommandError("bad_json", f"a command must be JSON: {error}") from None
    if not isinstance(command, dict):
        raise CommandError("bad_command", 'a command is a JSON object such as {"cmd": "ping"}')
    if out_of_range:
        culprit = _find_out_of_range(command, checked_elsewhere)
        if culprit is not None:
            path, number = culprit
            where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
            name = command.get("cmd")
            if isinstance(name, str) and 0 < len(name) <= 40:
                where = f"{name} {where}"
            request_id = None if path[0] == "id" else command.get("id")
            raise CommandError("bad_arguments", f"{where}: {_number_problem(number)}", request_id=request_id,
                               run_id=command.get("run_id") if isinstance(command.get("run_id"), str) else None)
    return command


def _number_problem(number: OutOfRange) -> str:
    """Why an out-of-range number cannot be taken, and what can."""
    literal = number.literal.lstrip("-")
    if "." in literal or "e" in literal.lower():
        return (f"{number.literal[:24]} is too large for a double (it would read as infinity); "
                "numbers must be finite, at most about 1.8e308")
    return (f"an integer of {len(literal):,} digits is out of range; integers must fit in 64 bits "
            f"(-{MAX_COMMAND_INT:,} to {MAX_COMMAND_INT:,})")


def _find_out_of_range(command: dict[str, Any], skip: tuple[str, ...]) -> tuple[tuple[Any, ...], OutOfRange] | None:
    """The path (keys and list indices) and value of an ``OutOfRange`` number outside the ``skip`` fields.

    Runs only when the decoder met one; walks without recursion.
    """
    stack: list[tuple[tuple[Any, ...], Any]] = [((key,), value) for key, value in command.items() if key not in skip]
    while stack:
        path, value = stack.pop()
        if isinstance(value, OutOfRange):
            return path, value
        if isinstance(value, dict):
            stack.extend(((*path, key), item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend(((*path, index), item) for index, item in enumerate(value))
    return None


def status_message(state: str, **extra: Any) -> dict[str, Any]:
    return {"type": "status", "state": state, **jsonable(extra)}


def metrics_message(step_result: Any, train_loss: float, train_acc: float | None, examples_per_s: float,
                    val_loss: float | None, val_acc: float | None) -> dict[str, Any]:
    """One point of the training curves (see PROTOCOL.md ``metrics``)."""
    return {
        "type": "metrics",
        "step": step_result.step,
        "epoch": clean_float(step_result.epoch),
        "train_loss": clean_float(train_loss),
        "train_acc": clean_float(train_acc),
        "val_loss": clean_float(val_loss),
        "val_acc": clean_float(val_acc),
        "lr": clean_float(step_result.lr),
        "examples_per_s": clean_float(examples_per_s),
    }


def many(messages: Iterable[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Drop the ``None`` entries of a list of optional messages."""
    return [m for m in messages if m is not None]


# ---------------------------------------------------------------------------
# Probe messages (see PROTOCOL.md). Each takes a probe's dataclass and returns
# a JSON-safe dict; images become PNGs here and nowhere else.
# ---------------------------------------------------------------------------


def _hist_fields(stats: Any) -> dict[str, Any]:
    """Summary statistics and a histogram over ``edges = [lo, hi]`` in evenly spaced bins."""
    edges = list(stats.edges)
    return {
        "mean": clean_float(stats.mean),
        "std": clean_float(stats.std),
        "min": clean_float(stats.min),
        "max": clean_float(stats.max),
        "hist": [int(c) for c in stats.hist],
        "edges": [clean_float(edges[0]), clean_float(edges[-1])] if edges else [0.0, 0.0],
        "nonfinite": int(getattr(stats, "nonfinite", 0)),
    }


def activations_message(step: int, layers: Sequence[Any]) -> dict[str, Any]:
    """Per-layer activation statistics from ``probes.activation_stats``."""
    return {
        "type": "activations",
        "step": step,
        "layers": [
            {
                "layer": s.layer,
                "kind": s.kind,
                "act": s.act,
                **_hist_fields(s.stats),
                "dead_fraction": clean_float(s.dead_fraction),
                "saturated_fraction": clean_float(s.saturated_fraction),
            }
            for s in layers
        ],
    }


def gradients_message(step: int, grads: Sequence[Any], ratios: Sequence[Any], layer_of: Any) -> dict[str, Any]:
    """Gradient norms per parameter and per layer output, and update/weight ratios per parameter."""
    params = [g for g in grads if getattr(g, "source", "param") == "param"]
    outputs = [g for g in grads if getattr(g, "source", "param") != "param"]
    return {
        "type": "gradients",
        "step": step,
        "params": [{"name": g.name, "layer": layer_of(g.name), "norm": clean_float(g.norm), "std": clean_float(g.std)} for g in params],
        "outputs": [{"layer": g.name, "norm": clean_float(g.norm), "std": clean_float(g.std)} for g in outputs],
        "update_ratios": [{"name": r.name, "layer": layer_of(r.name), "ratio": clean_float(r.ratio)} for r in ratios],
    }


def weights_message(step: int, layers: Sequence[Any]) -> dict[str, Any]:
    """Weight histograms per layer from ``probes.weight_histograms``."""
    return {
        "type": "weights",
        "step": step,
        "layers": [{"layer": w.layer, "kind": w.kind, "shape": list(w.shape), **_hist_fields(w.stats)} for w in layers],
    }


def filters_message(step: int, layer: str, grid: Any) -> dict[str, Any]:
    """A conv layer's filters as one grid image; pixel 128 is weight 0, 255 is +scale, 1 is -scale."""
    images = np.asarray(grid.images)
    cols = int(grid.cols) if images.shape[0] > 0 else 1
    return {
        "type": "filters",
        "step": step,
        "layer": layer,
        "rgb": bool(grid.rgb),
        "scale": clean_float(grid.scale),
        "n": int(images.shape[0]),
        "cols": min(cols, max(1, images.shape[0])),
        "tile": [int(images.shape[1]), int(images.shape[2])],
        "tiles": [[int(o), None if i is None else int(i)] for o, i in grid.tiles],
        "max_abs": clean_float(grid.max_abs),
        "grid": encode_image(tile_grid(images, cols, pad=1, fill=FILTER_GAP_GREY)),
    }


def feature_maps_message(step: int, index: int, label: int, image: dict | None, layers: Sequence[Any]) -> dict[str, Any]:
    """Every layer's output for one validation example; channel grids as images, flat outputs as values."""
    out = []
    for fm in layers:
        entry: dict[str, Any] = {"layer": fm.layer, "kind": fm.kind, "shape": list(fm.shape),
                                 "lo": clean_float(fm.lo), "hi": clean_float(fm.hi), "grid": None, "values": None, "cols": None}
        if fm.images is not None:
            k = fm.images.shape[0]
            cols = int(math.ceil(math.sqrt(k)))
            entry.update(grid=encode_image(tile_grid(np.asarray(fm.images), cols, pad=1, fill=FILTER_GAP_GREY)), cols=cols, channels=int(k),
                         tile=[int(fm.images.shape[1]), int(fm.images.shape[2])])
        else:
            entry["values"] = jsonable(np.asarray(fm.values))
        out.append(entry)
    return {"type": "feature_maps", "step": step, "index": index, "label": label, "input": image, "layers": out}


def _heat(values: np.ndarray) -> dict[str, Any]:
    """A float map in [0, 1] as a grey PNG (255 = most)."""
    return encode_image(np.asarray(values, dtype=np.float32))


def saliency_message(step: int, index: int, image: dict, result: Any, smoothgrad: bool) -> dict[str, Any]:
    return {"type": "saliency", "step": step, "index": index, "target": int(result.target),
            "predicted": int(result.predicted), "smoothgrad": bool(smoothgrad), "input": image, "map": _heat(result.map)}


def gradcam_message(step: int, index: int, image: dict, result: Any, probs: Sequence[float] | None = None) -> dict[str, Any]:
    return {"type": "gradcam", "step": step, "index": index, "layer": result.layer, "target": int(result.target),
            "predicted": int(result.predicted), "probs": jsonable(probs) if probs is not None else None,
            "input": image, "map": _heat(result.map)}


def attention_message(step: int, index: int, image: dict, masks: Sequence[Any]) -> dict[str, Any]:
    out = []
    for m in masks:
        if m.kind == "channel":
            out.append({"layer": m.layer, "kind": "channel", "values": jsonable(list(m.values)), "map": None})
        else:
            out.append({"layer": m.layer, "kind": "spatial", "values": None, "map": _heat(np.asarray(m.values))})
    return {"type": "attention", "step": step, "index": index, "input": image, "masks": out}


# Hidden units' maps are drawn as thumbnails beside the plot, so they travel at most this many cells a side:
# a 32-unit layer's 64x64 maps were 34 PNGs a frame, most of a 20-frames/s view's cost on both ends.
# (TensorFlow Playground also draws its neuron heat maps coarser than the main one.)
NEURON_MAP_MAX = 32  # cells per side


def _neuron_thumbnails(maps: np.ndarray) -> np.ndarray:
    """(units, R, R) -> (units, r, r) with r <= NEURON_MAP_MAX: every k-th cell from the middle of each k x k block.

    A unit's output is smooth at this scale (one affine map through a smooth activation, or a few), so a
    sample is as good as a block mean, at no cost (a mean over the blocks took 2 ms a frame)."""
    rows, cols = maps.shape[1:]
    k = -(-max(rows, cols) // NEURON_MAP_MAX)
    if k <= 1:
        return maps
    return np.ascontiguousarray(maps[:, k // 2 :: k, k // 2 :: k])


def boundary_message(step: int, boundary: Any, points: np.ndarray) -> dict[str, Any]:
    """The 2D decision regions (grey = P(class 1); or the predicted class per cell) and hidden-unit maps.

    ``points`` is (n, 3): x, y, label of validation points to draw on top.
    """
    probs = np.asarray(boundary.probs)
    p1 = probs if probs.ndim == 2 else probs[..., 1] if probs.shape[-1] == 2 else None
    neurons = []
    for layer, maps in boundary.neuron_maps.items():
        maps = _neuron_thumbnails(np.nan_to_num(np.asarray(maps, dtype=np.float32)))  # (units, r, r), r <= 32
        lows, highs = maps.min(axis=(1, 2)), maps.max(axis=(1, 2))
        spans = np.maximum(np.maximum(np.abs(lows), np.abs(highs)), 1e-12)
        # Symmetric scale around 0 so the sign of a unit's output reads as colour; all units in one pass.
        grey = ((maps / spans[:, None, None] + 1.0) * 127.5 + 0.5).clip(0, 255).astype(np.uint8)
        for unit in range(maps.shape[0]):
            neurons.append({"layer": layer, "unit": unit, "lo": clean_float(float(lows[unit])),
                            "hi": clean_float(float(highs[unit])), "map": encode_image(grey[unit])})
    return {
        "type": "boundary",
        "step": step,
        "extent": [clean_float(v) for v in boundary.extent],
        "resolution": int(np.asarray(boundary.predicted).shape[0]),
        "probs": _heat(p1) if p1 is not None else None,
        "predicted": encode_image(np.asarray(boundary.predicted, dtype=np.uint8)),
        "neurons": neurons,
        "points": [[clean_float(x), clean_float(y), int(label)] for x, y, label in np.asarray(points)],
    }


def confusion_message(step: int, classes: Sequence[str], result: Any) -> dict[str, Any]:
    return {
        "type": "confusion",
        "step": step,
        "classes": list(classes),
        "matrix": np.asarray(result.matrix).astype(int).tolist(),
        "per_class_accuracy": jsonable(result.per_class_accuracy),
        "accuracy": clean_float(result.accuracy),
        "cells": {f"{t},{p}": [int(i) for i in idx] for (t, p), idx in result.cell_examples.items()},
    }


def misclassified_message(step: int, mistakes: Sequence[Any], images: np.ndarray | None) -> dict[str, Any]:
    return {
        "type": "misclassified",
        "step": step,
        "examples": [
            {"index": int(m.index), "true": int(m.true), "predicted": int(m.predicted), "confidence": clean_float(m.confidence),
             "image": encode_image(images[i]) if images is not None else None}
            for i, m in enumerate(mistakes)
        ],
    }


def prediction_message(result: Any, classes: Sequence[str]) -> dict[str, Any]:
    return {"type": "prediction", "probs": jsonable(result.probs), "predicted": int(result.predicted), "classes": list(classes)}


def backprop_trace_message(trace: Any) -> dict[str, Any]:
    return {"type": "backprop_trace", **jsonable(trace)}


def gradient_check_message(report: Any) -> dict[str, Any]:
    return {"type": "gradient_check", **jsonable(report)}


def hint_message(hint: Any) -> dict[str, Any]:
    return {"type": "hint", "code": hint.code, "severity": hint.severity, "message": hint.message,
            "evidence": jsonable(hint.evidence), "chart": hint.chart}


# ---------------------------------------------------------------------------
# Lessons (issue 11): fooling the network (20) and the optimizer race (9)
# ---------------------------------------------------------------------------


def _raw_image(pixels: Any) -> dict[str, Any]:
    """A raw image tensor ``(C, H, W)`` in [0, 1] (1 or 3 channels) as a message Image."""
    pixels = pixels.detach().cpu().float()
    return encode_image(pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy())


def fgsm_message(step: int, index: int, example: Any) -> dict[str, Any]:
    """One FGSM example (``probes.adversarial.AdversarialExample``); the perturbation is amplified to be seen."""
    eps = example.epsilon
    # Grey 128 is "unchanged", 255 is +epsilon and 0 is -epsilon: the perturbation stretched to the full range.
    delta = example.perturbation
    amplified = delta / (2 * eps) + 0.5 if eps > 0 else delta.new_full(delta.shape, 0.5)

    def prediction(probs: list[float], predicted: int) -> dict[str, Any]:
        return {"predicted": int(predicted), "confidence": clean_float(probs[predicted]), "probs": jsonable(probs)}

    return {
        "type": "fgsm", "step": step, "index": index, "label": int(example.label),
        "target": None if example.target is None else int(example.target), "epsilon": clean_float(eps),
        "original": _raw_image(example.original), "perturbation": _raw_image(amplified),
        "adversarial": _raw_image(example.adversarial),
        "original_prediction": prediction(example.original_probs, example.original_predicted),
        "adversarial_prediction": prediction(example.adversarial_probs, example.adversarial_predicted),
        "fooled": bool(example.fooled),
    }


def fgsm_sweep_message(step: int, sweep: Any) -> dict[str, Any]:
    """Accuracy under FGSM against epsilon (``probes.adversarial.EpsilonSweep``)."""
    return {"type": "fgsm_sweep", "step": step, "n": int(sweep.n), "epsilons": jsonable(sweep.epsilons),
            "accuracy": jsonable(sweep.accuracy)}


def optimizer_race_message(race: Any, surface: np.ndarray) -> dict[str, Any]:
    """Every racer's path (``lessons.optim_race.Race``) and the function's log-scaled surface as a grey image."""
    fn = race.function
    return {
        "type": "optimizer_race", "function": fn.name, "title": fn.title, "formula": fn.formula,
        "extent": [clean_float(v) for v in fn.extent], "start": [clean_float(v) for v in race.start],
        "minima": [[clean_float(x), clean_float(y)] for x, y in fn.minima], "min_value": clean_float(fn.min_value),
        "steps": int(race.steps),
        "surface": _heat(surface),
        "racers": [
            {"optimizer": t.optimizer, "lr": clean_float(t.lr), "points": jsonable(t.points), "losses": jsonable(t.losses),
             "evaluations": int(t.evaluations), "diverged_at": t.diverged_at}
            for t in race.trajectories
        ],
    }
