"""The dataset cache: loaded datasets shared by validation and runs, bounded in bytes.

Live validation asks for the same data again and again while the page is edited, and
every run of a spec trains on the same tensors, so loaded datasets are kept (on the CPU,
read-only; a trainer moves its own copy to its device). Memory is the scarce resource on
a shared classroom server, so the cache is bounded by the bytes of its tensors, not by a
count of entries:

* before a dataset is made, its size is estimated from the spec alone
  (``catalog.dataset_bytes``: examples x example bytes); a spec that alone exceeds the
  budget is refused with `DatasetTooLarge` (HTTP 413 on REST, ``too_large`` at validation);
* least recently used entries are evicted to make room *before* the load starts, so
  the cache plus the dataset being made never exceed the budget;
* loads above ``large_bytes`` run one at a time (making a set takes about twice its size
  while it is split); others wait up to ``wait_seconds``, then get `DatasetBusy`;
* two requests for the same spec share one load: the second waits for the first's result.

Eviction only drops the cache's reference: a run still training on an evicted dataset
keeps it alive until the run ends.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from server.datasets import DataError, Dataset, load_dataset
from server.datasets.base import dataset_nbytes
from server.datasets.catalog import dataset_bytes
from server.schemas import DataSpec

MiB = 2**20


class DatasetTooLarge(DataError):
    """The dataset a spec names would not fit in the cache's budget even alone (REST: 413)."""

    code = "too_large"


class DatasetBusy(DataError):
    """Another large dataset is being made and did not finish within the wait (REST: 503)."""

    code = "busy"


def cache_key(spec: DataSpec) -> str:
    """The part of a spec that decides the tensors (augmentation is applied per batch, later)."""
    return spec.model_dump_json(exclude={"augmentation"})


@dataclass
class _Pending:
    """A load in progress that other requests for the same spec wait on."""

    done: threading.Event = field(default_factory=threading.Event)
    waiters: int = 0  # requests waiting on it (each returns the same dataset)
    dataset: Dataset | None = None
    error: BaseException | None = None


class DatasetCache:
    """Datasets by spec, least recently used first out, holding at most ``budget_bytes`` of tensors.

    ``get(spec, uploads_dir)`` is the whole interface callers need (validation, the
    scheduler's runs); ``peek`` looks without loading; ``large_load`` is the
    one-at-a-time gate, for other code that materialises a large set (previews of uploads).
    """

    def __init__(self, budget_bytes: int, *, large_bytes: int = 64 * MiB, wait_seconds: float = 30.0,
                 load: Callable[..., Dataset] = load_dataset,
                 estimate: Callable[..., int] = dataset_bytes) -> None:
        if budget_bytes < 1:
            raise ValueError(f"the dataset cache needs a positive budget, got {budget_bytes}")
        self.budget_bytes = int(budget_bytes)
        self.large_bytes = int(large_bytes)
        self.wait_seconds = float(wait_seconds)
        self._load = load
        self._estimate = estimate
        self._items: OrderedDict[str, tuple[Dataset, int]] = OrderedDict()  # key -> (dataset, its bytes)
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()  # guards everything above; never held while loading
        self._large = threading.Lock()  # held by the one large load running
        self.used_bytes = 0  # bytes of the cached datasets
        self.reserved_bytes = 0  # estimated bytes of the loads in progress
        self.hits = self.misses = self.evictions = 0

    # -- what callers use ------------------------------------------------------------

    def get(self, spec: DataSpec, uploads_dir: Path | None) -> Dataset:
        """The dataset ``spec`` describes; raises DataError like ``load_dataset``, DatasetTooLarge, DatasetBusy."""
        key = cache_key(spec)
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return item[0]
            pending = self._pending.get(key)
            owner = pending is None
            if owner:
                pending = self._pending[key] = _Pending()
            else:
                pending.waiters += 1
        if not owner:
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            assert pending.dataset is not None
            return pending.dataset
        try:
            pending.dataset = self._load_and_keep(key, spec, uploads_dir)
            return pending.dataset
        except BaseException as error:
            pending.error = error
            raise
        finally:
            with self._lock:
                del self._pending[key]
            pending.done.set()

    def peek(self, spec: DataSpec) -> Dataset | None:
        """The cached dataset of ``spec``, or None; never loads (and does not count as a use)."""
        with self._lock:
            item = self._items.get(cache_key(spec))
        return None if item is None else item[0]

    def estimate(self, spec: DataSpec, uploads_dir: Path | None) -> int:
        """Bytes ``spec``'s dataset will take, before making it; raises DatasetTooLarge when over the budget."""
        size = self._estimate(spec, uploads_dir=uploads_dir)
        if size > self.budget_bytes:
            raise DatasetTooLarge(
                f"would take {size / MiB:,.0f} MiB of memory; this server keeps at most {self.budget_bytes / MiB:,.0f} MiB "
                "of datasets", "ask for fewer examples (data.n_samples)", culprit=f"dataset '{spec.name[:60]}'",
            )
        return size

    @contextlib.contextmanager
    def large_load(self, nbytes: int, what: str = "dataset") -> Iterator[None]:
        """Hold the one-large-load-at-a-time gate while making ``nbytes`` (a no-op under ``large_bytes``)."""
        if nbytes <= self.large_bytes:
            yield
            return
        if not self._large.acquire(timeout=self.wait_seconds):
            raise DatasetBusy(
                f"another large dataset is being prepared and this one ({nbytes / MiB:,.0f} MiB) waited "
                f"{self.wait_seconds:g} s", "try again in a few seconds, or ask for fewer examples",
                culprit=f"dataset '{what[:60]}'",
            )
        try:
            yield
        finally:
            self._large.release()

    def stats(self) -> dict[str, int]:
        """Counters for /api/health-style reports and tests."""
        with self._lock:
            return {"entries": len(self._items), "used_bytes": self.used_bytes, "reserved_bytes": self.reserved_bytes,
                    "budget_bytes": self.budget_bytes, "hits": self.hits, "misses": self.misses,
                    "evictions": self.evictions}

    def forget(self, name: str) -> int:
        """Drop every cached dataset named ``name`` (an upload that was deleted); returns how many."""
        with self._lock:
            keys = [key for key, (dataset, _) in self._items.items() if dataset.name == name]
            for key in keys:
                _, size = self._items.pop(key)
                self.used_bytes -= size
        return len(keys)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.used_bytes = 0

    # -- inside ------------------------------------------------------------------------

    def _load_and_keep(self, key: str, spec: DataSpec, uploads_dir: Path | None) -> Dataset:
        size = self.estimate(spec, uploads_dir)
        with self.large_load(size, spec.name):
            with self._lock:
                self.misses += 1
                self.reserved_bytes += size
                self._evict_until(self.budget_bytes - self.reserved_bytes)
            try:
                dataset = self._load(spec, uploads_dir=uploads_dir)
            finally:
                with self._lock:
                    self.reserved_bytes -= size
        actual = dataset_nbytes(dataset)
        with self._lock:
            if actual <= self.budget_bytes:  # the estimate is an upper bound; this guards a wrong one
                self._items[key] = (dataset, actual)
                self.used_bytes += actual
                self._evict_until(self.budget_bytes - self.reserved_bytes, keep=key)
        return dataset

    def _evict_until(self, room: int, keep: str | None = None) -> None:
        """Drop least recently used entries until the cache holds at most ``room`` bytes (lock held)."""
        for key in list(self._items):
            if self.used_bytes <= room:
                return
            if key == keep:
                continue
            _, size = self._items.pop(key)
            self.used_bytes -= size
            self.evictions += 1
