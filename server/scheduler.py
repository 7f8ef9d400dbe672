"""The scheduler: admits, queues and tracks runs, and hands them to device workers.

Runs are admitted while slots are free (server-wide and per session), oldest first;
each admitted run goes to a ``DeviceWorker`` (``server/worker.py``), which trains its
runs in fair time slices. Everything a client asks of a run goes through here
(``command``, ``subscribe``, ``watch``, ``delete``), is cheap, and is safe to call
from the event loop. Messages leave a run through its ``RunChannel``
(``server/channel.py``).
"""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

from server import protocol
from server.channel import Outbox, RunChannel
from server.config import Settings
from server.schemas import Experiment
from server.store import Store

if TYPE_CHECKING:
    from server.worker import DeviceWorker

class SchedulerError(ValueError):
    """A command the scheduler refuses; ``code`` goes into the client's ``error`` message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def owner_of(run: "Run") -> str:
    """Who a run's compute share belongs to: a class member (issue 10: students behind one NAT address each get
    their share), else its computer's address (sessions are free to mint), else its session."""
    return run.owner or run.client_ip or run.session_id


def new_run_id() -> str:
    """A short random id (64 bits, hex): unguessable enough, and short enough for URLs."""
    return secrets.token_hex(8)


def resolve_device(server_device: str, requested: str) -> str:
    """The device a run trains on: the server's setting wins over the experiment's ``train.device``."""
    cuda = torch.cuda.is_available()
    if server_device == "cpu":
        return "cpu"
    if server_device == "cuda":
        return "cuda" if cuda else "cpu"
    if requested == "cuda" and not cuda:
        raise SchedulerError(
            "no_cuda", "train.device is 'cuda' but this server has no CUDA GPU. Fix: set train.device to 'auto' or 'cpu'"
        )
    if requested == "cpu":
        return "cpu"
    return "cuda" if cuda else "cpu"


# ---------------------------------------------------------------------------
# Frames, outboxes, channels
# ---------------------------------------------------------------------------


# Runs
# ---------------------------------------------------------------------------


@dataclass(eq=False)
class Run:
    """The scheduler's record of one run (queued, active, or ended and still in memory)."""

    id: str
    session_id: str
    experiment: Experiment
    device: str
    channel: RunChannel
    state: str = "queued"  # queued | starting | running | paused | finished | stopped | failed | deleted
    session: Any = None  # the RunSession once admitted; None again once closed
    position: int | None = None  # place in the queue, 1-based
    admitted_at: float | None = None  # time.monotonic() of admission
    credit: float = 0.0  # seconds of compute this run is owed (+) or has overdrawn (-); see DeviceWorker._slice
    client_ip: str | None = None  # the address that started it: max_runs_per_ip counts across its sessions
    owner: str | None = None  # the class member who started it (server/classroom.py): the fair share is per student
    ended_at: float | None = None
    pending_metrics: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None  # the stamped final message, once sent
    request_id: Any = None
    worker: Any = None  # the DeviceWorker training it, once admitted
    kill_at: float | None = None  # monotonic time after which a run asked to stop is killed mid-step
    heavy_probe: bool = False  # a heavy on-demand probe is in progress (at most one per run)
    stopping: bool = False  # a stop was asked for (by the user or the time limit) and is under way
    start_paused: bool = False  # open at step 0 and wait for step/resume (the Step button before any run)
    # Commands that arrived while the run was starting: carried out, in order, once it has started.
    deferred: list[tuple[str, dict[str, Any], Future]] = field(default_factory=list)
    stop_futures: list[Future] = field(default_factory=list)  # resolved when the stop has taken effect
    # What each subscribed connection watches: outbox -> {view: args}, or None for the default views.
    # Changed on the event loop under the scheduler's lock; the worker applies the union to the session.
    watchers: dict[Any, dict[str, dict[str, Any]] | None] = field(default_factory=dict)

    def watched_views(self) -> dict[str, dict[str, Any]]:
        """The union of what the subscribers watch (arguments from the latest to ask); empty with none."""
        union: dict[str, dict[str, Any]] = {}
        for views in list(self.watchers.values()):
            if views is None:
                from server.live import DEFAULT_VIEWS  # local: live pulls in the probes

                views = {name: {} for name in DEFAULT_VIEWS}
            for name, args in views.items():
                union[name] = args
        return union

    @property
    def active(self) -> bool:
        return self.state in ("starting", "running", "paused")

    @property
    def ended(self) -> bool:
        return self.state in ("finished", "stopped", "failed")


SessionFactory = Callable[..., Any]


def _default_session_factory() -> Any:
    from server.runner import RunSession  # local: the runner pulls in the whole engine

    return RunSession


def _default_limits(settings: Settings) -> Any:
    from server.runner import Limits

    return Limits(
        max_params=settings.max_params,
        max_activation_bytes=settings.max_activation_bytes,
        max_seconds=settings.max_run_seconds,
    )


class Scheduler:
    """Admits, queues and tracks runs; ``DeviceWorker`` threads (``server/worker.py``) train them.

    Methods are called from the event loop (and are cheap); the heavy work happens
    in the workers. ``session_factory(experiment, run_id=, device=, limits=,
    uploads_dir=[, dataset=])`` builds a ``RunSession`` (tests pass a fake).
    ``datasets``, if given, is a cache with ``get(data_spec, uploads_dir) -> Dataset``:
    runs on the same data then share one loaded copy instead of loading their own.
    """

    def __init__(self, store: Store, settings: Settings, *, session_factory: SessionFactory | None = None,
                 limits: Any = None, datasets: Any = None, isolation: str | None = None) -> None:
        self.store = store
        self.settings = settings
        # A factory passed in (a test's fake session) runs in-process unless asked otherwise.
        self.isolation = isolation or ("thread" if session_factory is not None else settings.isolation)
        self._session_factory = session_factory
        self._datasets = datasets
        self._limits = limits
        self._lock = threading.RLock()
        self._runs: dict[str, Run] = {}
        self._queue: list[Run] = []
        self._workers: dict[str, list[DeviceWorker]] = {}
        self._closed = False
        self._submit_listeners: list[Callable[[Run], None]] = []  # told of every accepted run (the class monitor)

    # -- queries -----------------------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        with self._lock:
            return self._runs.get(run_id)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                "active": sum(r.active for r in self._runs.values()),
                "queued": len(self._queue),
            }

    # -- submitting --------------------------------------------------------------

    def add_submit_listener(self, listener: Callable[[Run], None]) -> None:
        """Call ``listener(run)`` for every run accepted from now on (on the submitter's thread, after the lock).

        It may subscribe to ``run.channel`` (the channel replays what was already sent); it must be quick.
        """
        self._submit_listeners.append(listener)

    def submit(self, session_id: str, experiment: Experiment, *, subscriber: Outbox | None = None,
               request_id: Any = None, client_ip: str | None = None, paused: bool = False,
               owner: str | None = None) -> Run:
        """Accept a validated experiment: record it, queue it, admit it when a slot is free.

        The run's first message is ``status queued`` with its ``position`` (1 = next);
        ``subscriber`` (if given) is subscribed before it, so it sees every seq.
        Raises ``SchedulerError`` when a limit refuses it. ``client_ip`` (the caller's address, if known)
        is held to ``max_runs_per_ip`` runs training or waiting across all its sessions (issue 9).
        ``paused``: the run opens at step 0 and waits for ``step`` or ``resume`` instead of training.
        ``owner``: whose compute share the run takes (``owner_of``): a class member's id; None: its address.
        """
        device = resolve_device(self.settings.device, experiment.train.device)
        s = self.settings
        with self._lock:
            if self._closed:
                raise SchedulerError("shutting_down", "the server is shutting down; try again in a moment")
            if client_ip is not None:
                from_ip = sum(r.client_ip == client_ip and (r.active or r.state == "queued") for r in self._runs.values())
                if from_ip >= s.max_runs_per_ip:
                    raise SchedulerError(
                        "too_many_runs",
                        f"this computer ({client_ip}) already has {from_ip} runs training or waiting, the most one "
                        "address may have, whatever its sessions. Fix: stop one of them, or wait for one to finish",
                    )
            mine = [r for r in self._runs.values() if r.session_id == session_id]
            mine_active = sum(r.active for r in mine)
            mine_queued = sum(r.state == "queued" for r in mine)
            total_active = sum(r.active for r in self._runs.values())
            runs_now = total_active < s.max_active_runs and mine_active < s.max_active_runs_per_session
            if not runs_now:
                if mine_queued >= s.max_queued_runs_per_session:
                    raise SchedulerError(
                        "too_many_runs",
                        f"you already have {mine_active} runs training and {mine_queued} waiting. "
                        "Fix: stop one of your runs, or wait for one to finish",
                    )
                if len(self._queue) >= s.max_queued_runs:
                    raise SchedulerError(
                        "server_busy",
                        f"the server is full ({total_active} runs training, {len(self._queue)} waiting). "
                        "Fix: try again when a run has finished",
                    )
            run_id = new_run_id()
            run = Run(id=run_id, session_id=session_id, experiment=experiment, device=device,
                      channel=RunChannel(run_id), request_id=request_id, client_ip=client_ip, start_paused=paused,
                      owner=owner)
            self.store.create_run(run.id, session_id, experiment.name, experiment.model_dump(mode="json"),
                                  status="queued", device=device)
            self._runs[run.id] = run
            if subscriber is not None:
                run.watchers[subscriber] = None
                run.channel.subscribe(subscriber, 0)
            self._queue.append(run)
            self._publish_positions()
            self._admit()
        for listener in self._submit_listeners:
            listener(run)
        return run

    def _publish_positions(self) -> None:
        """Tell each queued run its place in line when it changed (under the lock)."""
        for index, run in enumerate(self._queue, start=1):
            if run.position != index:
                first = run.position is None
                run.position = index
                # The start command's ``id`` comes back on the run's first message, so a client
                # that starts several runs at once can tell which run is which.
                extra = {"request_id": run.request_id} if first and run.request_id is not None else {}
                run.channel.publish([protocol.status_message("queued", position=index, **extra)])

    def _admit(self) -> None:
        """Move queued runs to their device while slots are free (under the lock), oldest first."""
        s = self.settings
        active = sum(r.active for r in self._runs.values())
        per_session: dict[str, int] = {}
        for r in self._runs.values():
            if r.active:
                per_session[r.session_id] = per_session.get(r.session_id, 0) + 1
        admitted = False
        for run in list(self._queue):
            if active >= s.max_active_runs:
                break
            if per_session.get(run.session_id, 0) >= s.max_active_runs_per_session:
                continue
            self._queue.remove(run)
            run.state = "starting"
            run.position = None
            run.admitted_at = time.monotonic()
            active += 1
            per_session[run.session_id] = per_session.get(run.session_id, 0) + 1
            worker = self._worker_for(run.device, run)
            run.worker = worker
            worker.post(lambda run=run, worker=worker: worker.start_run(run))
            admitted = True
        if admitted:
            self._publish_positions()

    def _worker_for(self, device: str, run: Run) -> DeviceWorker:
        """The worker for a newly admitted run (under the lock); workers start on first use.

        On the CPU there are ``cpu_workers`` of them, each training one run at a time in its
        own process; on a GPU one (its runs share the device, one kernel stream at a time).
        An owner's runs (``owner_of``: a computer) go to the worker that already has its runs,
        so one address with many runs competes with itself there, not with everyone; a new
        owner goes to the worker with the fewest owners.
        """
        from server.worker import DeviceWorker  # local: the worker imports this module

        workers = self._workers.get(device)
        if workers is None:
            count = self.settings.cpu_workers if device == "cpu" and self.isolation == "process" else 1
            if self.isolation == "ray":  # runs train on the cluster's CPUs: enough workers to keep them busy
                from server.ray_backend import worker_count

                count = worker_count(self.settings.max_active_runs)
            # Each worker's run computes while the others' do: the torch threads are split between them.
            threads = max(1, self.settings.torch_threads // count)
            workers = [DeviceWorker(self, device, index, threads) for index in range(count)]
            self._workers[device] = workers
            for worker in workers:
                worker.start()
        # Placement counts the runs already sent to each worker (also those still starting there).
        placed = [r for r in self._runs.values() if r.active and r.worker is not None and r is not run]
        owner = owner_of(run)
        for other in placed:  # an owner's runs share one worker: many runs compete with each other there
            if owner_of(other) == owner and other.worker in workers:
                return other.worker
        # A new owner: the worker with the fewest owners, then the fewest runs.
        owners = {id(w): len({owner_of(r) for r in placed if r.worker is w}) for w in workers}
        runs = {id(w): sum(r.worker is w for r in placed) for w in workers}
        return min(workers, key=lambda w: (owners[id(w)], runs[id(w)]))

    def build_session(self, run: Run, threads: int) -> Any:
        """A session handle for an admitted run (``server/isolation.py``); called on a worker's starter thread.

        Loads the run's data through the shared dataset cache and its starting weights
        (``train.init_from``) here, in the server, so runs on the same data share one copy.
        On a Ray cluster the run's actor loads its data itself (``server/ray_backend.py``).
        """
        from server.isolation import ChildSpec, LocalSession, ProcessSession

        kwargs: dict[str, Any] = {
            "run_id": run.id, "device": run.device, "limits": self._limits or _default_limits(self.settings),
            "uploads_dir": self.store.uploads_dir, "max_metrics_hz": self.settings.max_metrics_hz,
        }
        if self._datasets is not None and self.isolation != "ray":
            kwargs["dataset"] = self._datasets.get(run.experiment.data, self.store.uploads_dir)
        if run.experiment.train.init_from is not None:  # issue 12: the weights file it starts from
            from server.export.weights import resolve_init_from

            kwargs["init_weights"] = resolve_init_from(run.experiment.train.init_from, store=self.store,
                                                       session_id=run.session_id)
        factory = self._session_factory or _default_session_factory()
        if self.isolation == "ray":
            from server.ray_backend import RaySession, spec_for_run

            return RaySession(spec_for_run(run.id, factory, run.experiment, kwargs,
                                           memory_limit_bytes=self.settings.max_run_memory_bytes))
        if self.isolation == "process":
            return ProcessSession(ChildSpec(run_id=run.id, factory=factory, experiment=run.experiment, kwargs=kwargs,
                                            threads=threads, memory_limit_bytes=self.settings.max_run_memory_bytes))
        return LocalSession(factory, run.experiment, kwargs)

    def run_ended(self, run: Run) -> None:
        """Called by a worker when a run reaches a terminal state: free its slot."""
        with self._lock:
            self._admit()

    def forget(self, run: Run) -> None:
        """Called by a worker when an ended run leaves memory."""
        with self._lock:
            if self._runs.get(run.id) is run:
                del self._runs[run.id]

    # -- commands ----------------------------------------------------------------

    def command(self, run_id: str, name: str, **args: Any) -> Future:
        """Queue a command (pause/resume/step/stop/set/probe/predict) for a run's worker.

        The future resolves when it has been carried out (its messages are on the
        run's channel by then) or fails with the reason (``SchedulerError`` or the
        run's own ValueError).
        """
        future: Future = Future()
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                future.set_exception(SchedulerError(
                    "not_in_memory", "this run is no longer loaded (it ended a while ago or the server restarted). "
                    "Fix: start it again"))
                return future
            if run.state == "queued":
                if name == "stop":
                    self._stop_queued(run)
                    future.set_result(None)
                else:
                    future.set_exception(SchedulerError(
                        "queued", f"this run is waiting in the queue (position {run.position}); "
                        f"'{name}' works once it has started"))
                return future
            worker = run.worker
        worker.post(lambda: worker.execute(run, name, args, future))
        return future

    def _stop_queued(self, run: Run) -> None:
        """Stop a run that never started (under the lock)."""
        self._queue.remove(run)
        run.state = "stopped"
        run.ended_at = time.monotonic()
        final = empty_final("stopped", "Stopped before it started.")
        run.channel.publish([final, protocol.status_message("stopped", message=final["message"])])
        self.store.finish_run(run.id, "stopped", final=final, stop_reason="stopped", message=final["message"])
        self._publish_positions()

    def delete(self, run_id: str) -> Future:
        """Stop a run if needed and drop it from memory; the caller then deletes it from the store."""
        future: Future = Future()
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                future.set_result(None)
                return future
            if run.state == "queued":
                self._queue.remove(run)
                self._publish_positions()
                del self._runs[run_id]
                future.set_result(None)
                return future
            worker = run.worker
        worker.post(lambda: worker.drop(run, future))
        return future

    # -- subscribing -------------------------------------------------------------

    def subscribe(self, run_id: str, outbox: Outbox, after_seq: int = 0) -> bool:
        """Replay and follow an in-memory run; False when the run is not in memory."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return False
            run.watchers.setdefault(outbox, None)
        run.channel.subscribe(outbox, after_seq)
        self._views_changed(run)
        return True

    def unsubscribe(self, run_id: str, outbox: Outbox) -> None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return
            run.watchers.pop(outbox, None)
        run.channel.unsubscribe(outbox)
        self._views_changed(run)

    def watch(self, run_id: str, outbox: Outbox, views: dict[str, dict[str, Any]]) -> Future:
        """What one connection's page shows of a run (its open tab); the run computes the union of all.

        The future fails with a ValueError for an unknown view or argument (nothing changes then).
        """
        from server.live import check_views  # local: live pulls in the probes

        future: Future = Future()
        try:
            check_views(views)
        except ValueError as exc:
            future.set_exception(SchedulerError("bad_arguments", str(exc)))
            return future
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                future.set_exception(SchedulerError(
                    "not_in_memory", "this run is no longer loaded (it ended a while ago or the server restarted)"))
                return future
            run.watchers[outbox] = dict(views)
        self._views_changed(run)
        future.set_result(None)
        return future

    def _views_changed(self, run: Run) -> None:
        """Have the run's worker apply its subscribers' views (a queued run applies them when it starts)."""
        with self._lock:
            worker = run.worker if run.active else None
        if worker is not None:
            worker.post(lambda: worker.apply_views(run))

    # -- shutting down -----------------------------------------------------------

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the workers; runs still active are recorded as interrupted."""
        with self._lock:
            self._closed = True
            workers = [w for device_workers in self._workers.values() for w in device_workers]
            queued = list(self._queue)
            self._queue.clear()
        for run in queued:
            self.store.finish_run(run.id, "interrupted", final=None, stop_reason="interrupted",
                                  message="The server stopped before this run started.")
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.join(timeout)
        with self._lock:
            unfinished = [r for r in self._runs.values() if r.active]
        for run in unfinished:
            run.state = "interrupted"
            self.store.finish_run(run.id, "interrupted", final=None, stop_reason="interrupted",
                                  message="The server stopped while this run was active.")


def empty_final(stop_reason: str, message: str, **figures: Any) -> dict[str, Any]:
    """A ``final`` message for a run that has no trainer to describe it (never started, or crashed)."""
    final = {
        "type": "final", "steps": 0, "epochs": 0.0, "stop_reason": stop_reason, "message": message,
        "train_loss": None, "val_loss": None, "val_acc": None, "best_val_acc": None, "wall_s": 0.0,
    }
    final.update(figures)
    return final


# ---------------------------------------------------------------------------
# The worker
# ---------------------------------------------------------------------------
