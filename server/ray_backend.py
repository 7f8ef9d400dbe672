"""Runs on a Ray cluster: the session handle of ``server/isolation.py`` with each run's RunSession in a Ray actor.

When a class outgrows one machine (issue 10), ``isolation = "ray"`` (``dlplay class --ray ADDRESS``) trains
every run in an actor on a Ray cluster while the web server stays the one place students connect to:

``RaySession``
    The handle a ``DeviceWorker`` (``server/worker.py``) drives, with the interface of ``ProcessSession``:
    ``request(op, args, on_reply)`` becomes a call of the run's actor, ``pump(budget)`` waits up to
    ``budget`` seconds for the oldest answer (``ray.wait``) and hands each finished one to its
    ``on_reply`` as the same ``Reply``. Ray runs one caller's calls of one actor in the order they were
    made, so replies come back in order and the run's channel stamps the same sequence numbers as with
    a child process. The worker's deficit round robin still decides when each run advances (an
    ``advance`` request is a slice); what Ray cannot do is freeze a remote process, so an operation that
    overruns its slice finishes on the cluster while the worker serves its other runs. ``kill()`` is
    ``ray.kill(actor)``: stop and the time limit still end a run mid-step. Failures map onto the same
    ``RunError`` / ``RunCrashed`` / ``RunOutOfMemory``.

``RunActor``
    One per run, holding one CPU of the cluster (``RUN_ACTOR_CPUS``: a node started with
    ``ray start --num-cpus N`` trains N runs at once). It builds the run's dataset itself, through the same
    code path as a child process (``load_dataset`` from the experiment), not from the server's shared
    memory, so nodes may be other machines. What only the server's disk has travels with the run: an
    uploaded dataset's file (written to a private folder on the node for the load, then removed) and
    ``train.init_from``'s weights (as tensors).

Ray is an optional extra (``pip install -e .[cluster]``): nothing here imports it until a Ray run is made,
and without it the server says how to install it. Every node needs dlplay installed (the same version as
the server), since actors import ``server.runner`` there. Where the server runs: a ``HOST:PORT`` address
(or ``auto``) joins the cluster through a raylet on the server's own machine, so the server's machine must
be a node (typically the head: ``ray start --head`` there, then ``dlplay class --ray auto``); from any
other machine use the Ray Client address, ``ray://HEAD:10001``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from server.isolation import (
    PREEMPT_GRACE_SECONDS,
    Reply,
    RunCrashed,
    RunOutOfMemory,
    RunState,
    _call,
    _is_out_of_memory,
    _limit_memory,
    _open,
    _rebuild_error,
    _state_of,
    _weights_of,
)

log = logging.getLogger("dlplay.ray")

# The namespace dlplay's actors live in on a shared cluster (they are unnamed; it keeps them apart in listings).
RAY_NAMESPACE = "dlplay"
# CPUs each run's actor holds on the cluster for its life: one core per run, the share a child process gets
# on one machine. A finished run kept loaded for probes (max_retained_runs) holds its CPU until released.
RUN_ACTOR_CPUS = 1
# Worker threads in the server for a Ray cluster, at most: each drives its runs' actors and mostly waits
# in ray.wait, so one per cluster CPU is cheap, but hundreds of threads would not be.
MAX_RAY_WORKERS = 64
# An ``open`` that has waited this long for its actor is most likely waiting for a free CPU on the cluster.
PLACEMENT_WARNING_SECONDS = 30.0  # seconds (a node's first worker process alone can take 10 s on a busy machine)

INSTALL_FIX = "Fix: pip install -e .[cluster] (on the server and on every node of the cluster)"


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached; the message says how to fix it."""

    code = "ray_unavailable"


def import_ray() -> Any:
    """The ``ray`` module, or RayUnavailable saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(f"isolation 'ray' needs Ray, which is not installed ({exc}). {INSTALL_FIX}") from None
    return ray


_connect_lock = threading.Lock()


def connect(address: str | None) -> dict[str, float]:
    """Connect this process to the Ray cluster at ``address`` (once; later calls reuse the connection).

    ``address``: a cluster's GCS address (``HOST:PORT``, as ``ray start --head`` prints), ``auto`` for one
    started on this machine, or a Ray Client address ``ray://HOST:PORT``. Returns the cluster's resources
    (``{"CPU": 16.0, ...}``). Raises RayUnavailable when Ray is missing or the cluster does not answer.
    """
    if not address:
        raise RayUnavailable(
            "isolation 'ray' needs the address of a Ray cluster. Fix: start one with `ray start --head` and pass "
            "its address (dlplay class --ray HOST:6379, or DLPLAY_RAY_ADDRESS; 'auto' finds one on this machine)"
        )
    ray = import_ray()
    with _connect_lock:
        if not ray.is_initialized():
            try:
                # The actors' output stays in the cluster's own logs: errors come back in each run's stream.
                ray.init(address=address, namespace=RAY_NAMESPACE, ignore_reinit_error=True, log_to_driver=False)
            except Exception as exc:  # ConnectionError, or whatever the client raises: all mean "not reachable"
                raise RayUnavailable(
                    f"could not connect to the Ray cluster at {address!r}: {type(exc).__name__}: {exc}. Fix: check "
                    "that the cluster is running (`ray status` on its head) and that this machine can reach it"
                ) from None
        return dict(ray.cluster_resources())


def disconnect() -> None:
    """Leave the cluster (the server's actors die with the connection: none outlives the server)."""
    try:
        import ray
    except ImportError:
        return
    with _connect_lock:
        if ray.is_initialized():
            ray.shutdown()


def worker_count(max_active_runs: int) -> int:
    """How many DeviceWorker threads keep the cluster busy: one per run it can train at once, capped.

    A worker waits on one run's actor at a time, so fewer workers than cluster CPUs would leave CPUs
    idle; more than ``max_active_runs`` would have nothing to do.
    """
    ray = import_ray()
    cpus = float(ray.cluster_resources().get("CPU", 0.0))
    runs_at_once = int(cpus // RUN_ACTOR_CPUS)
    return max(1, min(runs_at_once, max_active_runs, MAX_RAY_WORKERS))


# ---------------------------------------------------------------------------
# The actor
# ---------------------------------------------------------------------------


@dataclass
class RaySpec:
    """What a run's actor needs to start (sent to the node that hosts it)."""

    run_id: str
    factory: Callable[..., Any]  # RunSession (tests: a RunSession subclass importable on the nodes)
    experiment: Any
    kwargs: dict[str, Any]  # RunSession's keyword arguments, without uploads_dir (a path on the server)
    threads: int  # torch threads in the actor
    memory_limit_bytes: int | None  # beyond what the actor holds when it starts; allocations past it fail
    # Uploaded data files the run reads, by file name; None: it reads none (empty: its upload is missing here too).
    files: dict[str, bytes] | None = None


def describe_error(exc: BaseException, op: str) -> tuple[str, str, str]:
    """An exception raised in a run as ``(kind, code, text)``, the form ``isolation._rebuild_error`` reads.

    The same classification as a child process makes (``isolation.child_main``); exceptions themselves
    are not sent, since one with extra constructor arguments (RunError) would not unpickle.
    """
    if _is_out_of_memory(exc):
        return ("oom", "out_of_memory", str(exc) or type(exc).__name__)
    if isinstance(exc, ValueError):
        # A document the run cannot be built from, or a command's value the session refuses (a set lr).
        return ("value", getattr(exc, "code", "invalid_experiment" if op == "open" else "bad_arguments"), str(exc))
    if isinstance(exc, TypeError):
        return ("type", "bad_arguments", str(exc))
    return ("error", type(exc).__name__, str(exc))


class RunActor:
    """One run's RunSession on a Ray node: carries out one operation per call, like a run's child process.

    Ray makes it an actor (``ray.remote``, in ``_actor_class``); as a plain class it is what tests of its
    logic can call directly.
    """

    def __init__(self, spec: RaySpec) -> None:
        import torch

        torch.set_num_threads(max(1, spec.threads))
        self.spec = spec
        self.session: Any = None
        self.weights_sent = False
        # The limit is set after the engine is imported, so it bounds what the run allocates, not the engine.
        _limit_memory(spec.memory_limit_bytes)

    def call(self, op: str, args: dict[str, Any]) -> tuple[list[dict[str, Any]], tuple[str, str, str] | None,
                                                         RunState, dict[str, Any] | None]:
        """Carry out ``op``; returns ``(messages, error, state, weights)`` as a child process replies.

        ``state.next_step_at`` is sent as seconds from now (clocks of two machines do not compare);
        ``RaySession`` turns it back into a time on the server's clock.
        """
        messages: list[dict[str, Any]] = []
        error: tuple[str, str, str] | None = None
        try:
            if op == "open":
                messages = self._open(args)
            elif self.session is None:
                raise RunCrashed("this run's model is not loaded")
            else:
                messages = _call(self.session, op, args)
        except BaseException as exc:  # noqa: BLE001 - every failure is reported to the worker, which ends the run
            error = describe_error(exc, op)
            if error[0] == "error":
                traceback.print_exc()  # an unexpected one: its traceback goes to the node's worker log
        state = _state_of(self.session) if self.session is not None else RunState()
        wait = max(0.0, state.next_step_at - time.monotonic()) if state.next_step_at else 0.0
        state = replace(state, next_step_at=wait)
        weights = None
        if self.session is not None and state.done and not self.weights_sent and error is None:
            weights = _weights_of(self.session)
            self.weights_sent = True
        return messages, error, state, weights

    def _open(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Build the session; an uploaded dataset's file lies in a private folder only while the data loads."""
        spec = self.spec
        folder = tempfile.mkdtemp(prefix=f"dlplay-{spec.run_id}-") if spec.files is not None else None
        try:
            kwargs = dict(spec.kwargs)
            if folder is not None:
                for name, data in (spec.files or {}).items():
                    Path(folder, name).write_bytes(data)
                kwargs["uploads_dir"] = Path(folder)
            self.session, messages = _open(spec.factory, spec.experiment, kwargs, **args)
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        spec.files = None  # loaded: the bytes are not needed again
        return messages

    def where(self) -> dict[str, Any]:
        """Which node and process host this run (for logs and tests)."""
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


_actor_class_lock = threading.Lock()
_actor_class_cache: Any = None


def _actor_class() -> Any:
    """``RunActor`` as a Ray actor class (made once, on first use: importing this module needs no Ray)."""
    global _actor_class_cache
    with _actor_class_lock:
        if _actor_class_cache is None:
            ray = import_ray()
            # No restarts and no retries: a run that died has lost its model; it fails, and says why.
            _actor_class_cache = ray.remote(num_cpus=RUN_ACTOR_CPUS, max_restarts=0, max_task_retries=0)(RunActor)
        return _actor_class_cache


def spec_for_run(run_id: str, factory: Callable[..., Any], experiment: Any, kwargs: dict[str, Any], *,
                 memory_limit_bytes: int | None) -> RaySpec:
    """The spec of a run's actor, with what only the server's disk has packed in.

    ``kwargs`` are the ones ``Scheduler.build_session`` makes for a child process: ``uploads_dir`` (a
    path on the server) is replaced by the uploaded file the experiment names, if any, and
    ``init_weights`` (a safetensors path) by its tensors. A missing upload is left for the actor's own
    load to report, with the message a child process would give.
    """
    from server.datasets import UPLOAD_PREFIX

    kwargs = dict(kwargs)
    uploads_dir = kwargs.pop("uploads_dir", None)
    files: dict[str, bytes] | None = None
    name = experiment.data.name
    if name.startswith(UPLOAD_PREFIX) and uploads_dir is not None:
        from server.datasets.uploads import upload_path

        files = {}
        try:
            path = upload_path(name.removeprefix(UPLOAD_PREFIX), uploads_dir)
        except ValueError:  # a bad or expired id: the run's own load says so in its stream, as in a child process
            pass
        else:
            files[path.name] = path.read_bytes()
    init_weights = kwargs.get("init_weights")
    if isinstance(init_weights, (str, Path)):
        from safetensors.torch import load_file

        kwargs["init_weights"] = load_file(str(init_weights))
    return RaySpec(run_id=run_id, factory=factory, experiment=experiment, kwargs=kwargs, threads=RUN_ACTOR_CPUS,
                   memory_limit_bytes=memory_limit_bytes, files=files)


# ---------------------------------------------------------------------------
# The handle
# ---------------------------------------------------------------------------


def _lost_reason(exc: BaseException) -> tuple[type[BaseException], str]:
    """What a Ray error about the run's actor means for the run: its error type and a message.

    Ray's own texts are long (ids, addresses, causes it cannot tell apart); the run's stream gets one line.
    """
    text = str(exc)
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else type(exc).__name__
    if "NODE_OUT_OF_MEMORY" in text or "low on memory" in text:  # Ray's memory monitor ended the worker
        return RunOutOfMemory, "the run's Ray worker was ended by Ray's memory monitor: its node ran low on memory"
    if "No module named" in text or "ModuleNotFoundError" in text:
        return RunCrashed, f"the run's Ray actor could not start on its node: {first}. {INSTALL_FIX}"
    if "worker process has died" in text:
        return RunCrashed, ("the run's Ray actor died with its worker process (killed from outside, the kernel's "
                            "out-of-memory killer, or a crash in native code); its node's Ray logs say which")
    return RunCrashed, f"the run's Ray actor ended unexpectedly ({type(exc).__name__}): {first}"


class RaySession:
    """A run whose session lives in a Ray actor; see the module docstring. Made on a worker's starter thread."""

    def __init__(self, spec: RaySpec) -> None:
        self._ray = import_ray()
        self.run_id = spec.run_id
        # Creating the actor does not wait: the cluster places it while the run's open is already queued.
        self.actor = _actor_class().remote(spec)
        self.state = RunState()
        self._sent: deque[tuple[Any, str, Callable[[Reply], None]]] = deque()  # sent, not yet answered
        self._busy_since: float | None = None  # when the oldest unanswered operation was sent
        self._placement_warned = False
        self._dead = False

    @property
    def outstanding(self) -> int:
        return len(self._sent)

    @property
    def alive(self) -> bool:
        return not self._dead

    @property
    def busy_seconds(self) -> float:
        """How long the oldest unanswered operation has been in the actor's hands (0 when none)."""
        return 0.0 if self._busy_since is None else time.monotonic() - self._busy_since

    def request(self, op: str, args: dict[str, Any], on_reply: Callable[[Reply], None]) -> None:
        """Call the actor now (it carries out one call at a time, in the order they were made)."""
        if self._dead:
            on_reply(Reply(op, error=RunCrashed("this run's Ray actor has ended")))
            return
        try:
            ref = self.actor.call.remote(op, args)
        except Exception as exc:  # the connection to the cluster is gone
            self._lost(RunCrashed, f"could not reach the run's Ray actor ({type(exc).__name__}: {exc})")
            on_reply(Reply(op, error=RunCrashed("this run's Ray actor has ended")))
            return
        if not self._sent:
            self._busy_since = time.monotonic()
        self._sent.append((ref, op, on_reply))

    def pump(self, budget: float) -> None:
        """Wait up to ``budget`` (+ a small grace) seconds for answers, in order; hand each to its ``on_reply``."""
        if self._dead or not self._sent:
            return
        deadline = time.monotonic() + budget + PREEMPT_GRACE_SECONDS
        while self._sent:
            ref, op, on_reply = self._sent[0]
            remaining = max(0.0, deadline - time.monotonic())
            ready, _ = self._ray.wait([ref], num_returns=1, timeout=remaining)
            if not ready:
                self._warn_if_unplaced(op)
                return
            self._sent.popleft()
            self._busy_since = time.monotonic() if self._sent else None
            try:
                messages, error, state, weights = self._ray.get(ref)
            except self._ray.exceptions.RayError as exc:
                on_reply_error, reason = _lost_reason(exc)
                self._sent.appendleft((ref, op, on_reply))  # failed with the others, in order
                self._lost(on_reply_error, reason)
                return
            wait = state.next_step_at
            self.state = replace(state, next_step_at=time.monotonic() + wait if wait > 0 else 0.0)
            on_reply(Reply(op, messages=messages, error=_rebuild_error(error) if error else None, weights=weights))
            if time.monotonic() >= deadline:
                break

    def _warn_if_unplaced(self, op: str) -> None:
        """Say once in the log when a run's first operation waits long: the cluster has no CPU free for it."""
        if op == "open" and not self._placement_warned and self.busy_seconds > PLACEMENT_WARNING_SECONDS:
            self._placement_warned = True
            log.warning("run %s has waited %.0f s for its Ray actor: every CPU of the cluster may be held by other "
                        "runs (each holds %d). Fix: add nodes or CPUs, or lower max_active_runs", self.run_id,
                        self.busy_seconds, RUN_ACTOR_CPUS)

    def _lost(self, error_type: type[BaseException], reason: str) -> None:
        """The actor is gone: fail every unanswered operation with ``reason``."""
        self._dead = True
        pending, self._sent = list(self._sent), deque()
        self._busy_since = None
        for _, op, on_reply in pending:
            on_reply(Reply(op, error=error_type(reason)))

    def where(self, timeout: float = 60.0) -> dict[str, Any]:
        """The node and process that host this run (``{"node_id": ..., "pid": ...}``); waits for the actor."""
        return self._ray.get(self.actor.where.remote(), timeout=timeout)

    def kill(self) -> None:
        """End the actor now, even mid-step; unanswered operations are dropped."""
        if not self._dead:
            self._dead = True
            try:
                self._ray.kill(self.actor, no_restart=True)
            except Exception as exc:  # already gone, or the cluster with it
                log.debug("run %s: ray.kill failed: %s", self.run_id, exc)
        self._sent.clear()
        self._busy_since = None

    def close(self) -> None:
        """Release the run: its actor is killed (that frees its CPU and memory at once; there is nothing to flush)."""
        self.kill()


__all__ = ["RAY_NAMESPACE", "RUN_ACTOR_CPUS", "RayUnavailable", "RaySession", "RaySpec", "RunActor", "connect",
           "disconnect", "import_ray", "spec_for_run", "worker_count"]
