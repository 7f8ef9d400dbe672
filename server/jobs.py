"""The scheduler: who trains where and when, off the event loop, fairly.

Each device (``cpu``, ``cuda``) has ONE worker thread that owns every run on it
and gives them round-robin time slices (``RunSession.advance(max_seconds=
slice_seconds)``), so a class of runs shares the device evenly; torch keeps its
own intra-op threads. Everything else a client asks of a run (pause, resume,
step, stop, set, probe, predict) is queued to that thread and done between
slices, so a run's model is only ever touched by one thread.

Messages leave a run through its ``RunChannel``: it stamps them (run_id, seq, t),
encodes each once to JSON, keeps every non-image message for replay (a client
that reconnects with ``after_seq`` misses no metric point) and only the newest
message of each image type, and hands frames to subscribers. A subscriber is an
``Outbox`` on the event loop, fed with ``loop.call_soon_threadsafe``: the worker
never waits for a client. A slow client's outbox keeps every non-image frame but
replaces a pending image frame by the newer one of the same type (coalescing).

A failure in one run (a ValueError, RuntimeError, CUDA out-of-memory, anything)
ends that run with ``error`` + ``final`` + ``status failed``; the others go on.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import queue
import secrets
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from server import protocol
from server.config import Settings
from server.schemas import Experiment
from server.store import Store

log = logging.getLogger("dlplay.jobs")

# The shortest slice, however many runs share a device: below this the switching costs more than it gives.
MIN_SLICE_SECONDS = 0.005  # seconds
# Steps one slice may take at most; the slice's time bound is what normally ends it.
MAX_STEPS_PER_SLICE = 100_000  # steps
# How often a worker writes pending metric points to the store.
FLUSH_SECONDS = 1.0  # seconds
# How long an idle worker sleeps before it looks at time limits and retention again.
IDLE_WAKE_SECONDS = 0.5  # seconds

# Final state in the store for each of the trainer's stop reasons.
_STATUS_FOR_STOP = {
    "finished": "finished",
    "early_stopping": "finished",
    "stopped": "stopped",
    "non_finite": "failed",
    "exploded": "failed",
    "error": "failed",
}


class SchedulerError(ValueError):
    """A command the scheduler refuses; ``code`` goes into the client's ``error`` message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


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


def encode(message: dict[str, Any]) -> str:
    """Compact JSON text; NaN/inf (which JSON cannot carry) become the strings the protocol uses."""
    try:
        return json.dumps(message, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError):
        return json.dumps(protocol.jsonable(message), separators=(",", ":"), allow_nan=False, default=str)


@dataclass(frozen=True)
class Frame:
    """One message ready to send: its JSON text and what the outbox needs to order and coalesce it."""

    text: str
    type: str
    run_id: str | None = None
    seq: int | None = None  # None for replies that belong to no run's stream (pong, command errors)

    @property
    def coalesce_key(self) -> tuple[str, str] | None:
        """Pending image frames with the same key are replaced by the newest."""
        if self.run_id is not None and self.type in protocol.IMAGE_TYPES:
            return (self.run_id, self.type)
        return None


def direct_frame(message: dict[str, Any]) -> Frame:
    """A frame outside any run's stream (a reply to one client)."""
    return Frame(text=encode(message), type=message["type"], run_id=message.get("run_id"))


class Outbox:
    """One client's frames waiting to be sent, on the event loop; ``deliver`` may be called from any thread.

    Non-image frames are always kept, in order. An image frame replaces a pending
    frame with the same ``(run_id, type)`` (it is removed and the new one appended,
    so seq order is kept). Beyond ``max_frames`` pending frames the outbox marks
    itself ``overflowed``: the connection should be closed, and the client
    reconnects and replays from its last seq.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_frames: int = 20_000) -> None:
        self._loop = loop
        self._max_frames = max_frames
        self._frames: OrderedDict[int, Frame] = OrderedDict()
        self._slots: dict[tuple[str, str], int] = {}  # coalesce key -> key of its pending frame
        self._counter = 0
        self._ready = asyncio.Event()
        self.overflowed = False
        self.closed = False
        self.coalesced = 0  # image frames replaced before they were sent

    def deliver(self, frames: list[Frame]) -> None:
        """Queue frames from any thread (the worker, or the loop itself)."""
        if self.closed or not frames:
            return
        try:
            self._loop.call_soon_threadsafe(self.put, frames)
        except RuntimeError:  # the loop is closed: the client is gone
            self.closed = True

    def put(self, frames: list[Frame]) -> None:
        """Queue frames; call on the event loop."""
        if self.closed or self.overflowed:  # an overflowed client is being dropped; it will replay
            return
        for frame in frames:
            key = frame.coalesce_key
            if key is not None:
                old = self._slots.pop(key, None)
                if old is not None and self._frames.pop(old, None) is not None:
                    self.coalesced += 1
            self._counter += 1
            self._frames[self._counter] = frame
            if key is not None:
                self._slots[key] = self._counter
        if len(self._frames) > self._max_frames:
            self.overflowed = True
        self._ready.set()

    def __len__(self) -> int:
        return len(self._frames)

    def pop_nowait(self) -> Frame | None:
        if not self._frames:
            return None
        number, frame = self._frames.popitem(last=False)
        key = frame.coalesce_key
        if key is not None and self._slots.get(key) == number:
            del self._slots[key]
        return frame

    async def get(self) -> Frame:
        """The next frame to send (oldest first); waits for one."""
        while True:
            frame = self.pop_nowait()
            if frame is not None:
                return frame
            self._ready.clear()
            await self._ready.wait()

    def close(self) -> None:
        self.closed = True
        self._frames.clear()
        self._slots.clear()
        self._ready.set()


class RunChannel:
    """A run's outgoing stream: stamping, the replay log, and its subscribers (thread-safe)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._stamper = protocol.Stamper(run_id)
        self._lock = threading.Lock()
        self._log: list[Frame] = []  # every non-image frame, in seq order
        self._log_seqs: list[int] = []
        self._images: dict[str, Frame] = {}  # type -> newest frame of each image type
        self._subscribers: set[Outbox] = set()

    def publish(self, messages: list[dict[str, Any]],
                persist: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
        """Stamp, log and send messages; returns the stamped dicts.

        ``persist(stamped)`` runs before anyone is sent them (under the channel's lock), so
        a client that has seen a message can count on the store knowing it too.
        """
        stamped: list[dict[str, Any]] = []
        with self._lock:
            frames = []
            for message in messages:
                full = self._stamper.stamp(message)
                frame = Frame(text=encode(full), type=full["type"], run_id=self.run_id, seq=full["seq"])
                if frame.type in protocol.IMAGE_TYPES:
                    self._images[frame.type] = frame
                else:
                    self._log.append(frame)
                    self._log_seqs.append(frame.seq)
                frames.append(frame)
                stamped.append(full)
            if persist is not None:
                persist(stamped)
            # Delivered under the lock, so every subscriber sees one total order.
            if frames:
                for outbox in list(self._subscribers):
                    if outbox.closed:
                        self._subscribers.discard(outbox)
                    else:
                        outbox.deliver(frames)
        return stamped

    def subscribe(self, outbox: Outbox, after_seq: int = 0) -> int:
        """Send ``outbox`` every logged frame after ``after_seq`` and the newest image of each type, then live ones.

        Returns how many frames were replayed.
        """
        with self._lock:
            start = bisect.bisect_right(self._log_seqs, after_seq)
            replay = self._log[start:] + [f for f in self._images.values() if f.seq > after_seq]
            replay.sort(key=lambda f: f.seq)
            self._subscribers.add(outbox)
            outbox.deliver(replay)
        return len(replay)

    def unsubscribe(self, outbox: Outbox) -> None:
        with self._lock:
            self._subscribers.discard(outbox)

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._stamper.seq

    def messages(self, type_: str | None = None) -> list[dict[str, Any]]:
        """The logged (non-image) messages, optionally of one type, decoded."""
        with self._lock:
            frames = [f for f in self._log if type_ is None or f.type == type_]
        return [json.loads(f.text) for f in frames]


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
    ended_at: float | None = None
    pending_metrics: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None  # the stamped final message, once sent
    request_id: Any = None
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


def _default_session_factory(experiment: Experiment, **kwargs: Any) -> Any:
    from server.runner import RunSession  # local: the runner pulls in the whole engine

    return RunSession(experiment, **kwargs)


def _default_limits(settings: Settings) -> Any:
    from server.runner import Limits

    return Limits(
        max_params=settings.max_params,
        max_activation_bytes=settings.max_activation_bytes,
        max_seconds=settings.max_run_seconds,
    )


class Scheduler:
    """Admits, queues and tracks runs; one ``DeviceWorker`` thread per device trains them.

    Methods are called from the event loop (and are cheap); the heavy work happens
    in the workers. ``session_factory(experiment, run_id=, device=, limits=,
    uploads_dir=[, dataset=])`` builds a ``RunSession`` (tests pass a fake).
    ``datasets``, if given, is a cache with ``get(data_spec, uploads_dir) -> Dataset``:
    runs on the same data then share one loaded copy instead of loading their own.
    """

    def __init__(self, store: Store, settings: Settings, *, session_factory: SessionFactory | None = None,
                 limits: Any = None, datasets: Any = None) -> None:
        self.store = store
        self.settings = settings
        self._session_factory = session_factory or _default_session_factory
        self._datasets = datasets
        self._limits = limits
        self._lock = threading.RLock()
        self._runs: dict[str, Run] = {}
        self._queue: list[Run] = []
        self._workers: dict[str, DeviceWorker] = {}
        self._closed = False

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

    def submit(self, session_id: str, experiment: Experiment, *, subscriber: Outbox | None = None,
               request_id: Any = None) -> Run:
        """Accept a validated experiment: record it, queue it, admit it when a slot is free.

        The run's first message is ``status queued`` with its ``position`` (1 = next);
        ``subscriber`` (if given) is subscribed before it, so it sees every seq.
        Raises ``SchedulerError`` when a limit refuses it.
        """
        device = resolve_device(self.settings.device, experiment.train.device)
        s = self.settings
        with self._lock:
            if self._closed:
                raise SchedulerError("shutting_down", "the server is shutting down; try again in a moment")
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
                      channel=RunChannel(run_id), request_id=request_id)
            self.store.create_run(run.id, session_id, experiment.name, experiment.model_dump(mode="json"),
                                  status="queued", device=device)
            self._runs[run.id] = run
            if subscriber is not None:
                run.watchers[subscriber] = None
                run.channel.subscribe(subscriber, 0)
            self._queue.append(run)
            self._publish_positions()
            self._admit()
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
            worker = self._worker(run.device)
            worker.post(lambda run=run, worker=worker: worker.start_run(run))
            admitted = True
        if admitted:
            self._publish_positions()

    def _worker(self, device: str) -> DeviceWorker:
        worker = self._workers.get(device)
        if worker is None:
            worker = DeviceWorker(self, device)
            self._workers[device] = worker
            worker.start()
        return worker

    def _run_ended(self, run: Run) -> None:
        """Called by a worker when a run reaches a terminal state: free its slot."""
        with self._lock:
            self._admit()

    def _forget(self, run: Run) -> None:
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
            worker = self._worker(run.device)
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
            worker = self._worker(run.device)
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
            worker = self._workers.get(run.device) if run.active else None
        if worker is not None:
            worker.post(lambda: worker.apply_views(run))

    # -- shutting down -----------------------------------------------------------

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the workers; runs still active are recorded as interrupted."""
        with self._lock:
            self._closed = True
            workers = list(self._workers.values())
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


class DeviceWorker:
    """The one thread that trains every run on one device, in round-robin time slices."""

    def __init__(self, scheduler: Scheduler, device: str) -> None:
        self.scheduler = scheduler
        self.store = scheduler.store
        self.settings = scheduler.settings
        self.device = device
        self._inbox: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._order: list[Run] = []  # admitted, not ended: the round-robin ring
        self._next = 0  # index in _order of the next run to get a slice
        self._ended: OrderedDict[str, Run] = OrderedDict()  # ended runs kept in memory, oldest first
        self._last_flush = time.monotonic()
        # Compute is charged in the worker thread's CPU time on the CPU, wall time on a GPU.
        self._clock = time.thread_time if device == "cpu" else time.perf_counter
        self._cpu_share = 1.0  # recent CPU time / wall time of slices (1 on a GPU, or on an idle machine)
        self._stopping = False
        self._commands = self._command_table()
        self._thread = threading.Thread(target=self._main, name=f"dlplay-worker-{device}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def post(self, task: Callable[[], None]) -> None:
        self._inbox.put(task)

    def stop(self) -> None:
        self._inbox.put(None)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # -- the loop ----------------------------------------------------------------

    def _main(self) -> None:
        while not self._stopping:
            try:
                self._drain(wait=self._idle_seconds())
                if self._stopping:
                    break
                run = self._pick()
                if run is not None:
                    self._slice(run)
                self._housekeeping()
            except Exception:  # a bug in the scheduler itself; keep serving the other runs
                log.exception("worker %s: unexpected error", self.device)
        self._shutdown()

    def _idle_seconds(self) -> float:
        """How long the worker may wait for a task: 0 while a run can step; until the next step a speed limit allows."""
        wait = IDLE_WAKE_SECONDS
        for run in self._order:
            if run.state == "running":
                wait = min(wait, run.session.next_step_in())
                if wait <= 0:
                    return 0.0
        return wait

    def _drain(self, wait: float) -> None:
        """Run every queued task (starts and commands); wait up to ``wait`` seconds for the first one."""
        try:
            task = self._inbox.get(timeout=wait) if wait > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            if task is None:
                self._stopping = True
                return
            try:
                task()
            except Exception:
                log.exception("worker %s: task failed", self.device)
            try:
                task = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _pick(self) -> Run | None:
        """The next running run in round-robin order that its speed limit lets step now."""
        n = len(self._order)
        for k in range(n):
            index = (self._next + k) % n
            run = self._order[index]
            if run.state == "running" and run.session.next_step_in() <= 0:
                self._next = index + 1
                return run
        return None

    def _slice(self, run: Run) -> None:
        """One time slice of training, sized by deficit round robin on the worker's CPU time.

        A round over all running runs should take about ``round_seconds`` (so each run
        comes back often: smooth charts, fine-grained shares), each slice at most
        ``slice_seconds``. Runs are owed equal quanta of *compute*: on the CPU the charge
        is the worker thread's CPU time, and a slice during which other processes (or the
        event loop) had the core is made up for on the run's next turn. The wall-time
        budget handed to ``advance`` is the compute owed divided by the share of the core
        the worker has been getting lately, so a busy machine lengthens slices for all
        runs alike instead of starving some. On a GPU the charge is wall time.
        Carry-over is bounded to one quantum, so nobody gets a burst.
        """
        runnable = sum(r.state == "running" for r in self._order)
        wall_quantum = max(MIN_SLICE_SECONDS, min(self.settings.slice_seconds, self.settings.round_seconds / max(runnable, 1)))
        quantum = wall_quantum * self._cpu_share
        owed = run.credit + quantum
        cpu0, wall0 = self._clock(), time.perf_counter()
        try:
            messages = run.session.advance(max_steps=MAX_STEPS_PER_SLICE, max_seconds=max(owed, quantum / 4) / self._cpu_share,
                                           until_frame=True)
        except Exception as exc:
            self._fail(run, exc)
            return
        used, wall = self._clock() - cpu0, time.perf_counter() - wall0
        if wall > 0:
            self._cpu_share = min(1.0, max(0.05, 0.9 * self._cpu_share + 0.1 * used / wall))
        run.credit = min(quantum, max(-quantum, owed - used))
        self._progress(run, messages)

    def _progress(self, run: Run, messages: list[dict[str, Any]]) -> None:
        """Publish what a run produced; end it if training ended or it ran past the wall-time limit."""
        if run.session.done:
            self._end(run, messages)
            return
        self._emit(run, messages)
        if time.monotonic() - run.admitted_at > self.settings.max_run_seconds:
            limit = self.settings.max_run_seconds
            self._emit(run, [protocol.error_message(
                "time_limit", f"This run reached the server's limit of {limit:g} s per run and was stopped.")])
            self._stop(run)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_flush >= FLUSH_SECONDS:
            self._flush(self._order)
            self._last_flush = now
            for run in list(self._order):  # paused runs get no slices, so their clock is checked here
                if run.state == "paused" and now - run.admitted_at > self.settings.max_run_seconds:
                    self._progress(run, [])
            self._expire_ended(now)

    def _flush(self, runs: list[Run]) -> None:
        batches = []
        for run in runs:
            if run.pending_metrics:
                batches.append((run.id, run.pending_metrics))
                run.pending_metrics = []
        try:
            self.store.append_metrics(batches)
        except Exception:
            log.exception("could not write metric history")

    # -- starting ----------------------------------------------------------------

    def start_run(self, run: Run) -> None:
        """Build the run's session, send its first messages, and give it a first short slice at once.

        The first slice ends after ``log_every`` steps, so the first metrics point
        reaches the page promptly even when many runs start together.
        """
        if run.state != "starting":  # deleted or shut down while waiting in the inbox
            return
        try:
            shared = {}
            if self.scheduler._datasets is not None:
                shared["dataset"] = self.scheduler._datasets.get(run.experiment.data, self.store.uploads_dir)
            if run.experiment.train.init_from is not None:  # issue 12: the weights file it starts from
                from server.export.weights import resolve_init_from

                shared["init_weights"] = resolve_init_from(
                    run.experiment.train.init_from, store=self.store, session_id=run.session_id)
            run.session = self.scheduler._session_factory(
                run.experiment,
                run_id=run.id,
                device=self.device,
                limits=self.scheduler._limits or _default_limits(self.settings),
                uploads_dir=self.store.uploads_dir,
                max_metrics_hz=self.settings.max_metrics_hz,
                **shared,
            )
            self.store.set_status(run.id, "running", started=True, device=self.device)
            run.state = "running"
            run.session.set_views(run.watched_views())
            self._emit(run, run.session.start())
            # Joins the ring just behind the pointer: its next slice comes after every other run's.
            self._order.insert(self._next, run)
            self._next += 1
            first = run.session.advance(max_steps=run.experiment.train.log_every, max_seconds=self.settings.slice_seconds)
        except Exception as exc:
            self._fail(run, exc)
            return
        self._progress(run, first)

    # -- commands ----------------------------------------------------------------

    def execute(self, run: Run, name: str, args: dict[str, Any], future: Future) -> None:
        """Carry out one client command between slices; the outcome goes to ``future``."""
        if not future.set_running_or_notify_cancel():
            return
        handler = self._commands.get(name)
        try:
            if handler is None:
                raise SchedulerError("unknown_command", f"unknown command {name!r}")
            handler(run, **args)
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)

    def _require(self, run: Run, *states: str) -> None:
        if run.state not in states:
            if run.ended:
                raise SchedulerError("run_ended", f"this run has ended ({run.state}); start a new one")
            raise SchedulerError("bad_state", f"this run is {run.state}; this command needs it {' or '.join(states)}")

    def _set_state(self, run: Run, state: str) -> None:
        run.state = state
        self.store.set_status(run.id, state)
        self._emit(run, [protocol.status_message(state)])

    def apply_views(self, run: Run) -> None:
        """Give a run's session the union of what its subscribers watch (on the worker, between slices)."""
        if run.session is None or not run.active:
            return
        try:
            run.session.set_views(run.watched_views())
        except ValueError:
            log.exception("run %s: views were checked before and still failed", run.id)
        if run.state == "paused":  # a paused run does not train, so a newly opened tab is drawn now
            self._emit(run, run.session.refresh())

    def _command_table(self) -> dict[str, Callable[..., None]]:
        """Command name -> handler: the websocket's run commands, one table."""
        return {
            "pause": self._cmd_pause, "resume": self._cmd_resume, "step": self._cmd_step, "stop": self._cmd_stop,
            "set": self._cmd_set, "speed": self._cmd_speed, "probe": self._cmd_probe, "predict": self._cmd_predict,
        }

    def _cmd_pause(self, run: Run) -> None:
        """Pause, and draw every watched view at the step where training stopped."""
        self._require(run, "running", "paused")
        if run.state == "running":
            self._set_state(run, "paused")
            self._emit(run, run.session.refresh())

    def _cmd_speed(self, run: Run, steps_per_s: float | None) -> None:
        self._require(run, "running", "paused")
        self._emit(run, run.session.set_speed(steps_per_s))

    def _cmd_resume(self, run: Run) -> None:
        self._require(run, "running", "paused")
        if run.state == "paused":
            self._set_state(run, "running")

    def _cmd_step(self, run: Run) -> None:
        """One training step with every light probe; a running run is paused first."""
        self._require(run, "running", "paused")
        if run.state == "running":
            self._set_state(run, "paused")
        try:
            messages = run.session.step_once()
        except Exception as exc:
            self._fail(run, exc)  # the run's own stream says what happened
            return
        self._progress(run, messages)

    def _cmd_stop(self, run: Run) -> None:
        self._require(run, "running", "paused")
        self._stop(run)

    def _cmd_set(self, run: Run, **values: Any) -> None:
        self._require(run, "running", "paused")
        self._emit(run, run.session.set_hyperparams(**values))

    def _cmd_probe(self, run: Run, probe: str, **args: Any) -> None:
        """An on-demand probe; also after the run has finished, while it is kept in memory."""
        if run.session is None:
            raise SchedulerError("run_closed", "this run's model is no longer in memory. Fix: start it again")
        try:
            messages = run.session.probe(probe, **args)
        except TypeError as exc:
            raise SchedulerError("bad_arguments", f"probe {probe!r}: {exc}") from exc
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise SchedulerError("out_of_memory", f"probe {probe!r} ran out of GPU memory") from exc
        self._emit(run, messages)

    def _cmd_predict(self, run: Run, input: Any) -> None:  # noqa: A002 - the protocol's field name
        if run.session is None:
            raise SchedulerError("run_closed", "this run's model is no longer in memory. Fix: start it again")
        self._emit(run, run.session.predict(input))

    def drop(self, run: Run, future: Future) -> None:
        """For DELETE: release the run at once (no final evaluation, no weights) and forget it."""
        try:
            self._remove_from_ring(run)
            self._ended.pop(run.id, None)
            self._close(run)
            run.state = "deleted"
            self.scheduler._forget(run)
            self.scheduler._run_ended(run)
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)

    # -- messages ----------------------------------------------------------------

    def _emit(self, run: Run, messages: list[dict[str, Any]], on_end: Callable[[], None] | None = None) -> None:
        """Publish a run's messages; what the store needs from them is recorded before they go out."""

        def persist(stamped: list[dict[str, Any]]) -> None:
            try:
                for message in stamped:
                    kind = message["type"]
                    if kind == "metrics":
                        run.pending_metrics.append(message)
                    elif kind == "summary":
                        self.store.set_summary(run.id, message)
                    elif kind == "final":
                        run.final = message
            except Exception:
                log.exception("run %s: could not record its messages", run.id)
            if on_end is not None:
                on_end()

        run.channel.publish(messages, persist=persist)

    # -- ending ------------------------------------------------------------------

    def _stop(self, run: Run) -> None:
        """End a run now (user stop or time limit): its final messages, then free it."""
        try:
            messages = run.session.stop()
        except Exception as exc:
            self._fail(run, exc)
            return
        self._end(run, messages)

    def _end(self, run: Run, messages: list[dict[str, Any]]) -> None:
        """A run whose session produced ``final``: save its weights, record it, publish, free its slot."""
        final = run.session.final or empty_final("stopped", "Stopped.")
        status = _STATUS_FOR_STOP.get(final.get("stop_reason"), "finished")
        weights = None if status == "failed" else self._save_weights(run, final)
        self._emit(run, messages, on_end=lambda: self._record_end(run, status, weights))
        # A finished run stays loaded for a while, so probes and predictions still work on it.
        self._retire(run, keep_loaded=status == "finished")

    def _save_weights(self, run: Run, final: dict[str, Any]) -> Path | None:
        try:
            model = run.session.trainer.model
            return self.store.save_weights(run.id, model.state_dict(), metadata={
                "run_id": run.id, "experiment": run.experiment.name, "steps": str(final.get("steps")),
            })
        except Exception:
            log.exception("run %s: could not save weights", run.id)
            return None

    def _fail(self, run: Run, exc: BaseException) -> None:
        """End a run after an exception: ``error`` + ``final`` + ``status failed``; the others go on."""
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            code, text = "out_of_memory", (
                "the GPU ran out of memory. Fix: use a smaller batch_size or a smaller network")
        elif isinstance(exc, ValueError):
            code, text = getattr(exc, "code", "invalid_experiment"), str(exc)
        else:
            code, text = "run_failed", f"{type(exc).__name__}: {exc}"
            log.error("run %s failed", run.id, exc_info=exc)
        figures: dict[str, Any] = {}
        trainer = getattr(run.session, "trainer", None)
        if trainer is not None:
            figures = {"steps": int(getattr(trainer, "step_count", 0)),
                       "epochs": protocol.clean_float(getattr(trainer, "epoch", 0.0))}
        if run.admitted_at is not None:
            figures["wall_s"] = round(time.monotonic() - run.admitted_at, 3)
        final = empty_final("error", text, **figures)
        self._emit(run, [protocol.error_message(code, text), final, protocol.status_message("failed", message=text)],
                   on_end=lambda: self._record_end(run, "failed", None))
        self._retire(run, keep_loaded=False)
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()

    def _record_end(self, run: Run, status: str, weights: Path | None) -> None:
        """Write a run's end to the store (called before its final message goes out)."""
        self._flush([run])
        final = run.final or {}
        try:
            self.store.finish_run(run.id, status, final=run.final, stop_reason=final.get("stop_reason"),
                                  message=final.get("message"), weights_path=weights)
        except Exception:
            log.exception("run %s: could not record its end", run.id)
        run.state = status
        run.ended_at = time.monotonic()

    def _retire(self, run: Run, keep_loaded: bool) -> None:
        """Take an ended run out of the ring, release it unless kept for probes, and free its slot."""
        self._remove_from_ring(run)
        self._ended[run.id] = run
        if not keep_loaded:
            self._close(run)
        self.scheduler._run_ended(run)

    def _remove_from_ring(self, run: Run) -> None:
        if run in self._order:
            index = self._order.index(run)
            self._order.remove(run)
            if index < self._next:
                self._next -= 1

    def _close(self, run: Run) -> None:
        """Release a run's model and data now (not whenever the garbage collector gets to it)."""
        session, run.session = run.session, None
        if session is not None:
            try:
                session.close()
            except Exception:
                log.exception("run %s: close failed", run.id)
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def _expire_ended(self, now: float) -> None:
        """Forget ended runs beyond ``max_retained_runs`` or older than ``retain_seconds`` (oldest first)."""
        s = self.settings
        while self._ended:
            run_id, run = next(iter(self._ended.items()))
            too_many = len(self._ended) > s.max_retained_runs
            too_old = run.ended_at is not None and now - run.ended_at > s.retain_seconds
            if not (too_many or too_old):
                break
            del self._ended[run_id]
            self._close(run)
            self.scheduler._forget(run)

    def _shutdown(self) -> None:
        """On server shutdown: write pending metrics and release every model (the scheduler records the rest)."""
        self._flush(self._order)
        for run in list(self._order):
            self._close(run)
        for run in self._ended.values():
            self._close(run)
        self._order.clear()
        self._ended.clear()
