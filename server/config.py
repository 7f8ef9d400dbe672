"""Server settings: one typed ``Settings`` (environment variables ``DLPLAY_*``) and one instance.

Every limit the server enforces lives here, with the reason for its default.
Tests build their own ``Settings(data_dir=tmp_path, ...)`` and pass it to
``server.app.create_app``; the running server uses ``settings``.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir() -> Path:
    """Per-user data folder: ``$XDG_DATA_HOME/dlplay``, else ``~/.local/share/dlplay``."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "dlplay"


class Settings(BaseSettings):
    """Everything the server can be told; each field is read from ``DLPLAY_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="DLPLAY_", extra="ignore")

    # -- where to listen -------------------------------------------------------
    host: str = "127.0.0.1"  # loopback only: expose it to a class on purpose (DLPLAY_HOST=0.0.0.0), never by accident
    port: int = Field(8000, ge=1, le=65535)  # uvicorn's customary port

    # -- where things live -----------------------------------------------------
    data_dir: Path = Field(default_factory=default_data_dir)  # SQLite store, weights/, uploads/; per user, survives restarts
    static_dir: Path = _REPO_ROOT / "static"  # the built page (index.html + bundle) served at /
    models_dir: Path = _REPO_ROOT / "models"  # preset experiment documents (GET /api/presets)

    # -- compute ---------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: each run's train.device decides (CUDA when available)
    # torch's intra-op threads on the CPU. One core is left to the event loop; the models here are small, and
    # OpenMP threads that outnumber free cores spin against each other (25x slower steps were measured on a
    # busy 2-core machine with 2 threads instead of 1).
    torch_threads: int = Field(default_factory=lambda: max(1, (os.cpu_count() or 2) - 1), ge=1)

    # -- per-run limits ----------------------------------------------------------
    max_params: int = Field(5_000_000, ge=1)  # parameters per network: a small VGG/ResNet fits, a 100M-param model does not
    max_activation_bytes: int = Field(512 * 1024**2, ge=1)  # bytes of activations for one batch (512 MiB)
    max_run_seconds: float = Field(1800.0, gt=0)  # wall seconds from a run's start to its forced stop (a lesson is ~30 min)

    # -- sharing the machine -----------------------------------------------------
    max_active_runs: int = Field(32, ge=1)  # runs admitted at once, server-wide (a class of ~30 students, one run each)
    max_active_runs_per_session: int = Field(4, ge=1)  # runs one browser may train at once; more wait in the queue
    max_queued_runs: int = Field(64, ge=0)  # runs waiting server-wide; beyond it a start is refused with a clear error
    max_queued_runs_per_session: int = Field(8, ge=0)  # so one student cannot fill the queue
    max_retained_runs: int = Field(32, ge=0)  # ended runs kept in memory (finished ones with their model, for probes)
    retain_seconds: float = Field(1800.0, ge=0)  # ...and for at most this long after they finish
    # Metrics points per second a run sends at most; faster log intervals are merged (a 2D net at 5,000 steps/s
    # logging every 10 steps would send 500 a second: more than a chart shows, and a replay log that grows fast).
    max_metrics_hz: float = Field(30.0, gt=0, le=1000)
    slice_seconds: float = Field(0.05, gt=0)  # longest time slice a run gets per turn (a few runs: few switches)
    round_seconds: float = Field(0.5, gt=0)  # ...shortened so a round over all runs takes about this long (20 runs: 25 ms)

    # -- transport and storage ---------------------------------------------------
    max_upload_bytes: int = Field(20 * 1024**2, ge=1)  # 20 MB: a few thousand small images as NPZ
    max_upload_examples: int = Field(60_000, ge=1)  # examples per uploaded file (MNIST-sized)
    max_message_bytes: int = Field(2 * 1024**2, ge=256)  # 2 MB per websocket command: a drawn image fits easily
    metric_history_points: int = Field(2000, ge=16)  # metric points (metrics messages) kept per run in the store
    dataset_cache_size: int = Field(8, ge=1)  # loaded datasets kept for live validation (LRU by data spec)
    # Frames waiting for one client; beyond it the client is disconnected (it reconnects and replays from its seq).
    outbox_max_frames: int = Field(20_000, ge=100)


settings = Settings()


def version() -> str:
    """dlplay's version: from the installed package, else the one in pyproject.toml."""
    try:
        return importlib.metadata.version("dlplay")
    except importlib.metadata.PackageNotFoundError:
        try:
            text = (_REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
        except OSError:
            return "unknown"
        found = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
        return found.group(1) if found else "unknown"


def get_settings() -> Settings:
    """The process-wide settings (``server.app.create_app`` uses them unless given others)."""
    return settings
