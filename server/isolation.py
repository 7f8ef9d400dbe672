"""Where a run's model lives: in a child process the server can freeze and kill, or in-process.

A worker (``server/worker.py``) talks to every run through a *session handle* with
one small asynchronous interface: ``request(op, args, on_reply)`` queues an
operation (``open``, ``advance``, ``probe``, ``stop``, ...), ``pump(budget)`` lets the
run work on its queue for about ``budget`` seconds and calls ``on_reply`` for each
operation that finished, in order. Two handles implement it:

``ProcessSession``
    The run's ``RunSession`` lives in a child process forked from a warm fork server
    (imports done, engine warmed up once), so starting one costs ~10 ms. The child
    only computes while the worker pumps it; when an operation overruns its slice
    (a step longer than the slice), the child is frozen with SIGSTOP and thawed on
    its next turn, so one run with 60-second steps gets its fair share of the CPU
    and no more. ``kill()`` ends it at once, even inside a step (``stop`` and the
    time limit use it after a grace period). A run that runs out of memory (its
    child has an address-space limit) fails alone with ``out_of_memory``.
    Datasets reach the child through shared memory (torch's tensor reductions):
    runs on the same data share one copy with the server's dataset cache.

``LocalSession``
    The same interface over an in-process session object: operations run to the
    end inside ``pump``. Used with ``DLPLAY_ISOLATION=thread`` and by tests that
    pass a fake session factory.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import multiprocessing
import os
import resource
import signal
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger("dlplay.isolation")

# How far past its slice an operation may run before its child is frozen (a step rarely ends exactly on time).
PREEMPT_GRACE_SECONDS = 0.02  # seconds
# How long ``ProcessSession.call`` waits at a time (it waits again until the reply comes; only a hang guard's unit).
CALL_WAIT_SECONDS = 3600.0  # seconds
# Children forked ahead of need by default (``SpareChildren``; the server's setting ``spare_run_processes``).
SPARE_CHILDREN = 0
# Spares are forked again only this long after a run last took one (a burst of starts gets the CPU first).
SPARE_REFILL_QUIET_SECONDS = 0.5  # seconds
# Operations waiting for one run at most (commands beyond it are refused with ``too_busy``).
MAX_OUTSTANDING = 32
# The ops a run's child carries out; each is a method of RunSession (``open``/``close`` are the host's own).
SESSION_OPS = ("advance", "step_once", "refresh", "stop", "set_hyperparams", "set_speed", "set_views",
               "probe", "predict")


@dataclass
class Reply:
    """The outcome of one operation: its messages, or the error that ended it."""

    op: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None
    weights: dict[str, Any] | None = None  # the model's state dict, sent once when the run ends


class RunOutOfMemory(MemoryError):
    """The run needed more memory than it may have; only this run ends."""


class RunCrashed(RuntimeError):
    """The run's process ended without saying why (killed from outside, or a crash in native code)."""


class RunError(ValueError):
    """A ValueError raised inside the run (a bad argument, an invalid experiment) with its protocol code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------
# The state both handles report
# ---------------------------------------------------------------------------


@dataclass
class RunState:
    """What the worker needs to know about a session between operations (copied from the child's replies)."""

    done: bool = False
    final: dict[str, Any] | None = None
    steps: int = 0
    epochs: float = 0.0
    next_step_at: float = 0.0  # time.monotonic() when a speed limit lets the next step run (0: now)


def _state_of(session: Any) -> RunState:
    trainer = getattr(session, "trainer", None)
    wait = session.next_step_in() if hasattr(session, "next_step_in") else 0.0
    return RunState(
        done=bool(getattr(session, "done", False)),
        final=getattr(session, "final", None),
        steps=int(getattr(trainer, "step_count", 0) or 0),
        epochs=float(getattr(trainer, "epoch", 0.0) or 0.0),
        next_step_at=time.monotonic() + wait if wait > 0 else 0.0,
    )


def _weights_of(session: Any) -> dict[str, Any] | None:
    """The model's parameters and buffers on the CPU (what the store saves), or None if there is no model."""
    trainer = getattr(session, "trainer", None)
    model = getattr(trainer, "model", None)
    if model is None:
        return None
    return {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}


def _call(session: Any, op: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    if op not in SESSION_OPS:
        raise RunError("unknown_command", f"unknown operation {op!r}")
    if op == "probe":
        args = dict(args)
        kind = args.pop("kind")
        return session.probe(kind, **args)
    if op == "set_speed":
        return session.set_speed(args.get("steps_per_s"))
    if op == "set_views":
        session.set_views(args.get("views"))
        return []
    if op == "predict":
        return session.predict(args["input"])
    return getattr(session, op)(**args)


def _open(factory: Callable[..., Any], experiment: Any, kwargs: dict[str, Any], first_steps: int,
          first_seconds: float, views: dict[str, Any] | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """Build the session with the views its watchers want, send its first messages, and take a first
    short slice (its first metrics point).

    A run that trains at once (``first_steps`` > 0) opens without step-0 frames: its views draw from its next
    slice, after the first metrics point. An open is then only the build and the first steps (about 15 ms for
    a small MLP instead of 50), which is what a class of 50 pressing Train at the same instant waits on (issue 10).
    A run started paused (``first_steps`` 0) shows every view at step 0, since it waits there.

    ``first_seconds`` bounds the first steps in this thread's CPU time, not wall time: when many runs open at
    once each gets a sliver of a core, and a wall-time bound would end the slice a few steps short of the
    first metrics point, which would then wait for the run's next turn, a whole round later.
    """
    session = factory(experiment, **kwargs)
    if views is not None:
        session.set_views(views)
    messages = session.start(frames=first_steps == 0)
    if first_steps > 0 and not session.done:
        messages = messages + session.advance(max_steps=first_steps, max_seconds=first_seconds, cpu_time=True)
    return session, messages


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


# ---------------------------------------------------------------------------
# In-process
# ---------------------------------------------------------------------------


class LocalSession:
    """The handle interface over an in-process session: operations run to completion inside ``pump``."""

    def __init__(self, factory: Callable[..., Any], experiment: Any, kwargs: dict[str, Any]) -> None:
        self._factory = factory
        self._experiment = experiment
        self._kwargs = kwargs
        self.session: Any = None
        self.state = RunState()
        self._queue: deque[tuple[str, dict[str, Any], Callable[[Reply], None]]] = deque()
        self._weights_sent = False

    @property
    def outstanding(self) -> int:
        return len(self._queue)

    @property
    def busy_seconds(self) -> float:
        """How long the operation in progress has been running (never long in-process: pump runs it to the end)."""
        return 0.0

    def request(self, op: str, args: dict[str, Any], on_reply: Callable[[Reply], None]) -> None:
        self._queue.append((op, args, on_reply))

    def pump(self, budget: float) -> None:
        """Run every queued operation to its end, calling each one's ``on_reply``."""
        while self._queue:
            op, args, on_reply = self._queue.popleft()
            reply = Reply(op)
            try:
                if op == "open":
                    self.session, reply.messages = _open(self._factory, self._experiment, self._kwargs, **args)
                elif self.session is None:
                    raise RunCrashed("this run's model is not loaded")
                else:
                    reply.messages = _call(self.session, op, args)
            except BaseException as exc:  # the worker turns it into the run's error
                reply.error = RunOutOfMemory(str(exc)) if _is_out_of_memory(exc) else exc
            if self.session is not None:
                self.state = _state_of(self.session)
                if self.state.done and not self._weights_sent and reply.error is None:
                    reply.weights = _weights_of(self.session)
                    self._weights_sent = True
            on_reply(reply)

    def kill(self) -> None:
        self.close()

    def close(self) -> None:
        session, self.session = self.session, None
        self._queue.clear()
        if session is not None:
            session.close()

    @property
    def alive(self) -> bool:
        return self.session is not None


# ---------------------------------------------------------------------------
# In a child process
# ---------------------------------------------------------------------------

_context_lock = threading.Lock()
_context: Any = None


def process_context() -> Any:
    """The multiprocessing context runs are forked from: a fork server that imported and warmed the engine once.

    Forking a process that has run OpenMP-parallel torch ops is unsafe (the child's thread
    pool is in an undefined state), so the fork server warms up with one thread, and each
    child sets its own thread count.
    """
    global _context
    with _context_lock:
        if _context is None:
            import torch.multiprocessing  # noqa: F401 - registers the reductions that share tensors through memory

            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["server.child_preload"])
            _context = context
        return _context


def start_fork_server() -> float:
    """Start the fork server and wait until it has warmed the engine (seconds), so the first run does not wait.

    Returns the seconds it took. Forking one empty child is what waits for the preload to end.
    """
    started = time.perf_counter()
    context = process_context()
    probe = context.Process(target=_nothing, name="dlplay-fork-server-check", daemon=True)
    probe.start()
    probe.join(timeout=120)
    return time.perf_counter() - started


def _nothing() -> None:
    """A child that only proves the fork server is up."""


# Niceness of the helper process that makes previews: side work yields to training runs and the server.
# Runs themselves keep the normal priority: on a laptop they compete with the student's own browser, which
# draws what they send (a niceness of 5 there starved LeNet's live views in the page).
ASIDE_NICENESS = 10

_aside_lock = threading.Lock()
_aside_pool: Any = None


def _lower_priority(increment: int) -> None:
    try:
        os.nice(increment)
    except OSError:  # not allowed to: run at the normal priority
        pass


def _close_aside_pool() -> None:
    global _aside_pool
    with _aside_lock:
        pool, _aside_pool = _aside_pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def run_aside(fn: Callable[..., Any], *args: Any, timeout: float = 120.0) -> Any:
    """``fn(*args)`` in a helper process at low priority (one at a time), for CPU work a request asks for
    (a dataset preview) that must not take the server's interpreter lock or the cores the runs need.

    ``fn`` and its arguments and result must be picklable; exceptions come back as raised by ``fn``
    unless they cannot be pickled (callers return errors as values to be safe).
    """
    global _aside_pool
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with _aside_lock:
        if _aside_pool is None:
            _aside_pool = ProcessPoolExecutor(max_workers=1, mp_context=process_context(),
                                              initializer=_lower_priority, initargs=(ASIDE_NICENESS,))
            atexit.register(_close_aside_pool)  # before the interpreter tears its modules down under the pool
        pool = _aside_pool
    try:
        return pool.submit(fn, *args).result(timeout=timeout)
    except BrokenProcessPool:  # the helper died (killed, out of memory): start a fresh one next time
        with _aside_lock:
            if _aside_pool is pool:
                _aside_pool = None
        raise


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent (the fork server) dies: no orphan runs after a kill -9."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the child still ends when its pipe closes
        pass


def _limit_memory(extra_bytes: int | None) -> None:
    """Let this process's data segment grow by ``extra_bytes`` beyond what it holds now; allocations past it fail."""
    if not extra_bytes:
        return
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            data_kb = next(int(line.split()[1]) for line in status if line.startswith("VmData:"))
    except (OSError, StopIteration, ValueError):
        return
    limit = data_kb * 1024 + int(extra_bytes)
    try:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    except (ValueError, OSError):
        log.warning("could not limit a run's memory to %d bytes", limit)


@dataclass
class ChildSpec:
    """What a run's child process needs to start (pickled to it)."""

    run_id: str
    factory: Callable[..., Any]
    experiment: Any
    kwargs: dict[str, Any]
    threads: int
    memory_limit_bytes: int | None


def spare_main(conn: Any) -> None:
    """A spare child (``SpareChildren``): forked ahead of need, it waits for its run's spec, then is that run's child.

    The spec comes through the pipe; its dataset tensors stay in shared memory (torch's reductions pass
    their file descriptors), as when the spec comes with the fork.

    While it waits it does the warm-up runs once more (``server.warmup``): a forked child's first run writes
    to thousands of pages it shares with the fork server, and each write copies one (here 3,500 copies made
    an open of 12 ms take 40). Done ahead of need, the run's open is as quick as in a warm process.
    """
    from server.warmup import warm_up

    warm_up()
    try:
        spec = conn.recv()
    except (EOFError, OSError):  # the server ended, or closed the pool: nothing to do
        return
    child_main(conn, spec)


def child_main(conn: Any, spec: ChildSpec) -> None:
    """The child's loop: carry out one request at a time, reply with messages and the run's state."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is the server's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import torch

    torch.set_num_threads(max(1, spec.threads))
    _limit_memory(spec.memory_limit_bytes)
    session = None
    weights_sent = False
    while True:
        try:
            request_id, op, args = conn.recv()
        except (EOFError, OSError):
            break
        if op == "close":
            break
        messages: list[dict[str, Any]] = []
        error: tuple[str, str, str] | None = None
        try:
            if op == "open":
                session, messages = _open(spec.factory, spec.experiment, spec.kwargs, **args)
            elif session is None:
                raise RunCrashed("this run's model is not loaded")
            else:
                messages = _call(session, op, args)
        except BaseException as exc:  # noqa: BLE001 - every failure is reported to the worker, which ends the run
            if _is_out_of_memory(exc):
                error = ("oom", "out_of_memory", str(exc) or type(exc).__name__)
            elif isinstance(exc, ValueError):
                # A document the run cannot be built from, or a command's value the session refuses (a set lr).
                error = ("value", getattr(exc, "code", "invalid_experiment" if op == "open" else "bad_arguments"), str(exc))
            elif isinstance(exc, TypeError):
                error = ("type", "bad_arguments", str(exc))
            else:
                error = ("error", type(exc).__name__, str(exc))
                traceback.print_exc()
        state = _state_of(session) if session is not None else RunState()
        weights = None
        if session is not None and state.done and not weights_sent and error is None:
            weights = _weights_of(session)
            weights_sent = True
        try:
            conn.send((request_id, messages, error, state, weights))
        except MemoryError:
            conn.send((request_id, [], ("oom", "out_of_memory", "no memory left to send the results"), state, None))
    if session is not None:
        try:
            session.close()
        except Exception:  # the process ends anyway
            pass


def _rebuild_error(error: tuple[str, str, str]) -> BaseException:
    kind, code, text = error
    if kind == "oom":
        return RunOutOfMemory(text)
    if kind == "crash":  # relayed by a Ray node host (server/ray_backend.py): the run's process there ended
        return RunCrashed(text)
    if kind == "value":
        return RunError(code, text)
    if kind == "type":
        return TypeError(text)
    return RuntimeError(f"{code}: {text}")


def _death_error(reason: str) -> BaseException:
    """The error a run's operations fail with when its process has ended for ``reason`` (``_death_reason``)."""
    return RunOutOfMemory(reason) if "out of memory" in reason else RunCrashed(reason)


class SpareChildren:
    """Children forked ahead of need, so that a run starts without waiting for a fork (issue 10).

    A fork from the fork server takes ~12 ms on an idle machine, but when a class of 50 presses Train at
    once the fork server competes for the cores with the runs it has just forked, and each fork took 80 ms:
    the 50th run waited two seconds for its process. A run takes a spare when there is one (its spec goes
    through the pipe) and a thread forks a new spare in the background. An idle spare holds about 8 MiB
    of its own (the rest is shared with the fork server). ``size`` 0: no spares, every run forks its own.
    """

    def __init__(self, size: int) -> None:
        self.size = max(0, int(size))
        self._spares: deque[tuple[Any, Any]] = deque()  # (process, the server's end of its pipe)
        self._wanted = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._last_taken = -float("inf")  # time.monotonic() of the last take: refills wait for a quiet moment

    @property
    def ready(self) -> int:
        """Spares forked and waiting now."""
        return len(self._spares)

    def take(self) -> tuple[Any, Any] | None:
        """A live spare ``(process, connection)``, or None when none is ready (the caller forks its own)."""
        if self.size == 0:
            return None
        self._start()
        with self._wanted:
            self._last_taken = time.monotonic()
            while self._spares:
                process, conn = self._spares.popleft()
                self._wanted.notify()
                if process.is_alive():
                    return process, conn
                conn.close()
        return None

    def close(self) -> None:
        """Stop forking and end the spares (their pipes close: each returns at once)."""
        with self._wanted:
            self._closed = True
            spares, self._spares = list(self._spares), deque()
            self._wanted.notify_all()
        for process, conn in spares:
            conn.close()
            process.join(timeout=1.0)

    def fill(self) -> None:
        """Start forking spares now (the server does at start, so the first runs find them)."""
        if self.size:
            self._start()

    def _start(self) -> None:
        with self._wanted:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._refill, name="dlplay-spare-children", daemon=True)
                self._thread.start()

    def _refill(self) -> None:
        context = process_context()
        while True:
            with self._wanted:
                while not self._closed and len(self._spares) >= self.size:
                    self._wanted.wait()
                if self._closed:
                    return
                # A spare's fork and warm-up take CPU the runs starting now need: refill in a quiet moment.
                quiet_in = self._last_taken + SPARE_REFILL_QUIET_SECONDS - time.monotonic()
            if quiet_in > 0:
                time.sleep(quiet_in)
                continue
            conn, child_conn = context.Pipe()
            process = context.Process(target=spare_main, args=(child_conn,), daemon=True, name="dlplay-run-spare")
            try:
                process.start()
            except Exception:  # out of memory or processes: runs fork their own (and say so if that fails too)
                log.exception("could not fork a spare run process")
                conn.close()
                time.sleep(1.0)
                continue
            finally:
                child_conn.close()
            with self._wanted:
                if self._closed:
                    conn.close()
                    return
                self._spares.append((process, conn))


_spares_lock = threading.Lock()
_spares: SpareChildren | None = None


def spare_children(size: int | None = None) -> SpareChildren:
    """The server's pool of spare children, made on first use with ``size`` spares (later calls may resize it)."""
    global _spares
    with _spares_lock:
        if _spares is None:
            _spares = SpareChildren(SPARE_CHILDREN if size is None else size)
            atexit.register(_spares.close)
        elif size is not None:
            _spares.size = max(0, int(size))
        return _spares


class ProcessSession:
    """A run whose session lives in a child process; see the module docstring."""

    def __init__(self, spec: ChildSpec) -> None:
        self.run_id = spec.run_id
        spare = spare_children().take()
        if spare is not None:  # forked ahead of need: it becomes this run's child when it has the spec
            process, conn = spare
            try:
                conn.send(spec)
            except (OSError, ValueError):  # it ended meanwhile: fork one for this run
                conn.close()
                spare = None
            else:
                self.process, self._conn = process, conn
        if spare is None:
            context = process_context()
            self._conn, child_conn = context.Pipe()
            self.process = context.Process(target=child_main, args=(child_conn, spec), daemon=True,
                                           name=f"dlplay-run-{spec.run_id}")
            self.process.start()
            child_conn.close()
        self.state = RunState()
        self._sent: deque[tuple[int, str, Callable[[Reply], None]]] = deque()  # sent, not yet answered
        self._counter = 0
        self._frozen = False
        self._busy_since: float | None = None  # when the oldest unanswered operation was sent
        self._dead = False

    @property
    def outstanding(self) -> int:
        return len(self._sent)

    @property
    def alive(self) -> bool:
        return not self._dead

    @property
    def busy_seconds(self) -> float:
        """How long the oldest unanswered operation has been in the child's hands (0 when none)."""
        return 0.0 if self._busy_since is None else time.monotonic() - self._busy_since

    def request(self, op: str, args: dict[str, Any], on_reply: Callable[[Reply], None]) -> None:
        """Send an operation now (the child reads it when it is done with the ones before)."""
        if self._dead:
            on_reply(Reply(op, error=RunCrashed("this run's process has ended")))
            return
        self._counter += 1
        try:
            self._conn.send((self._counter, op, args))
        except (OSError, ValueError):  # it ended between two operations: say why, as a reply would
            reason = self._death_reason()
            self._lost(reason)
            on_reply(Reply(op, error=_death_error(reason)))
            return
        if not self._sent:
            self._busy_since = time.monotonic()
        self._sent.append((self._counter, op, on_reply))

    def pump(self, budget: float) -> None:
        """Let the child work for up to ``budget`` (+ a small grace) seconds; handle each reply; freeze it if still busy."""
        if self._dead or not self._sent:
            return
        self._thaw()
        deadline = time.monotonic() + budget + PREEMPT_GRACE_SECONDS
        while self._sent:
            remaining = deadline - time.monotonic()
            try:
                ready = self._conn.poll(max(0.0, remaining))
            except (OSError, EOFError):
                ready = True
            if not ready:
                # A run still building (its open) is left to finish in the background: frozen, it would build only
                # during its own turns, a round apart (a class of 50 starting at once would wait many rounds).
                if self._sent[0][1] != "open":
                    self._freeze()
                return
            try:
                request_id, messages, error, state, weights = self._conn.recv()
            except (EOFError, OSError):
                self._lost(self._death_reason())
                return
            expected, op, on_reply = self._sent.popleft()
            self._busy_since = time.monotonic() if self._sent else None
            self.state = state
            if request_id != expected:  # never expected: the child answers in order
                log.error("run %s: reply %s for request %s", self.run_id, request_id, expected)
            on_reply(Reply(op, messages=messages, error=_rebuild_error(error) if error else None, weights=weights))
            if time.monotonic() >= deadline:
                break

    def call(self, op: str, args: dict[str, Any]) -> Reply:
        """Send ``op`` and wait for its reply however long it takes, never freezing the child.

        For a Ray node host (``server/ray_backend.py``), which runs each call on a thread of its own; the
        run's driver on the server freezes and thaws it from outside (``freeze`` / ``thaw``) to keep it to
        its slices, as ``pump`` does here.
        """
        replies: list[Reply] = []
        self.request(op, args, replies.append)
        while not replies:
            self.pump(CALL_WAIT_SECONDS)
        return replies[0]

    def freeze(self) -> None:
        """Stop the child where it is (SIGSTOP) until ``thaw``."""
        self._freeze()

    def thaw(self) -> None:
        """Let a frozen child go on (SIGCONT)."""
        self._thaw()

    def _thaw(self) -> None:
        if self._frozen:
            self._signal(signal.SIGCONT)
            self._frozen = False

    def _freeze(self) -> None:
        if not self._frozen and self._signal(signal.SIGSTOP):
            self._frozen = True

    def _signal(self, sig: int) -> bool:
        pid = self.process.pid
        if pid is None or self._dead:
            return False
        try:
            os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False

    def _death_reason(self) -> str:
        self.process.join(timeout=1.0)
        code = self.process.exitcode
        if code is not None and code < 0 and -code == signal.SIGKILL:
            return "the run's process was killed (SIGKILL): most likely the machine ran out of memory"
        return f"the run's process ended unexpectedly (exit code {code})"

    def _lost(self, reason: str) -> None:
        """The child is gone: fail every unanswered operation with ``reason``."""
        self._dead = True
        self._frozen = False
        pending, self._sent = list(self._sent), deque()
        self._busy_since = None
        for _, op, on_reply in pending:
            on_reply(Reply(op, error=_death_error(reason)))

    def kill(self) -> None:
        """End the child now (SIGKILL works on a frozen process too); unanswered operations are dropped."""
        if not self._dead:
            self._signal(signal.SIGKILL)
            self._dead = True
        self._sent.clear()
        self._busy_since = None
        self.process.join(timeout=2.0)
        self._conn.close()

    def close(self) -> None:
        """Release the run: its process is killed (exiting frees its memory at once; there is nothing to flush)."""
        self.kill()
