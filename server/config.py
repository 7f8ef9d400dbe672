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
# Spare run processes kept ready (Settings.spare_run_processes): a few for one user, one per student for a class.
SPARE_RUN_PROCESSES = 4
CLASS_SPARE_RUN_PROCESSES = 50


def physical_memory_bytes() -> int:
    """This machine's RAM in bytes (8 GiB when the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 8 * 1024**3


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

    # Where runs train: "process" = each run in its own child process, which the server can freeze between
    # time slices and kill mid-step (stop and the time limit take effect within seconds; a run that runs out of
    # memory dies alone); "thread" = in the server process (no isolation; for debugging); "ray" = each run in an
    # actor on the Ray cluster at ray_address (server/ray_backend.py; needs `pip install -e .[cluster]`).
    isolation: Literal["process", "thread", "ray"] = "process"
    # Runs computing at the same time on the CPU, each in its own process with torch_threads / cpu_workers
    # threads (at least one). One per core, up to 8: the small models here gain little from more threads,
    # and a student whose runs share a worker with nobody else's is not slowed by another's many runs
    # (bench/bench_abuse.py). The event loop shares the cores with them; it needs little.
    cpu_workers: int = Field(default_factory=lambda: max(1, min(os.cpu_count() or 2, 8)), ge=1, le=64)
    # Run processes forked and warmed up ahead of need (server/isolation.py SpareChildren), so a start does not
    # wait for a fork: each idle one holds ~18 MiB of its own. None: 4, or 50 while a class is open (a class
    # of 50 pressing Train at once: issue 10). 0: every run forks its own.
    spare_run_processes: int | None = Field(None, ge=0, le=256)

    # -- per-run limits ----------------------------------------------------------
    max_params: int = Field(5_000_000, ge=1)  # parameters per network: a small VGG/ResNet fits, a 100M-param model does not
    max_activation_bytes: int = Field(512 * 1024**2, ge=1)  # bytes of activations for one batch (512 MiB)
    max_run_seconds: float = Field(1800.0, gt=0)  # wall seconds from a run's start to its forced stop (a lesson is ~30 min)
    # Memory a run's process may allocate beyond the engine it starts with; past it, its allocations fail and it
    # ends alone with out_of_memory.
    # 2 GiB (an eighth of RAM on smaller machines) holds MNIST-sized runs with room to spare; 0 = no limit.
    # Admission (server/cost.py) refuses a run whose estimate alone exceeds it, before it is queued.
    max_run_memory_bytes: int = Field(default_factory=lambda: min(2 * 1024**3, physical_memory_bytes() // 8), ge=0)
    # Multiply-adds one training step may take (server/cost.py): ~1 s of this machine's cores at a few GMAC/s
    # each. The largest preset (alexnet_small, batch 64) needs 2.5 G; 0 = no limit.
    max_step_macs: int = Field(default_factory=lambda: 8 * 10**9 * (os.cpu_count() or 2), ge=0)

    # -- sharing the machine -----------------------------------------------------
    # Runs admitted at once, server-wide: a class of 50 students with a run each, and a few comparing two (issue
    # 10). Past it runs wait in the queue, and a waiting student sees no curve at all: time-sliced runs share the
    # cores fairly (server/worker.py), so admitting them is better. Each is a process of ~20 MB (PSS).
    max_active_runs: int = Field(64, ge=1)
    max_active_runs_per_session: int = Field(4, ge=1)  # runs one browser may train at once; more wait in the queue
    max_queued_runs: int = Field(64, ge=0)  # runs waiting server-wide; beyond it a start is refused with a clear error
    max_queued_runs_per_session: int = Field(8, ge=0)  # so one student cannot fill the queue
    max_retained_runs: int = Field(16, ge=0)  # ended runs kept in memory (finished ones with their model, for probes)
    retain_seconds: float = Field(900.0, ge=0)  # ...and for at most this long after they finish (each is a process)
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
    # Frames waiting for one client; beyond it the client is disconnected (it reconnects and replays from its seq).
    outbox_max_frames: int = Field(20_000, ge=100)

    # -- memory (issue 9: bounded memory everywhere; server/data_cache.py, server/uploads.py) -----------------
    # The resident memory the server process is sized to stay under (DLPLAY_MAX_MEMORY_BYTES). The parts that
    # grow with requests are bounded from it: the dataset cache holds a quarter; a dataset being made takes at
    # most about as much again while it is split (one large one at a time); uploads are parsed one at a time
    # from at most max_upload_bytes. The other half is the interpreter, torch and the runs' own memory.
    # tests/api/test_bounded_memory.py replays the repros against a server and checks its peak RSS.
    max_memory_bytes: int = Field(default_factory=lambda: physical_memory_bytes() // 2, ge=64 * 1024**2)
    dataset_cache_bytes: int | None = Field(None, ge=1)  # tensors of loaded datasets; None: max_memory_bytes / 4
    # A dataset estimated above this is made while no other large one is (making a set briefly takes about
    # twice its size); smaller ones (every 2D set, MNIST-5k at 16 MB) load side by side.
    dataset_large_bytes: int = Field(64 * 1024**2, ge=1)
    dataset_wait_seconds: float = Field(30.0, ge=0)  # how long a large load waits for another before "busy"
    # An upload's examples as float32 in memory (what training on it costs): MNIST-60k is 188 MB. An NPZ of
    # uint8 images or zeros can compress 4-100x, so this is checked from the array headers before parsing.
    max_upload_dataset_bytes: int = Field(256 * 1024**2, ge=1)
    upload_parse_slots: int = Field(1, ge=1)  # uploads parsed at once (each may take a few times its size)
    # Quotas count the examples' float32 bytes (the same measure; stored files are compressed and smaller).
    # Per session: a student's few files; server-wide: the disk a class may fill. Over it, uploads are refused
    # until some are deleted (DELETE /api/uploads/{id}) or expire.
    upload_quota_files_per_session: int = Field(10, ge=1)
    upload_quota_bytes_per_session: int = Field(512 * 1024**2, ge=1)
    upload_quota_files: int = Field(300, ge=1)  # a class of 30, ten files each
    upload_quota_bytes: int = Field(4 * 1024**3, ge=1)
    # Uploads are deleted this long after they were made (a class meets weekly; the quota frees itself), by a
    # sweep at start and every upload_sweep_seconds.
    upload_max_age_seconds: float = Field(7 * 24 * 3600.0, gt=0)
    upload_sweep_seconds: float = Field(600.0, gt=0)

    def spare_processes(self, class_open: bool) -> int:
        """How many spare run processes to keep ready (``spare_run_processes``, or its default for the mode)."""
        if self.spare_run_processes is not None:
            return self.spare_run_processes
        return CLASS_SPARE_RUN_PROCESSES if class_open else SPARE_RUN_PROCESSES

    @property
    def dataset_cache_budget(self) -> int:
        """Bytes of dataset tensors the cache may hold: ``dataset_cache_bytes``, else a quarter of ``max_memory_bytes``."""
        return self.dataset_cache_bytes if self.dataset_cache_bytes is not None else self.max_memory_bytes // 4

    # -- who may talk to the server (issue 9; server/security.py) ------------------------------------------
    # Host names besides loopback, the bind address and this machine's own names/addresses that the server
    # answers to, comma-separated (e.g. "dlplay.school.lan"); any other Host header is refused (DNS rebinding).
    allowed_hosts: str = ""
    # Required to use the server when it listens beyond loopback (`dlplay --host 0.0.0.0 --token ...`).
    access_token: str | None = None
    # Sessions are free to mint (a signed cookie), so the limits that matter are per address: one laptop in
    # a class gets what one student needs, however many sessions it mints (issue 9, repro 3).
    max_sessions_per_ip_per_hour: int = Field(60, ge=1)  # a student clearing cookies or opening private windows
    max_runs_per_ip: int = Field(12, ge=1)  # training + waiting across an address's sessions: one session's 4 + 8
    max_uploads_per_ip_per_hour: int = Field(60, ge=1)  # dataset and weights files (each up to max_upload_bytes)
    max_access_attempts_per_ip_per_hour: int = Field(20, ge=1)  # wrong access tokens before an address is refused

    # -- beyond one machine (issue 10) ---------------------------------------------------------------------
    # A Ray cluster to train runs on (`dlplay class --ray ADDRESS`, e.g. "ray://head:10001" or "auto"); None:
    # runs train on this machine. The web server stays the one place students connect to. Used when isolation
    # is "ray" (`--ray` sets both).
    ray_address: str | None = None
    # This machine's address on the Ray cluster, when it has several (a GCS address joins through this
    # machine's raylet, found by this address; None: the one Ray picks, the address that reaches the head).
    ray_node_ip: str | None = None


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
