"""A device worker: the thread that trains every run on one device, in fair time slices.

Each device (``cpu``, ``cuda``) has ONE worker thread that owns every run on it
and gives them round-robin time slices (``session.advance(max_seconds=...)``), so a
class of runs shares the device evenly. A worker talks to each run through a
session handle (``server/isolation.py``): normally the run lives in a child process
that computes only while its worker pumps it and is frozen (SIGSTOP) when a step
overruns its slice, so a run with minute-long steps gets its share and no more, and
``stop`` or the time limit kill it within ``STOP_GRACE_SECONDS`` even mid-step.
Everything a client asks of a run (pause, resume, step, stop, set, probe, predict)
is queued to the worker thread and sent to the run in order, between its steps.

A failure in one run (a ValueError, RuntimeError, out-of-memory, anything) ends
that run with ``error`` + ``final`` + ``status failed``; the others go on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from server import protocol
from server.isolation import MAX_OUTSTANDING, Reply, RunCrashed, RunError, RunOutOfMemory
from server.scheduler import Run, SchedulerError, empty_final, owner_of

if TYPE_CHECKING:
    from server.scheduler import Scheduler

log = logging.getLogger("dlplay.worker")

# The shortest slice, however many runs share a device: below this the switching costs more than it gives.
MIN_SLICE_SECONDS = 0.02  # seconds
# Steps one slice may take at most; the slice's time bound is what normally ends it.
MAX_STEPS_PER_SLICE = 100_000  # steps
# How often a worker writes pending metric points to the store.
FLUSH_SECONDS = 1.0  # seconds
# How long an idle worker sleeps before it looks at time limits and retention again.
IDLE_WAKE_SECONDS = 0.5  # seconds
# How long a run's first turn waits for its open (building its model and data, its first steps and frames): a
# build takes tens of milliseconds, so a new run's first metrics usually come in its first turn. A longer build
# (many runs starting at once) goes on in the background, not frozen (server/isolation.py), and the worker moves on.
OPEN_SLICE_SECONDS = 0.25  # seconds
# While runs are opening, they go before the running ones' slices (for this long after their open was sent): a
# class of 50 pressing Train at once then spends the cores on opens, not on the first runs' slices and frames,
# and every student sees a first metrics point within about a second (issue 10). An open that takes longer (a
# big network's build) goes back to its normal turn, so the running runs are never held up for long.
OPEN_FIRST_SECONDS = 2.0  # seconds
# How long a run asked to stop may take to finish its step and its final evaluation before it is killed.
STOP_GRACE_SECONDS = 1.5  # seconds
# On-demand probes that take seconds on a big network: at most one of them waits per run.
HEAVY_PROBES = ("gradient_check", "fgsm_sweep", "optimizer_race", "saliency")

# Final state in the store for each of the trainer's stop reasons.
_STATUS_FOR_STOP = {
    "finished": "finished",
    "early_stopping": "finished",
    "stopped": "stopped",
    "non_finite": "failed",
    "exploded": "failed",
    "error": "failed",
}


class DeviceWorker:
    """One thread that trains its share of a device's runs, in deficit-round-robin time slices."""

    def __init__(self, scheduler: Scheduler, device: str, index: int = 0, threads: int = 1) -> None:
        self.scheduler = scheduler
        self.store = scheduler.store
        self.settings = scheduler.settings
        self.device = device
        self.threads = threads  # torch threads of each run this worker trains
        self._inbox: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._order: list[Run] = []  # admitted, not ended: the round-robin ring
        self._next = 0  # index in _order of the next run to get a slice
        self._next_opening = 0  # which of the runs opening now is looked at next (they take turns)
        self._ended: OrderedDict[str, Run] = OrderedDict()  # ended runs kept in memory, oldest first
        self._starting = 0  # runs whose session is being built
        self._last_flush = time.monotonic()
        self._stopping = False
        self._commands = self._command_table()
        # Building a session (loading its data, forking its process) happens here, not on the worker thread.
        self._starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"dlplay-starter-{device}-{index}")
        self._thread = threading.Thread(target=self._main, name=f"dlplay-worker-{device}-{index}", daemon=True)

    def runs(self) -> list[Run]:
        """The runs this worker trains (a snapshot; read from other threads for placement only)."""
        return list(self._order)

    @property
    def load(self) -> int:
        """Runs this worker trains or is starting (the scheduler gives a new run to the least loaded)."""
        return len(self._order) + self._starting

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
                    self._turn(run)
                self._housekeeping()
            except Exception:  # a bug in the worker itself; keep serving the other runs
                log.exception("worker %s: unexpected error", self.device)
        self._shutdown()

    def _wants_turn(self, run: Run, now: float) -> bool:
        """A run with operations waiting, or a running run its speed limit lets step now."""
        session = run.session
        if session is None:
            return False
        if session.outstanding:
            return True
        return run.state == "running" and session.state.next_step_at <= now

    def _candidates(self) -> list[Run]:
        """The ring, plus ended runs kept loaded that have a probe to answer."""
        extra = [r for r in self._ended.values() if r.session is not None and r.session.outstanding]
        return self._order + extra if extra else self._order

    def _idle_seconds(self) -> float:
        """How long the worker may wait for a task: 0 while a run can work; until the next step a speed limit allows."""
        now = time.monotonic()
        wait = IDLE_WAKE_SECONDS
        for run in self._candidates():
            if self._wants_turn(run, now):
                return 0.0
            if run.state == "running" and run.session is not None:
                wait = min(wait, run.session.state.next_step_at - now)
        return max(0.0, wait)

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
        """The next run in round-robin order that wants a turn; a run being stopped goes first."""
        now = time.monotonic()
        candidates = self._candidates()
        for run in candidates:
            if run.stopping and run.session is not None and run.session.outstanding:
                return run
        opening = self._opening(candidates)
        if opening:
            self._next_opening = (self._next_opening + 1) % len(opening)
            run = opening[self._next_opening]
            if run in self._order:  # the ring goes on after it, as after any turn
                self._next = self._order.index(run) + 1
            return run
        n = len(candidates)
        for k in range(n):
            index = (self._next + k) % n
            run = candidates[index]
            if self._wants_turn(run, now):
                self._next = index + 1
                return run
        return None

    @staticmethod
    def _opening(candidates: list[Run]) -> list[Run]:
        """Runs whose open is under way and young (OPEN_FIRST_SECONDS): they go first."""
        return [r for r in candidates if r.state == "starting" and r.session is not None and r.session.outstanding
                and r.session.busy_seconds < OPEN_FIRST_SECONDS]

    def _turn(self, run: Run) -> None:
        """One time slice for ``run``: an ``advance`` if it is running and has nothing else waiting, then a pump.

        Deficit round robin on wall time, weighted per owner (``owner_of``): a round over
        the owners whose runs want turns should take about ``round_seconds`` (so each comes
        back often: smooth charts), each owner's share at most ``slice_seconds`` per round,
        split between its runs; a run that overran its slice (a long step: its process
        was frozen mid-step) owes the difference on its next turns. Carry-over is bounded
        to one quantum, so nobody gets a burst.
        """
        session = run.session
        now = time.monotonic()
        # Shares go to owners (a computer: sessions are free to mint) first, then to each owner's runs:
        # a student with 12 runs gets what one with 1 does.
        wanting = Counter(owner_of(r) for r in self._order if self._wants_turn(r, now))
        per_owner = min(self.settings.slice_seconds, self.settings.round_seconds / max(len(wanting), 1))
        # A session whose every slice is a round trip through a cluster asks for longer ones (RaySession).
        shortest = getattr(session, "min_slice_seconds", MIN_SLICE_SECONDS)
        quantum = max(shortest, per_owner / max(wanting.get(owner_of(run), 1), 1))
        owed = run.credit + quantum
        budget = max(owed, quantum / 4)
        if run.stopping and run.kill_at is not None:  # finish the stop within the grace, or be killed at its end
            budget = max(budget, run.kill_at - now)
        if run.state == "starting":  # the open builds the run in its process: worth waiting a little for (issue 10)
            # Several opening at once build side by side (opens are not frozen): look at each in turn, briefly.
            budget = max(budget, OPEN_SLICE_SECONDS / max(1, len(self._opening(self._order))))
        if not session.outstanding and run.state == "running":
            session.request("advance", {"max_steps": MAX_STEPS_PER_SLICE, "max_seconds": budget, "until_frame": True},
                            lambda reply: self._after_advance(run, reply))
        opening = run.state == "starting"
        started = time.perf_counter()
        session.pump(budget)
        used = time.perf_counter() - started
        if not opening:  # waiting for a build is not training time: it owes nothing for it
            run.credit = min(quantum, max(-quantum, owed - used))

    def _after_advance(self, run: Run, reply: Reply) -> None:
        if reply.error is not None:
            self._fail(run, reply.error)
        else:
            self._progress(run, reply.messages, reply.weights)

    def _progress(self, run: Run, messages: list[dict[str, Any]], weights: dict[str, Any] | None = None) -> None:
        """Publish what a run produced; end it if training ended, or stop it if it ran past the wall-time limit."""
        if not run.active:
            return
        if run.session.state.done:
            self._end(run, messages, weights)
            return
        self._emit(run, messages)
        self._check_time_limit(run, time.monotonic())

    def _check_time_limit(self, run: Run, now: float) -> None:
        if run.stopping or run.admitted_at is None or now - run.admitted_at <= self.settings.max_run_seconds:
            return
        limit = self.settings.max_run_seconds
        self._emit(run, [protocol.error_message(
            "time_limit", f"This run reached the server's limit of {limit:g} s per run and was stopped.")])
        self._request_stop(run)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        for run in list(self._order):
            if run.stopping and run.kill_at is not None and now >= run.kill_at:
                self._kill_stopping(run)
        if now - self._last_flush >= FLUSH_SECONDS:
            self._flush(self._order)
            self._last_flush = now
            for run in list(self._order):  # paused runs and runs stuck in a long step are checked here
                if run.state in ("running", "paused"):
                    self._check_time_limit(run, now)
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
        """Build the run's session on the starter thread; it joins the ring when built."""
        if run.state != "starting":  # deleted or shut down while waiting in the inbox
            return
        self._starting += 1

        def build() -> None:
            try:
                session = self.scheduler.build_session(run, self.threads)
            except Exception as exc:  # bound now: Python unbinds ``exc`` when the except block ends
                self.post(lambda error=exc: self._start_failed(run, error))
            else:
                self.post(lambda: self._opened(run, session))

        self._starter.submit(build)

    def _start_failed(self, run: Run, exc: BaseException) -> None:
        self._starting -= 1
        if run.state == "starting":
            self._fail(run, exc)

    def _opened(self, run: Run, session: Any) -> None:
        """The session exists: open it (first messages and a first short slice, so the first metrics come promptly)."""
        self._starting -= 1
        if run.state != "starting":  # deleted meanwhile
            session.close()
            return
        run.session = session
        # Joins the ring at the pointer: its open (a short first slice: summary, first metrics, first frames) is
        # the next turn, so a new run shows its first metrics within a slice, not after a whole round (with 25
        # runs on a worker, half a second and more: issue 10). Its later slices take their turn in the ring.
        self._order.insert(min(self._next, len(self._order)), run)
        # A run started paused takes no first slice: it waits at step 0 for step or resume.
        first_steps = 0 if run.start_paused else run.experiment.train.log_every
        session.request("open", {"first_steps": first_steps,
                                 "first_seconds": self.settings.slice_seconds, "views": run.watched_views()},
                        lambda reply: self._after_open(run, reply))

    def _after_open(self, run: Run, reply: Reply) -> None:
        if reply.error is not None:
            self._fail(run, reply.error)
            return
        if run.state != "starting":
            return
        self.store.set_status(run.id, "running", started=True, device=self.device)
        run.state = "running"
        self._progress(run, reply.messages, reply.weights)
        if run.start_paused and run.state == "running":
            self._set_state(run, "paused")  # after the open's "running": the page sees the run wait at step 0
        deferred, run.deferred = run.deferred, []
        for name, args, future in deferred:
            self._carry_out(run, name, args, future)

    # -- commands ----------------------------------------------------------------

    def execute(self, run: Run, name: str, args: dict[str, Any], future: Future) -> None:
        """Carry out one client command (its messages go out when the run answers); the outcome goes to ``future``."""
        if not future.set_running_or_notify_cancel():
            return
        if run.state == "starting":  # carried out once the run has started
            if len(run.deferred) >= MAX_OUTSTANDING:
                future.set_exception(SchedulerError("too_busy", "this run is starting and has too many commands waiting"))
                return
            if name == "stop" and run.kill_at is None:
                run.kill_at = time.monotonic() + STOP_GRACE_SECONDS
                run.stopping = True
            run.deferred.append((name, args, future))
            return
        self._carry_out(run, name, args, future)

    def _carry_out(self, run: Run, name: str, args: dict[str, Any], future: Future) -> None:
        handler = self._commands.get(name)
        try:
            if handler is None:
                raise SchedulerError("unknown_command", f"unknown command {name!r}")
            handler(run, future, **args)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)

    def _ask(self, run: Run, op: str, args: dict[str, Any], future: Future | None,
             then: Callable[[Reply], None] | None = None, on_error: Callable[[BaseException], None] | None = None) -> None:
        """Send ``op`` to the run; when it answers, ``then(reply)`` (default: publish its messages) and resolve ``future``."""
        session = run.session
        if session is None:
            raise SchedulerError("run_closed", "this run's model is no longer in memory. Fix: start it again")
        if session.outstanding >= MAX_OUTSTANDING:
            raise SchedulerError("too_busy", f"this run has {session.outstanding} commands waiting. Fix: wait for them")

        def on_reply(reply: Reply) -> None:
            error = reply.error
            if error is None:
                try:
                    (then or (lambda r: self._emit(run, r.messages)))(reply)
                except Exception as exc:
                    error = exc
            if error is not None:
                if on_error is not None:
                    on_error(error)
                elif isinstance(error, RunCrashed):
                    self._fail(run, error)
                if future is not None and not future.done():
                    future.set_exception(self._client_error(op, error))
            elif future is not None and not future.done():
                future.set_result(None)

        session.request(op, args, on_reply)

    @staticmethod
    def _client_error(op: str, error: BaseException) -> BaseException:
        """What a client is told when its command failed inside the run."""
        if isinstance(error, (SchedulerError, RunError)):
            return error
        if isinstance(error, TypeError):
            return SchedulerError("bad_arguments", f"{op}: {error}")
        if isinstance(error, (RunOutOfMemory, torch.cuda.OutOfMemoryError)):
            return SchedulerError("out_of_memory", f"{op} ran out of memory: {error}")
        if isinstance(error, RunCrashed):
            return SchedulerError("run_failed", str(error))
        if isinstance(error, ValueError):
            return error
        return SchedulerError("command_failed", f"{op} failed: {type(error).__name__}: {error}")

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
        """Give a run's session the union of what its subscribers watch (sent to it between its steps)."""
        if run.session is None or not run.active:
            return  # a run still being built opens with the views watched at that moment
        # A run that is opening gets them right after its open (its process carries out requests in order).
        try:
            self._ask(run, "set_views", {"views": run.watched_views()}, None, on_error=lambda exc: log.error(
                "run %s: views were checked before and still failed: %s", run.id, exc))
            if run.state == "paused":  # a paused run does not train, so a newly opened tab is drawn now
                self._ask(run, "refresh", {}, None, on_error=lambda exc: None)
        except SchedulerError:
            pass  # too busy: the views apply with the next change

    def _command_table(self) -> dict[str, Callable[..., None]]:
        """Command name -> handler: the websocket's run commands, one table."""
        return {
            "pause": self._cmd_pause, "resume": self._cmd_resume, "step": self._cmd_step, "stop": self._cmd_stop,
            "set": self._cmd_set, "speed": self._cmd_speed, "probe": self._cmd_probe, "predict": self._cmd_predict,
        }

    @staticmethod
    def _resolve(future: Future) -> None:
        if not future.done():
            future.set_result(None)

    def _cmd_pause(self, run: Run, future: Future) -> None:
        """Pause, and draw every watched view at the step where training stopped."""
        self._require(run, "running", "paused")
        if run.state == "running":
            self._set_state(run, "paused")
            self._ask(run, "refresh", {}, future)
        else:
            self._resolve(future)

    def _cmd_speed(self, run: Run, future: Future, steps_per_s: float | None) -> None:
        self._require(run, "running", "paused")
        self._ask(run, "set_speed", {"steps_per_s": steps_per_s}, future)

    def _cmd_resume(self, run: Run, future: Future) -> None:
        self._require(run, "running", "paused")
        if run.state == "paused":
            self._set_state(run, "running")
        self._resolve(future)

    def _cmd_step(self, run: Run, future: Future) -> None:
        """One training step with every light probe; a running run is paused first."""
        self._require(run, "running", "paused")
        if run.state == "running":
            self._set_state(run, "paused")

        def failed(exc: BaseException) -> None:  # the run's own stream says what happened
            self._fail(run, exc)
            self._resolve(future)

        self._ask(run, "step_once", {}, future, then=lambda r: self._progress(run, r.messages, r.weights),
                  on_error=failed)

    def _cmd_stop(self, run: Run, future: Future) -> None:
        self._require(run, "running", "paused")
        self._request_stop(run, future)

    def _cmd_set(self, run: Run, future: Future, **values: Any) -> None:
        self._require(run, "running", "paused")
        self._ask(run, "set_hyperparams", values, future)

    def _cmd_probe(self, run: Run, future: Future, probe: str, **args: Any) -> None:
        """An on-demand probe; also after the run has finished, while it is kept in memory."""
        if run.session is None:
            raise SchedulerError("run_closed", "this run's model is no longer in memory. Fix: start it again")
        heavy = probe in HEAVY_PROBES
        if heavy:
            if run.heavy_probe:
                raise SchedulerError("too_busy", f"a {probe} probe of this run is still being computed. "
                                     "Fix: wait for its result before asking again")
            run.heavy_probe = True

        def done(reply: Reply) -> None:
            if heavy:
                run.heavy_probe = False
            self._emit(run, reply.messages)

        def failed(exc: BaseException) -> None:
            if heavy:
                run.heavy_probe = False
            if isinstance(exc, RunCrashed):
                self._fail(run, exc)

        try:
            self._ask(run, "probe", {"kind": probe, **args}, future, then=done, on_error=failed)
        except Exception:
            run.heavy_probe = False if heavy else run.heavy_probe
            raise

    def _cmd_predict(self, run: Run, future: Future, input: Any) -> None:  # noqa: A002 - the protocol's field name
        self._ask(run, "predict", {"input": input}, future)

    def drop(self, run: Run, future: Future) -> None:
        """For DELETE: release the run at once (no final evaluation, no weights) and forget it."""
        try:
            self._remove_from_ring(run)
            self._ended.pop(run.id, None)
            self._close(run)
            run.state = "deleted"
            self.scheduler.forget(run)
            self.scheduler.run_ended(run)
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)

    # -- messages ----------------------------------------------------------------

    def _emit(self, run: Run, messages: list[dict[str, Any]], on_end: Callable[[], None] | None = None) -> None:
        """Publish a run's messages; what the store needs from them is recorded before they go out."""
        if not messages and on_end is None:
            return

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

    def _request_stop(self, run: Run, future: Future | None = None) -> None:
        """End a run (user stop or time limit): its final evaluation and messages, or a kill after the grace period."""
        if future is not None:
            run.stop_futures.append(future)
        if run.stopping and run.kill_at is not None and run.state != "starting" and run.session is not None \
                and run.session.outstanding:
            return  # already under way
        run.stopping = True
        run.kill_at = time.monotonic() + STOP_GRACE_SECONDS

        def stopped(reply: Reply) -> None:
            if reply.error is not None:
                self._fail(run, reply.error)
            elif run.active:
                self._end(run, reply.messages, reply.weights)

        try:
            self._ask(run, "stop", {}, None, then=stopped, on_error=lambda exc: self._fail(run, exc))
        except SchedulerError:  # too many commands waiting: the grace period ends it
            pass

    def _kill_stopping(self, run: Run) -> None:
        """The grace period is over and the run is still mid-step: kill its process and end it as stopped."""
        session = run.session
        busy = session.busy_seconds if session is not None else 0.0
        state = session.state if session is not None else None
        if session is not None:
            session.kill()
        message = (f"Stopped in the middle of a step that had been running for {busy:.1f} s: the step was cut off, "
                   "so this run's weights were not saved.")
        figures: dict[str, Any] = {}
        if state is not None:
            figures = {"steps": state.steps, "epochs": protocol.clean_float(state.epochs)}
        if run.admitted_at is not None:
            figures["wall_s"] = round(time.monotonic() - run.admitted_at, 3)
        final = empty_final("stopped", message, **figures)
        self._emit(run, [final, protocol.status_message("stopped", message=message)],
                   on_end=lambda: self._record_end(run, "stopped", None))
        self._retire(run, keep_loaded=False)

    def _end(self, run: Run, messages: list[dict[str, Any]], weights: dict[str, Any] | None) -> None:
        """A run whose session produced ``final``: save its weights, record it, publish, free its slot."""
        final = run.session.state.final or empty_final("stopped", "Stopped.")
        status = _STATUS_FOR_STOP.get(final.get("stop_reason"), "finished")
        saved = None if status == "failed" or weights is None else self._save_weights(run, final, weights)
        self._emit(run, messages, on_end=lambda: self._record_end(run, status, saved))
        # A finished run stays loaded for a while, so probes and predictions still work on it.
        self._retire(run, keep_loaded=status == "finished")

    def _save_weights(self, run: Run, final: dict[str, Any], weights: dict[str, Any]) -> Path | None:
        try:
            return self.store.save_weights(run.id, weights, metadata={
                "run_id": run.id, "experiment": run.experiment.name, "steps": str(final.get("steps")),
            })
        except Exception:
            log.exception("run %s: could not save weights", run.id)
            return None

    def _fail(self, run: Run, exc: BaseException) -> None:
        """End a run after an exception: ``error`` + ``final`` + ``status failed``; the others go on."""
        if run.ended or run.state == "deleted":
            return
        if isinstance(exc, (torch.cuda.OutOfMemoryError, RunOutOfMemory)):
            limit = self.settings.max_run_memory_bytes
            where = "the GPU" if isinstance(exc, torch.cuda.OutOfMemoryError) else (
                f"its memory limit ({limit / 1024**2:.0f} MiB)" if limit else "the machine's memory")
            code, text = "out_of_memory", (
                f"this run ran out of memory ({where}): {exc}. Fix: use a smaller batch_size or a smaller network")
        elif isinstance(exc, RunCrashed):
            code, text = "run_crashed", str(exc)
        elif isinstance(exc, ValueError):
            code, text = getattr(exc, "code", "invalid_experiment"), str(exc)
        else:
            code, text = "run_failed", f"{type(exc).__name__}: {exc}"
            log.error("run %s failed", run.id, exc_info=exc)
        figures: dict[str, Any] = {}
        state = getattr(run.session, "state", None)
        if state is not None:
            figures = {"steps": state.steps, "epochs": protocol.clean_float(state.epochs)}
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
        run.stopping = False
        run.kill_at = None
        self._ended[run.id] = run
        if not keep_loaded:
            self._close(run)
        for future in run.stop_futures:
            self._resolve(future)
        run.stop_futures.clear()
        for _, _, future in run.deferred:
            if not future.done():
                future.set_exception(SchedulerError("run_ended", f"this run has ended ({run.state})"))
        run.deferred.clear()
        self.scheduler.run_ended(run)

    def _remove_from_ring(self, run: Run) -> None:
        if run in self._order:
            index = self._order.index(run)
            self._order.remove(run)
            if index < self._next:
                self._next -= 1

    def _close(self, run: Run) -> None:
        """Release a run's model and data now (its process ends; in-process, its session is closed)."""
        session, run.session = run.session, None
        if session is not None:
            try:
                session.close()
            except Exception:
                log.exception("run %s: close failed", run.id)
        if self.device.startswith("cuda") and self.scheduler.isolation != "process":
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
            self.scheduler.forget(run)

    def _shutdown(self) -> None:
        """On server shutdown: write pending metrics and release every model (the scheduler records the rest)."""
        self._flush(self._order)
        for run in list(self._order):
            self._close(run)
        for run in self._ended.values():
            self._close(run)
        self._order.clear()
        self._ended.clear()
        self._starter.shutdown(wait=False, cancel_futures=True)
