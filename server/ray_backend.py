"""Runs on a Ray cluster: the session handle of ``server/isolation.py`` with each run's child process on a Ray node.

When a class outgrows one machine (issue 10), ``isolation = "ray"`` (``dlplay class --ray ADDRESS``) trains
every run on a Ray cluster while the web server stays the one place students connect to:

``RunHost``
    One actor per node with CPUs, made when the server connects (``HOSTS``). It imports and warms the engine
    once and forks each run's child process from a warm fork server on its node, exactly as the server does
    on one machine (``ProcessSession``): a run starts in tens of milliseconds instead of the seconds a fresh
    interpreter takes to import torch (with an actor per run, 50 students on 2 cores waited 30 s and more
    for their first metrics), and each run keeps a process of its own, so ``kill`` ends one run mid-step and
    no other, a run out of memory fails alone, and the run can be frozen between its slices. The host loads
    each run's dataset through a cache of its own (shared with the run's child through shared memory), from
    the experiment, so nodes may be other machines. What only the server's disk has travels with the run:
    an uploaded dataset's file (written to a private folder on the node for the load, then removed) and
    ``train.init_from``'s weights (as tensors).

``RaySession``
    The handle a ``DeviceWorker`` (``server/worker.py``) drives, with the interface of ``ProcessSession``:
    ``request(op, args, on_reply)`` becomes a call of the run's host (one at a time, so the run's operations
    are carried out in order and its channel stamps the same sequence numbers as with a local child),
    ``pump(budget)`` waits up to ``budget`` seconds for the answer (``ray.wait``), hands it to ``on_reply``
    as the same ``Reply``, and freezes the run on its node when it overruns its slice (thawed on its next
    turn). The worker's deficit round robin decides when each run advances, as on one machine.
    Failures map onto the same ``RunError`` / ``RunCrashed`` / ``RunOutOfMemory``.

Ray is an optional extra (``pip install -e .[cluster]``): nothing here imports it until a Ray run is made,
and without it the server says how to install it. Every node needs dlplay installed (the same version as
the server), since hosts import ``server.runner`` there. Where the server runs: a ``HOST:PORT`` address
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
    _is_out_of_memory,
    _rebuild_error,
)

log = logging.getLogger("dlplay.ray")

# The namespace dlplay's actors live in on a shared cluster (they are unnamed; it keeps them apart in listings).
RAY_NAMESPACE = "dlplay"
# Torch threads of each run's child (a run computes on one core, as a child process does on one machine); the
# server drives one run per cluster CPU at a time (``worker_count``).
RUN_CPUS = 1
# Threads of a node's host: each run's call waits for its child on one, besides freeze/thaw and kill calls.
HOST_THREADS = 512
# How often (at most) the server looks for nodes that joined the cluster, when it places a run.
HOST_REFRESH_SECONDS = 10.0  # seconds
# The shortest time slice a run on the cluster gets (RaySession.min_slice_seconds; one machine's is 0.02 s).
RAY_MIN_SLICE_SECONDS = 0.1  # seconds
# A run whose operation is still unanswered this long past its slice is frozen on its node until its next turn
# (a step longer than a slice). Not sooner: a call's round trip through the cluster (tens of milliseconds on a
# busy machine, through a Ray Client) would otherwise freeze runs that are merely on their way back.
FREEZE_AFTER_SECONDS = 0.25  # seconds
# The round trip a reply is waited for beyond its slice at first; then an average of what replies really took.
INITIAL_ROUND_TRIP_SECONDS = 0.02  # seconds
MAX_ROUND_TRIP_SECONDS = 0.25  # seconds: a slower reply is picked up on the run's next turn
# How long the server waits at start for the hosts to warm up (then it serves anyway; opens wait for them).
HOST_READY_SECONDS = 120.0  # seconds
# Worker threads in the server for a Ray cluster, at most: each drives its runs' actors and mostly waits
# in ray.wait, so one per cluster CPU is cheap, but hundreds of threads would not be.
MAX_RAY_WORKERS = 64
# An ``open`` that has waited this long for its actor is most likely waiting for a free CPU on the cluster.
PLACEMENT_WARNING_SECONDS = 30.0  # seconds (a node's host warms up in seconds; on a busy machine, tens)

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


# Attempts at joining through a Ray Client address: its server starts a process per client, which now and then
# dies as it starts on a busy machine ("Initialization failure from server"); a second attempt gets a fresh one.
CLIENT_CONNECT_ATTEMPTS = 3


def _init(ray: Any, address: str, node_ip: str | None) -> None:
    # The actors' output stays in the cluster's own logs: errors come back in each run's stream.
    options: dict[str, Any] = {"namespace": RAY_NAMESPACE, "ignore_reinit_error": True, "log_to_driver": False}
    if node_ip and not address.startswith("ray://"):
        options["_node_ip_address"] = node_ip  # which of this machine's raylets to join through
    for attempt in range(1, CLIENT_CONNECT_ATTEMPTS + 1):
        try:
            ray.init(address=address, **options)
            return
        except ConnectionAbortedError as exc:
            if not address.startswith("ray://") or attempt == CLIENT_CONNECT_ATTEMPTS:
                raise
            log.warning("the Ray Client server failed to start this client (%s); trying again", str(exc)[:200])
            time.sleep(1.0)


def connect(address: str | None, node_ip: str | None = None) -> dict[str, float]:
    """Connect this process to the Ray cluster at ``address`` (once; later calls reuse the connection).

    ``address``: a cluster's GCS address (``HOST:PORT``, as ``ray start --head`` prints), ``auto`` for one
    started on this machine, or a Ray Client address ``ray://HOST:PORT`` (every call then goes through the
    client server's proxy: slower). ``node_ip``: this machine's address on the cluster, where it has several
    (``settings.ray_node_ip``). Returns the cluster's resources (``{"CPU": 16.0, ...}``). Raises
    RayUnavailable when Ray is missing or the cluster does not answer.
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
                _init(ray, address, node_ip)
            except Exception as exc:  # ConnectionError, or whatever the client raises: all mean "not reachable"
                raise RayUnavailable(
                    f"could not connect to the Ray cluster at {address!r}: {type(exc).__name__}: {exc}. Fix: check "
                    "that the cluster is running (`ray status` on its head) and that this machine can reach it"
                ) from None
    HOSTS.refresh()  # every node's host starts warming up now, before the first run needs it
    return dict(ray.cluster_resources())


def disconnect() -> None:
    """Leave the cluster (the server's actors die with the connection: none outlives the server)."""
    try:
        import ray
    except ImportError:
        return
    with _connect_lock:
        HOSTS.clear()
        if ray.is_initialized():
            ray.shutdown()


def worker_count(max_active_runs: int) -> int:
    """How many DeviceWorker threads keep the cluster busy: one per run it can train at once, capped.

    A worker waits on one run's actor at a time, so fewer workers than cluster CPUs would leave CPUs
    idle; more than ``max_active_runs`` would have nothing to do.
    """
    ray = import_ray()
    cpus = float(ray.cluster_resources().get("CPU", 0.0))
    runs_at_once = int(cpus // RUN_CPUS)
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
    if isinstance(exc, RunCrashed):  # the run's process on the node ended (killed, or a crash in native code)
        return ("crash", "run_crashed", f"{exc} (on its Ray node)")
    if isinstance(exc, ValueError):
        # A document the run cannot be built from, or a command's value the session refuses (a set lr).
        return ("value", getattr(exc, "code", "invalid_experiment" if op == "open" else "bad_arguments"), str(exc))
    if isinstance(exc, TypeError):
        return ("type", "bad_arguments", str(exc))
    return ("error", type(exc).__name__, str(exc))


class RunHost:
    """The runs on one Ray node: each in a child process forked from a warm fork server on the node.

    One host per node (``RunHosts``), made when the server connects, so the engine's import and warm-up
    (seconds of CPU) happen once per node, not once per run: a run then starts in tens of milliseconds,
    as a child process does on one machine, and a class of 50 pressing Train at once does not wait for
    50 Python interpreters to import torch. Each run keeps a process of its own, so everything
    ``ProcessSession`` gives a run holds here too: ``kill`` ends one run mid-step and no other, a run that
    runs out of memory fails alone (its child's address-space limit), and the server's worker keeps it to
    its slices by freezing and thawing it (``set_frozen``).

    Ray makes it a threaded actor (``_host_class``): each call waits for its run's child on a thread of its
    own, so the node's runs compute side by side. The server sends one operation per run at a time
    (``RaySession``), so a run's operations are carried out in the order they were made. As a plain class it
    is what tests of its logic call directly, without Ray.
    """

    def __init__(self) -> None:
        from server.config import CLASS_SPARE_RUN_PROCESSES, Settings
        from server.data_cache import DatasetCache
        from server.isolation import spare_children, start_fork_server

        settings = Settings()
        # The node's datasets, shared with its runs' children through shared memory, as the server's cache does.
        self._datasets = DatasetCache(settings.dataset_cache_budget, large_bytes=settings.dataset_large_bytes,
                                      wait_seconds=settings.dataset_wait_seconds)
        self._runs: dict[str, Any] = {}  # run id -> its ProcessSession
        self._generations: dict[str, int] = {}  # run id -> the newest freeze/thaw applied (they may arrive out of order)
        self._lock = threading.Lock()
        self.niceness = _normal_priority()  # before the fork server starts: its children inherit it
        self.warm_up_seconds = start_fork_server()
        # Run processes forked and warmed ahead of need on this node, as the server keeps them for a class.
        spares = settings.spare_run_processes
        spare_children(spares if spares is not None else min(CLASS_SPARE_RUN_PROCESSES, 8 * (os.cpu_count() or 1))).fill()

    def ready(self) -> dict[str, Any]:
        """This host's node, process, niceness and warm-up time, once its fork server is up (callers wait on it)."""
        return {"node_id": _node_id(), "pid": os.getpid(), "warm_up_seconds": self.warm_up_seconds,
                "niceness": self.niceness}

    def open(self, spec: RaySpec, args: dict[str, Any]) -> tuple[list[dict[str, Any]], tuple[str, str, str] | None,
                                                                 RunState, dict[str, Any] | None]:
        """Load the run's data (the node's cache), fork its child and open it; replies as ``call`` does.

        An uploaded dataset's file lies in a private folder only while its data loads.
        """
        from server.isolation import ChildSpec, ProcessSession

        folder = tempfile.mkdtemp(prefix=f"dlplay-{spec.run_id}-") if spec.files is not None else None
        try:
            kwargs = dict(spec.kwargs)
            if folder is not None:
                for name, data in (spec.files or {}).items():
                    Path(folder, name).write_bytes(data)
            kwargs["dataset"] = self._datasets.get(spec.experiment.data, Path(folder) if folder else None)
            session = ProcessSession(ChildSpec(run_id=spec.run_id, factory=spec.factory, experiment=spec.experiment,
                                               kwargs=kwargs, threads=spec.threads,
                                               memory_limit_bytes=spec.memory_limit_bytes))
        except BaseException as exc:  # noqa: BLE001 - the run fails with what went wrong, the host goes on
            return [], describe_error(exc, "open"), RunState(), None
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        with self._lock:
            self._runs[spec.run_id] = session
        return self.call(spec.run_id, "open", args)

    def call(self, run_id: str, op: str, args: dict[str, Any]) -> tuple[list[dict[str, Any]],
                                                                         tuple[str, str, str] | None,
                                                                         RunState, dict[str, Any] | None]:
        """Carry out ``op`` in the run's child; returns ``(messages, error, state, weights)`` as a child replies.

        ``state.next_step_at`` is sent as seconds from now (clocks of two machines do not compare);
        ``RaySession`` turns it back into a time on the server's clock.
        """
        session = self._runs.get(run_id)
        if session is None:
            return [], ("crash", "run_crashed", "this run's process on its Ray node has ended"), RunState(), None
        reply = session.call(op, args)
        error = describe_error(reply.error, op) if reply.error is not None else None
        state = session.state
        wait = max(0.0, state.next_step_at - time.monotonic()) if state.next_step_at else 0.0
        if not session.alive:
            self._forget(run_id)
        return reply.messages, error, replace(state, next_step_at=wait), reply.weights

    def set_frozen(self, run_id: str, generation: int, frozen: bool) -> None:
        """Freeze (SIGSTOP) or thaw the run's child; a request older than one already applied is ignored."""
        with self._lock:
            session = self._runs.get(run_id)
            if session is None or generation <= self._generations.get(run_id, -1):
                return
            self._generations[run_id] = generation
            session.freeze() if frozen else session.thaw()

    def kill(self, run_id: str) -> None:
        """End the run's child now, even mid-step (SIGKILL); its call, if one waits, answers that it ended."""
        session = self._forget(run_id)
        if session is not None:
            session.kill()

    def where(self, run_id: str) -> dict[str, Any]:
        """The node and the process the run computes in (``pid`` None once it has ended)."""
        session = self._runs.get(run_id)
        return {"node_id": _node_id(), "pid": session.process.pid if session is not None else None,
                "host_pid": os.getpid()}

    def run_count(self) -> int:
        return len(self._runs)

    def close(self) -> None:
        """Kill every run's process (a host that ends takes its runs with it; this does it at once)."""
        for run_id in list(self._runs):
            self.kill(run_id)

    def _forget(self, run_id: str) -> Any:
        with self._lock:
            self._generations.pop(run_id, None)
            return self._runs.pop(run_id, None)


def _normal_priority() -> int:
    """Run at the normal priority if this process may; returns the niceness it runs at.

    Ray starts its worker processes at niceness 15 (``RAY_worker_niceness``), meant for background tasks:
    a node's runs would then get only what every other process there leaves them (on a 2-core machine shared
    with the web server, a tenth of the steps). Lowering it back needs the right to (root, CAP_SYS_NICE);
    without it the host says how to start the nodes instead.
    """
    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    if niceness > 0:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
            niceness = 0
        except OSError:
            log.warning("this node's runs train at niceness %d (Ray's default for its workers), behind every other "
                        "process on the node. Fix: start the node with RAY_worker_niceness=0 in its environment "
                        "(RAY_worker_niceness=0 ray start ...)", niceness)
    return niceness


def _node_id() -> str | None:
    """The Ray node this process is on (None outside Ray: a host's logic tested without a cluster)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except ImportError:
        return None


_host_class_lock = threading.Lock()
_host_class_cache: Any = None


def _host_class() -> Any:
    """``RunHost`` as a Ray actor class (made once, on first use: importing this module needs no Ray).

    It holds no CPU of its own (``num_cpus=0``): its runs' children compute, as many at once as the server's
    workers drive (``worker_count``: one per cluster CPU).
    """
    global _host_class_cache
    with _host_class_lock:
        if _host_class_cache is None:
            ray = import_ray()
            # No restarts: a host that died took its runs' models with it; they fail, and say why.
            _host_class_cache = ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0,
                                           max_concurrency=HOST_THREADS)(RunHost)
        return _host_class_cache


@dataclass
class HostRecord:
    """The server's note of one node's host: its actor, the node's CPUs and how many runs it has now."""

    node_id: str
    cpus: float
    actor: Any
    runs: int = 0
    ready: Any = None  # the ObjectRef of its ready() call


class RunHosts:
    """The hosts of the cluster's nodes, seen from the server: made when it connects, one per node with CPUs,
    again for a node that joins later (looked at every ``HOST_REFRESH_SECONDS`` when a run is placed).

    ``place`` gives a new run the host whose node has the most CPUs per run it already trains.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hosts: dict[str, HostRecord] = {}
        self._looked_at = -float("inf")

    def refresh(self) -> list[HostRecord]:
        """Make a host on every live node with CPUs that has none; drop the hosts of nodes that left."""
        ray = import_ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = {n["NodeID"]: float(n.get("Resources", {}).get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")}
        with self._lock:
            for node_id in list(self._hosts):
                if node_id not in nodes:
                    del self._hosts[node_id]
            for node_id, cpus in nodes.items():
                if cpus > 0 and node_id not in self._hosts:
                    actor = _host_class().options(
                        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)).remote()
                    self._hosts[node_id] = HostRecord(node_id, cpus, actor, ready=actor.ready.remote())
            self._looked_at = time.monotonic()
            return list(self._hosts.values())

    def place(self) -> HostRecord:
        """The host for a new run (its count goes up; ``release`` when the run ends)."""
        if time.monotonic() - self._looked_at > HOST_REFRESH_SECONDS or not self._hosts:
            self.refresh()
        with self._lock:
            if not self._hosts:
                raise RayUnavailable("the Ray cluster has no node with CPUs to train on. Fix: start worker nodes "
                                     "(`ray start --address HEAD:6379 --num-cpus N`) or give the head CPUs")
            host = min(self._hosts.values(), key=lambda h: (h.runs + 1) / h.cpus)
            host.runs += 1
            return host

    def release(self, host: HostRecord) -> None:
        with self._lock:
            host.runs = max(0, host.runs - 1)

    def lost(self, host: HostRecord) -> None:
        """The host's actor died (its node went down, or it was killed): a fresh one is made at the next look."""
        with self._lock:
            if self._hosts.get(host.node_id) is host:
                del self._hosts[host.node_id]
                self._looked_at = -float("inf")

    def wait_ready(self, timeout: float) -> list[dict[str, Any]]:
        """Wait until every host has warmed up; returns their ``ready()`` answers (node, pid, seconds)."""
        ray = import_ray()
        with self._lock:
            refs = [h.ready for h in self._hosts.values()]
        return ray.get(refs, timeout=timeout) if refs else []

    def clear(self) -> None:
        with self._lock:
            self._hosts.clear()
            self._looked_at = -float("inf")


HOSTS = RunHosts()


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
    return RaySpec(run_id=run_id, factory=factory, experiment=experiment, kwargs=kwargs, threads=RUN_CPUS,
                   memory_limit_bytes=memory_limit_bytes, files=files)


# ---------------------------------------------------------------------------
# The handle
# ---------------------------------------------------------------------------


def _lost_reason(exc: BaseException) -> tuple[type[BaseException], str]:
    """What a Ray error about the run's host means for the run: its error type and a message.

    Ray's own texts are long (ids, addresses, causes it cannot tell apart); the run's stream gets one line.
    """
    text = str(exc)
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else type(exc).__name__
    if "NODE_OUT_OF_MEMORY" in text or "low on memory" in text:  # Ray's memory monitor ended the worker
        return RunOutOfMemory, "the run's Ray node host was ended by Ray's memory monitor: its node ran low on memory"
    if "No module named" in text or "ModuleNotFoundError" in text:
        return RunCrashed, f"the run's Ray node host could not start: {first}. {INSTALL_FIX}"
    if "worker process has died" in text:
        return RunCrashed, ("the run's Ray node host died with its worker process (its node went down, killed from "
                            "outside, or the kernel's out-of-memory killer); its node's Ray logs say which")
    return RunCrashed, f"the run's Ray node host ended unexpectedly ({type(exc).__name__}): {first}"


class RaySession:
    """A run whose child process lives on a Ray node, under that node's ``RunHost``; see the module docstring.

    Made on a worker's starter thread. One operation is with the host at a time (the next is sent when
    its reply comes), so a run's operations are carried out in order on the host's threads.
    """

    # Every slice is a call through the cluster (and, from a Ray Client, through its proxy): a few milliseconds
    # of work per slice would spend more CPU on the calls than on training. The worker gives longer slices.
    min_slice_seconds = RAY_MIN_SLICE_SECONDS

    def __init__(self, spec: RaySpec) -> None:
        self._ray = import_ray()
        self.run_id = spec.run_id
        self._spec: RaySpec | None = spec  # sent with the open, then dropped
        self._host = HOSTS.place()
        self.state = RunState()
        self._waiting: deque[tuple[str, dict[str, Any], Callable[[Reply], None]]] = deque()  # not sent yet
        self._in_flight: tuple[Any, str, Callable[[Reply], None]] | None = None
        self._sent_at = 0.0  # time.monotonic() when the operation in flight was sent
        self._sent_slice = 0.0  # the seconds of work it asked for (an advance's max_seconds; 0 for the others)
        self._round_trip = INITIAL_ROUND_TRIP_SECONDS  # what a reply takes beyond its work, on average
        self._busy_since: float | None = None  # when the oldest unanswered operation was asked for
        self._frozen = False
        self._generation = 0  # of freeze/thaw requests, so the host applies only the newest
        self._placement_warned = False
        self._dead = False
        self._released = False

    @property
    def outstanding(self) -> int:
        return len(self._waiting) + (self._in_flight is not None)

    @property
    def alive(self) -> bool:
        return not self._dead

    @property
    def busy_seconds(self) -> float:
        """How long the oldest unanswered operation has waited (0 when none)."""
        return 0.0 if self._busy_since is None else time.monotonic() - self._busy_since

    def request(self, op: str, args: dict[str, Any], on_reply: Callable[[Reply], None]) -> None:
        """Queue an operation; it goes to the host when the ones before it have been answered."""
        if self._dead:
            on_reply(Reply(op, error=RunCrashed("this run's process on its Ray node has ended")))
            return
        if self._busy_since is None:
            self._busy_since = time.monotonic()
        self._waiting.append((op, args, on_reply))
        if self._in_flight is None:
            self._send_next()

    def _send_next(self) -> None:
        op, args, on_reply = self._waiting.popleft()
        actor = self._host.actor
        try:
            if op == "open":
                ref = actor.open.remote(self._spec, args)
                self._spec = None
            else:
                ref = actor.call.remote(self.run_id, op, args)
        except Exception as exc:  # the connection to the cluster is gone
            self._waiting.appendleft((op, args, on_reply))
            self._lost(RunCrashed, f"could not reach the run's Ray node ({type(exc).__name__}: {exc})")
            return
        self._in_flight = (ref, op, on_reply)
        self._sent_at = time.monotonic()
        self._sent_slice = float(args.get("max_seconds", 0.0)) if op == "advance" else 0.0

    def pump(self, budget: float) -> None:
        """Let the run work for up to ``budget`` (+ a small grace) seconds and hand each answer to its ``on_reply``,
        in order; a run still busy at the end is frozen on its node until its next turn (not while it opens)."""
        if self._dead or self._in_flight is None:
            return
        if self._frozen:
            self._set_frozen(False)
        # The reply of a slice comes a round trip after its work: waited for, it is handled in this turn, not the
        # run's next one (a round later: runs would work every other round).
        deadline = time.monotonic() + budget + PREEMPT_GRACE_SECONDS + self._round_trip
        while self._in_flight is not None:
            ref, op, on_reply = self._in_flight
            remaining = max(0.0, deadline - time.monotonic())
            ready, _ = self._ray.wait([ref], num_returns=1, timeout=remaining)
            if not ready:
                overdue = time.monotonic() - self._sent_at - self._sent_slice
                if op != "open" and overdue > FREEZE_AFTER_SECONDS + budget:
                    self._set_frozen(True)
                self._warn_if_unplaced(op)
                return
            self._in_flight = None
            took = time.monotonic() - self._sent_at - self._sent_slice
            self._round_trip = min(MAX_ROUND_TRIP_SECONDS, 0.8 * self._round_trip + 0.2 * max(0.0, took))
            try:
                messages, error, state, weights = self._ray.get(ref)
            except self._ray.exceptions.RayError as exc:
                error_type, reason = _lost_reason(exc)
                self._waiting.appendleft((op, {}, on_reply))  # failed with the others, in order
                HOSTS.lost(self._host)
                self._lost(error_type, reason)
                return
            if self._waiting:
                self._send_next()
            else:
                self._busy_since = None
            wait = state.next_step_at
            self.state = replace(state, next_step_at=time.monotonic() + wait if wait > 0 else 0.0)
            if error is not None and error[1] == "run_crashed":
                self._dead = True
            on_reply(Reply(op, messages=messages, error=_rebuild_error(error) if error else None, weights=weights))
            if self._dead:
                self._lost(RunCrashed, "this run's process on its Ray node has ended")
                return
            if time.monotonic() >= deadline:
                break

    def _set_frozen(self, frozen: bool) -> None:
        self._generation += 1
        self._frozen = frozen
        try:
            self._host.actor.set_frozen.remote(self.run_id, self._generation, frozen)
        except Exception as exc:  # the cluster is gone: the next call says so
            log.debug("run %s: could not %s it: %s", self.run_id, "freeze" if frozen else "thaw", exc)

    def _warn_if_unplaced(self, op: str) -> None:
        """Say once in the log when a run's open waits long: its node's host is not up (yet)."""
        if op == "open" and not self._placement_warned and self.busy_seconds > PLACEMENT_WARNING_SECONDS:
            self._placement_warned = True
            log.warning("run %s has waited %.0f s for its Ray node %s: its host is not up. Fix: check the node "
                        "(`ray status`) and that dlplay is installed there", self.run_id, self.busy_seconds,
                        self._host.node_id)

    def _lost(self, error_type: type[BaseException], reason: str) -> None:
        """The run's process (or its node) is gone: fail every unanswered operation with ``reason``."""
        self._dead = True
        pending = ([self._in_flight[1:]] if self._in_flight is not None else []) + [(op, cb) for op, _, cb in self._waiting]
        self._in_flight = None
        self._waiting.clear()
        self._busy_since = None
        self._release()
        for op, on_reply in pending:
            on_reply(Reply(op, error=error_type(reason)))

    def where(self, timeout: float = 60.0) -> dict[str, Any]:
        """The node and the process that train this run (``{"node_id", "pid", "host_pid"}``); waits for its open
        to reach the host."""
        return self._ray.get(self._host.actor.where.remote(self.run_id), timeout=timeout)

    def kill(self) -> None:
        """End the run's process now, even mid-step; unanswered operations are dropped."""
        if not self._dead:
            self._dead = True
            try:
                self._host.actor.kill.remote(self.run_id)
            except Exception as exc:  # the host is already gone, or the cluster with it
                log.debug("run %s: kill failed: %s", self.run_id, exc)
        self._in_flight = None
        self._waiting.clear()
        self._busy_since = None
        self._release()

    def close(self) -> None:
        """Release the run: its process is killed (that frees its memory at once; there is nothing to flush)."""
        self.kill()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            HOSTS.release(self._host)


__all__ = ["HOSTS", "RAY_NAMESPACE", "RUN_CPUS", "RayUnavailable", "RaySession", "RaySpec", "RunHost",
           "RunHosts", "connect", "disconnect", "import_ray", "spec_for_run", "worker_count"]
