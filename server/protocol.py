"""Message encoding: the one place where tensors and dataclasses become JSON objects.

Every message is a dict with a ``type``; ``Stamper`` adds the envelope
(``run_id``, ``seq``, ``t``). ``dlplay run`` prints them as JSON Lines and the
websocket sends the same objects. PROTOCOL.md documents every type.

Images travel as PNG (base64 inside the JSON object), never as lists of floats.
"""

from __future__ import annotations

import base64
import math
import struct
import time
import zlib
from dataclasses import asdict, is_dataclass
from typing import Any, Iterable, Sequence

import numpy as np

# Message types that carry images. A slow client only needs the newest of each,
# so the server may coalesce them; every other type is kept in full.
IMAGE_TYPES = frozenset(
    {"filters", "feature_maps", "saliency", "gradcam", "attention", "boundary", "misclassified"}
)

# Series sent to the page are thinned to at most this many points per series.
DEFAULT_MAX_POINTS = 1000  # points per time series

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


def _png_bytes(pixels: np.ndarray) -> bytes:
    """Encode a uint8 array (H, W), (H, W, 3) or (H, W, 4) as PNG (no filter, zlib level 6)."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width, channels = pixels.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    # Each scanline starts with filter byte 0 (none).
    raw = np.concatenate([np.zeros((height, 1), np.uint8), pixels.reshape(height, width * channels)], axis=1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b"")


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
