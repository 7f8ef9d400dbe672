"""FastAPI dependencies: the app's settings, store, scheduler and dataset cache, and the caller's session.

Everything lives on ``app.state`` (set by ``server.app.create_app`` and its
lifespan), never in module globals, so a test can build as many apps as it likes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from fastapi import HTTPException, Request

from server.config import Settings
from server.datasets import Dataset, load_dataset
from server.jobs import Scheduler
from server.schemas import DataSpec
from server.store import RunRecord, Store


class DatasetCache:
    """Loaded datasets, least recently used first out, keyed by the data spec's JSON.

    Live validation while the page is being edited asks for the same data again and
    again; generating a spiral is cheap but loading MNIST is not. Datasets are kept
    on the CPU and shared read-only (the trainer moves its own copy to the device).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Dataset] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, spec: DataSpec, uploads_dir: Path | None) -> Dataset:
        """The dataset ``spec`` describes; raises DataError like ``load_dataset``."""
        key = spec.model_dump_json()
        with self._lock:
            dataset = self._items.get(key)
            if dataset is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return dataset
        dataset = load_dataset(spec, uploads_dir=uploads_dir)  # outside the lock: loads may run side by side
        with self._lock:
            self.misses += 1
            self._items[key] = dataset
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return dataset


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_scheduler(request: Request) -> Scheduler:
    return request.app.state.scheduler


def get_datasets(request: Request) -> DatasetCache:
    return request.app.state.datasets


def get_session_id(request: Request) -> str:
    """The caller's session (``SessionMiddleware`` puts it on every request)."""
    return request.state.session_id


def owned_run(store: Store, session_id: str, run_id: str) -> RunRecord:
    """A run of this session, or 404: another session's run is indistinguishable from a missing one."""
    record = store.get_run(run_id)
    if record is None or record.session_id != session_id:
        raise HTTPException(status_code=404, detail=f"no run {run_id!r} in this session")
    return record
