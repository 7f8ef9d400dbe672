"""Hyperparameter search on the server (lesson 21): each trial is a real run, submitted through the scheduler.

``server/lessons/search.py`` holds the method (log-scale ranges, random vs grid, coarse then
fine) as pure functions; this module runs it for a browser session:

- ``SearchSpec`` is what the page sends (pydantic: ranges positive, 2 to 64 trials, clear errors);
- ``SearchRunner`` turns the spec into runs with ``Scheduler.submit`` (the scheduler's public
  interface only), at most ``parallel`` of them in flight at once so a search never trips the
  session's active-run quota (the rest wait here, not in the server's queue), follows each run's
  stream with an ``Outbox`` of its own until its ``final`` message, takes the trial's score
  (``best_val_acc``) from it, and after the coarse stage narrows both ranges around the best coarse
  trials for the fine stage;
- ``SearchBook`` keeps each session's searches (in memory: a search is a live activity, its trials'
  runs are what the store keeps).

Trials share the device with everyone's runs through the scheduler's fair time slices, like any
run; a trial's run is an ordinary run of the session (the Runs tab lists it, the page can open it).
Everything here runs on the event loop: ``Scheduler.submit/command/watch/get`` are cheap and safe
to call from it, and frames arrive in the outbox through ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.channel import Outbox
from server.lessons.search import (
    DEFAULT_TOP_K, LogRange, SearchSpace, Trial, TrialConfig, best_trial, narrow, stage_configs, trial_experiment,
)
from server.schemas import Experiment

log = logging.getLogger("dlplay.search")

MAX_SEARCH_TRIALS = 64  # runs in one search, both stages: a search is a set of short runs, not a sweep
MAX_TRIAL_STEPS = 100_000  # optimizer steps per trial
DEFAULT_PARALLEL = 3  # trials in flight at once: one slot of the default per-session quota (4) stays free for Train
MAX_PARALLEL = 16
FINE_STEPS_FACTOR = 3  # fine trials train this many times longer than coarse ones unless told otherwise
# Scheduler refusals that mean "not now" (the session's or the server's queue is full): the trial waits and retries.
RETRY_CODES = ("too_many_runs", "server_busy")
RETRY_SECONDS = 1.0  # wait before submitting a refused trial again
# A trial's stream normally ends with its final message; this often the driver also asks the scheduler whether
# the run still exists (deleted from the Runs tab, or the server shutting down), so a trial never waits forever.
LIVENESS_SECONDS = 2.0
MAX_ENDED_SEARCHES_PER_SESSION = 8  # ended searches kept to look at; the oldest goes first

TrialStatus = Literal["pending", "waiting", "queued", "running", "finished", "diverged", "stopped", "failed", "skipped"]
SearchStatus = Literal["running", "stopping", "finished", "stopped", "failed"]
_ENDED_TRIAL = ("finished", "diverged", "stopped", "failed", "skipped")
# The trainer's stop reasons -> a trial's status; only finished trials are scored.
_TRIAL_STATUS_FOR_STOP = {"finished": "finished", "early_stopping": "finished", "non_finite": "diverged",
                          "exploded": "diverged", "stopped": "stopped", "error": "failed"}


class SearchError(ValueError):
    """A search request the server refuses; ``status`` is the HTTP status the route answers with."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------
# The spec (what the page sends)
# ---------------------------------------------------------------------------


class RangeSpec(BaseModel):
    """A positive range searched on a log scale; ``low == high`` holds the hyperparameter fixed."""

    model_config = ConfigDict(extra="forbid")

    low: float = Field(gt=0.0, description="smallest value tried (> 0: a log scale has no zero)")
    high: float = Field(gt=0.0, description="largest value tried")

    @model_validator(mode="after")
    def _ordered(self) -> "RangeSpec":
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("a range's ends must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g}). Fix: swap them")
        return self

    def log_range(self) -> LogRange:
        return LogRange(self.low, self.high)


class SearchSpec(BaseModel):
    """A search: which values to try, how many trials and how long each trains, on which base experiment."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["random", "grid"] = Field(
        "random", description="random: log-uniform draws of both; grid: an a x b grid in log space")
    lr: RangeSpec = Field(default_factory=lambda: RangeSpec(low=1e-4, high=1.0),
                          description="learning-rate range (log scale)")
    l2: RangeSpec = Field(default_factory=lambda: RangeSpec(low=1e-6, high=1e-1),
                          description="l2 regularization (weight decay) range (log scale); the experiment's train.l2")
    trials: int = Field(9, ge=2, le=MAX_SEARCH_TRIALS, description="trials of the coarse stage")
    steps: int = Field(60, ge=1, le=MAX_TRIAL_STEPS, description="optimizer steps per coarse trial")
    fine_trials: int = Field(0, ge=0, le=MAX_SEARCH_TRIALS - 2,
                             description="trials of the fine stage in the narrowed ranges; 0: coarse only")
    fine_steps: int | None = Field(None, ge=1, le=MAX_TRIAL_STEPS,
                                   description=f"optimizer steps per fine trial; default {FINE_STEPS_FACTOR} x steps")
    top_k: int = Field(DEFAULT_TOP_K, ge=1, le=MAX_SEARCH_TRIALS,
                       description="the fine ranges span the values of this many best coarse trials")
    parallel: int = Field(DEFAULT_PARALLEL, ge=1, le=MAX_PARALLEL,
                          description="trials training at once (capped by the session's active-run quota)")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="random search draws from this seed (fine stage: seed + 1)")
    experiment: dict[str, Any] = Field(description="the base experiment; each trial changes its lr, l2 and length")

    @model_validator(mode="after")
    def _sizes(self) -> "SearchSpec":
        if self.l2.high > 100.0:
            raise ValueError(f"l2.high is {self.l2.high:g}; train.l2 is at most 100. Fix: lower the l2 range")
        if self.lr.high > 1e7:
            raise ValueError(f"lr.high is {self.lr.high:g}; a learning rate is at most 1e7. Fix: lower the lr range")
        total = self.trials + self.fine_trials
        if total > MAX_SEARCH_TRIALS:
            raise ValueError(f"{self.trials} coarse + {self.fine_trials} fine trials is {total}; a search runs at most "
                             f"{MAX_SEARCH_TRIALS}. Fix: run fewer trials")
        if self.fine_trials == 1:
            raise ValueError("a fine stage of 1 trial searches nothing. Fix: use 0 (coarse only) or at least 2")
        return self

    @property
    def space(self) -> SearchSpace:
        return SearchSpace(lr=self.lr.log_range(), l2=self.l2.log_range())

    @property
    def fine_length(self) -> int:
        return self.fine_steps or min(MAX_TRIAL_STEPS, FINE_STEPS_FACTOR * self.steps)


# ---------------------------------------------------------------------------
# One trial and one search
# ---------------------------------------------------------------------------


@dataclass(eq=False)
class TrialRecord:
    """One trial of a search: its values, its run, how far it got, and its score."""

    index: int  # 0-based, in the order the trials were planned (coarse first)
    config: TrialConfig
    status: TrialStatus = "pending"
    run_id: str | None = None
    step: int = 0  # the run's latest step (from its metrics)
    val_acc: float | None = None  # latest validation accuracy seen while it trains
    score: float | None = None  # the final message's best_val_acc; only finished trials have one
    wall_s: float | None = None
    message: str | None = None

    @property
    def ended(self) -> bool:
        return self.status in _ENDED_TRIAL

    def engine_trial(self) -> Trial:
        """As the engine's Trial: an unscored trial ranks last (NaN)."""
        return Trial(self.index, self.config, math.nan if self.score is None else self.score)

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        return {"index": self.index, "stage": c.stage, "lr": c.lr, "l2": c.l2, "steps": c.max_steps,
                "status": self.status, "run_id": self.run_id, "step": self.step, "val_acc": self.val_acc,
                "best_val_acc": self.score, "wall_s": self.wall_s, "message": self.message}


def _space_dict(space: SearchSpace | None) -> dict[str, list[float]] | None:
    if space is None:
        return None
    return {"lr": [space.lr.low, space.lr.high], "l2": [space.l2.low, space.l2.high]}


@dataclass(eq=False)
class SearchRunner:
    """Runs one search: plans the trials, submits them as runs, collects their scores (on the event loop)."""

    id: str
    session_id: str
    spec: SearchSpec
    base: Experiment  # the validated base experiment
    scheduler: Any  # server.scheduler.Scheduler (only its public methods are used)
    parallel: int  # trials in flight at once
    client_ip: str | None = None  # the address that started it: its trials count against that address's run limit
    owner: str | None = None  # a class member's id: their trials take the student's fair share (scheduler.owner_of)
    on_trial_started: Callable[[str], None] | None = None  # told each trial's run id (a class records its runs)
    outbox_frames: int = 20_000
    status: SearchStatus = "running"
    message: str = ""
    trials: list[TrialRecord] = field(default_factory=list)
    fine_space: SearchSpace | None = None
    created_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    max_in_flight: int = 0  # the most trials that were in flight at once (tests check it against parallel)
    _in_flight: dict[int, str] = field(default_factory=dict)  # trial index -> run id, submitted and not ended
    _stopping: bool = False
    _task: asyncio.Task | None = None

    def __post_init__(self) -> None:
        coarse = stage_configs(self.spec.strategy, self.spec.space, self.spec.trials, "coarse", self.spec.steps,
                               self.spec.seed)
        self.trials = [TrialRecord(i, c) for i, c in enumerate(coarse)]
        self.message = f"coarse stage: {len(coarse)} trials of {self.spec.steps} steps"

    # -- control -----------------------------------------------------------------

    def start(self) -> None:
        """Begin on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._main(), name=f"search-{self.id}")

    @property
    def active(self) -> bool:
        return self.status in ("running", "stopping")

    def stop(self) -> None:
        """Stop the search: no new trial starts, the ones in flight are stopped (their runs end 'stopped')."""
        if not self.active:
            return
        self._stopping = True
        self.status = "stopping"
        self.message = "stopping: the trials in flight are being stopped"
        for run_id in list(self._in_flight.values()):
            self.scheduler.command(run_id, "stop")  # a queued run stops at once; an active one at its next slice

    async def wait(self) -> None:
        """Until the search has ended (tests, shutdown)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    # -- the search ----------------------------------------------------------------

    async def _main(self) -> None:
        try:
            await self._run_stage([t for t in self.trials if t.config.stage == "coarse"])
            if self.spec.fine_trials and not self._stopping:
                self._plan_fine()
            fine = [t for t in self.trials if t.config.stage == "fine"]
            if fine and not self._stopping:
                await self._run_stage(fine)
            self._conclude()
        except asyncio.CancelledError:  # the server is shutting down
            self._conclude(cancelled=True)
            raise
        except Exception as exc:  # a bug of ours: the search fails, the server goes on
            log.exception("search %s failed", self.id)
            self.status = "failed"
            self.message = f"the search stopped on an internal error ({type(exc).__name__}: {exc})"
            self.ended_at = time.time()

    def _plan_fine(self) -> None:
        """Narrow both ranges around the best coarse trials; the fine stage's trials are appended."""
        coarse = [t for t in self.trials if t.config.stage == "coarse"]
        if not any(t.score is not None for t in coarse):
            return  # nothing to narrow around: the search ends as failed (no trial finished)
        self.fine_space = narrow(self.spec.space, [t.engine_trial() for t in coarse], self.spec.top_k)
        configs = stage_configs(self.spec.strategy, self.fine_space, self.spec.fine_trials, "fine",
                                self.spec.fine_length, self.spec.seed + 1)
        first = len(self.trials)
        self.trials += [TrialRecord(first + i, c) for i, c in enumerate(configs)]
        self.message = f"fine stage: {len(configs)} trials of {self.spec.fine_length} steps in the narrowed ranges"

    async def _run_stage(self, stage: list[TrialRecord]) -> None:
        """Run a stage's trials, ``parallel`` at a time, each worker taking the next pending trial."""
        pending = list(stage)

        async def worker() -> None:
            while pending and not self._stopping:
                await self._run_trial(pending.pop(0))

        await asyncio.gather(*(worker() for _ in range(min(self.parallel, len(stage)))))
        for trial in stage:
            if trial.status in ("pending", "waiting"):
                trial.status, trial.message = "skipped", "the search was stopped before this trial started"

    def longest_trial(self) -> Experiment:
        """The first trial's experiment at the search's longest trial length: what a quota or a lesson's locked
        fields are checked against before the search starts (every trial has the base's network and data)."""
        steps = max(self.spec.steps, self.spec.fine_length if self.spec.fine_trials else 0)
        document = self._experiment(self.trials[0])
        document.train.max_steps = steps
        return document

    def _experiment(self, trial: TrialRecord) -> Experiment:
        c = trial.config
        document = trial_experiment(self.base, c)
        label = f" · trial {trial.index + 1} ({c.stage}): lr {c.lr:.3g}, l2 {c.l2:.3g}"
        document.name = (self.base.name or "search")[: 200 - len(label)] + label
        return document

    async def _run_trial(self, trial: TrialRecord) -> None:
        """Submit one trial's run, follow its stream to the final message, record its score."""
        loop = asyncio.get_running_loop()
        experiment = self._experiment(trial)
        outbox = Outbox(loop, self.outbox_frames)
        run = None
        while run is None:
            if self._stopping:
                return
            try:
                run = self.scheduler.submit(self.session_id, experiment, request_id=f"search:{self.id}:{trial.index}",
                                            client_ip=self.client_ip, owner=self.owner)
            except ValueError as exc:  # SchedulerError (a ValueError with a code)
                if getattr(exc, "code", None) not in RETRY_CODES:
                    trial.status, trial.message = "failed", str(exc)
                    return
                # The session's other runs fill its quota: wait here, not in the server's queue.
                trial.status, trial.message = "waiting", f"waiting for a free slot: {exc}"
                await asyncio.sleep(RETRY_SECONDS)
        trial.run_id, trial.status, trial.message = run.id, "queued", None
        if self.on_trial_started is not None:
            self.on_trial_started(run.id)
        self._in_flight[trial.index] = run.id
        self.max_in_flight = max(self.max_in_flight, len(self._in_flight))
        try:
            # A trial needs only its metrics and final: no live views (the page asks for none either). Watching
            # nothing before subscribing (which replays from seq 1) means the run never computes a default view.
            self.scheduler.watch(run.id, outbox, {})
            self.scheduler.subscribe(run.id, outbox, 0)
            await self._follow(trial, run.id, outbox)
        finally:
            self._in_flight.pop(trial.index, None)
            self.scheduler.unsubscribe(run.id, outbox)
            outbox.close()

    async def _follow(self, trial: TrialRecord, run_id: str, outbox: Outbox) -> None:
        while True:
            try:
                frame = await asyncio.wait_for(outbox.get(), LIVENESS_SECONDS)
            except asyncio.TimeoutError:
                if self._check_gone(trial, run_id):
                    return
                continue
            if frame.type not in ("status", "metrics", "final", "error"):
                continue
            message = json.loads(frame.text)
            if frame.type == "metrics":
                trial.step = int(message.get("step") or trial.step)
                if isinstance(message.get("val_acc"), (int, float)):
                    trial.val_acc = float(message["val_acc"])
                if trial.status == "queued":
                    trial.status = "running"
            elif frame.type == "status":
                if message.get("state") == "running":
                    trial.status = "running"
                elif message.get("state") in ("stopped", "failed", "finished"):
                    # a status that ends the run without a final (should not happen): end the trial anyway
                    trial.status = "failed" if message["state"] == "failed" else "stopped"
                    trial.message = message.get("message")
                    return
            elif frame.type == "error":
                trial.message = message.get("message")
            else:
                self._record_final(trial, message)
                return

    def _record_final(self, trial: TrialRecord, final: dict[str, Any]) -> None:
        status = _TRIAL_STATUS_FOR_STOP.get(final.get("stop_reason") or "", "failed")
        trial.status = status  # type: ignore[assignment]
        trial.step = int(final.get("steps") or trial.step)
        trial.wall_s = final.get("wall_s")
        if isinstance(final.get("val_acc"), (int, float)):
            trial.val_acc = float(final["val_acc"])
        best = final.get("best_val_acc")
        trial.score = float(best) if status == "finished" and isinstance(best, (int, float)) else None
        if status != "finished":
            trial.message = trial.message or final.get("message")

    def _check_gone(self, trial: TrialRecord, run_id: str) -> bool:
        """No frame for a while: end the trial if its run was deleted or has ended without our seeing it."""
        run = self.scheduler.get(run_id)
        if run is None:
            trial.status, trial.message = "stopped", "the trial's run was deleted"
            return True
        if run.state in ("finished", "stopped", "failed") and getattr(run, "final", None) is not None:
            self._record_final(trial, run.final)
            return True
        if run.state in ("interrupted", "deleted"):
            trial.status, trial.message = "stopped", f"the trial's run was {run.state}"
            return True
        return False

    def _conclude(self, cancelled: bool = False) -> None:
        self.ended_at = time.time()
        done = [t for t in self.trials if t.status == "finished"]
        if cancelled:
            self.status, self.message = "stopped", "the server stopped during the search"
        elif self._stopping:
            self.status, self.message = "stopped", f"stopped after {len(done)} finished trials"
        elif not done:
            first = next((t.message for t in self.trials if t.message), None)
            self.status = "failed"
            self.message = "no trial finished" + (f": {first}" if first else "")
        else:
            self.status = "finished"
            best = self.best
            self.message = (f"{len(done)} of {len(self.trials)} trials finished; best validation accuracy "
                            f"{best.score:.3f} at lr {best.config.lr:.3g}, l2 {best.config.l2:.3g}")

    # -- reading -------------------------------------------------------------------

    @property
    def best(self) -> TrialRecord | None:
        """The finished trial with the highest score (the earliest among equals), or None."""
        scored = [t for t in self.trials if t.score is not None]
        if not scored:
            return None
        winner = best_trial([t.engine_trial() for t in scored])
        return self.trials[winner.index]

    def to_dict(self, *, with_experiment: bool = True) -> dict[str, Any]:
        best = self.best
        spec = self.spec.model_dump(mode="json", exclude=None if with_experiment else {"experiment"})
        return {
            "id": self.id,
            "status": self.status,
            "message": self.message,
            "spec": spec,
            "experiment_name": self.base.name,
            "parallel": self.parallel,
            "spaces": {"coarse": _space_dict(self.spec.space), "fine": _space_dict(self.fine_space)},
            "trials": [t.to_dict() for t in self.trials],
            "best": None if best is None else {"index": best.index, "run_id": best.run_id, "lr": best.config.lr,
                                               "l2": best.config.l2, "stage": best.config.stage,
                                               "best_val_acc": best.score},
            "counts": {s: sum(t.status == s for t in self.trials) for s in ("pending", "waiting", "queued", "running",
                                                                             "finished", "diverged", "stopped",
                                                                             "failed", "skipped")},
            "max_in_flight": self.max_in_flight,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
        }


# ---------------------------------------------------------------------------
# Every session's searches
# ---------------------------------------------------------------------------


class SearchBook:
    """The searches of every session, in memory; a session runs one search at a time."""

    def __init__(self, scheduler: Any, *, max_parallel: int, outbox_frames: int = 20_000) -> None:
        """``max_parallel``: the session's active-run quota (and the per-address one): a search never asks for more."""
        self.scheduler = scheduler
        self.quota = max_parallel
        self.outbox_frames = outbox_frames
        self._searches: dict[str, SearchRunner] = {}

    def start(self, session_id: str, spec: SearchSpec, base: Experiment, *, client_ip: str | None = None,
              owner: str | None = None, max_parallel: int | None = None,
              check: Callable[[SearchRunner], None] | None = None,
              on_trial_started: Callable[[str], None] | None = None) -> SearchRunner:
        """Plan and start a search on the running event loop; SearchError if the session already runs one.

        A class member's search (issue 10): ``owner`` is the member, ``max_parallel`` what their quota of runs
        at once leaves, ``check`` raises if the planned trials break the class's quotas or the lesson's locks
        (nothing starts then), and ``on_trial_started`` records each trial as the member's run.
        """
        running = [s for s in self.of(session_id) if s.active]
        if running:
            raise SearchError(f"search {running[0].id} is still running; stop it (DELETE /api/searches/"
                              f"{running[0].id}) or wait for it to finish before starting another")
        quota = self.quota if max_parallel is None else min(self.quota, max_parallel)
        runner = SearchRunner(secrets.token_hex(6), session_id, spec, base, self.scheduler,
                              parallel=max(1, min(spec.parallel, quota)), client_ip=client_ip, owner=owner,
                              on_trial_started=on_trial_started, outbox_frames=self.outbox_frames)
        if check is not None:
            check(runner)
        self._searches[runner.id] = runner
        self._forget_old(session_id)
        runner.start()
        return runner

    def get(self, session_id: str, search_id: str) -> SearchRunner | None:
        """The session's search, or None (another session's search is as good as missing)."""
        runner = self._searches.get(search_id)
        return runner if runner is not None and runner.session_id == session_id else None

    def of(self, session_id: str) -> list[SearchRunner]:
        """The session's searches, newest first."""
        mine = [s for s in self._searches.values() if s.session_id == session_id]
        return sorted(mine, key=lambda s: s.created_at, reverse=True)

    def _forget_old(self, session_id: str) -> None:
        ended = [s for s in self.of(session_id) if not s.active]
        for old in ended[MAX_ENDED_SEARCHES_PER_SESSION:]:
            del self._searches[old.id]


__all__ = ["SearchBook", "SearchError", "SearchRunner", "SearchSpec", "RangeSpec", "TrialRecord"]
