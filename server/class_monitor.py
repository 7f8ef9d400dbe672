"""The teacher's live view of a class: one compact ``Summary`` per student, kept up to date from the runs' streams.

``ClassMonitor`` follows every run a class member starts (the scheduler tells it on
submit), reading the run's ``RunChannel`` like any client but through a ``RunTap``
instead of an ``Outbox``: the worker thread only appends the few frame types that
matter (status, summary, metrics, final) to one shared deque, image frames are
skipped without being looked at, and nothing touches the run's live views (a tap is
not a watcher, so following 50 students makes no run compute a boundary it would
not compute anyway). Four times a second the event loop drains the deque, decodes
those frames, updates the summaries, and tells each teacher connection which
students changed (``TeacherFeed``); each changed summary is encoded to JSON once,
however many teachers watch.

Per student the summary holds the *current* run, the one started last; its loss and
validation-accuracy curves keep at most ``SERIES_MAX_POINTS`` points
(``DecimatedSeries``: every k-th point, k doubling when full, plus the newest), so
a summary's size is bounded however long a run trains.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from server.channel import Frame

log = logging.getLogger("dlplay.class")

SERIES_MAX_POINTS = 120  # points per curve in a summary: a small multiple is ~200 px wide, more is invisible
UPDATE_INTERVAL_SECONDS = 0.25  # the dashboard gets at most 4 updates a second: smooth enough, cheap for 50 students
# The frame types a summary is made from; every other (images, probes, hints) is skipped unread.
FOLLOWED_TYPES = frozenset({"status", "summary", "metrics", "final"})
ENDED_STATES = frozenset({"finished", "stopped", "failed", "interrupted", "deleted"})
# Layer kinds that change the shape a student would name ("2-16-16-2"); norms, dropout, flatten are left out.
_POOL_KINDS = {"max_pool2d": "mp", "avg_pool2d": "ap", "global_avg_pool": "gap"}


class DecimatedSeries:
    """A curve of ``[step, value]`` points that never holds more than ``max_points``.

    Keeps every ``stride``-th point offered; when the kept points reach ``max_points``
    every other one is dropped and the stride doubles, so the kept points stay evenly
    spaced over the whole run. The newest point is always shown too (as the last one), so
    the curve ends at the run's current value. Memory and work per point are O(1) amortized.
    Each point is encoded to JSON once, when it is added: sending the curve joins those texts.
    """

    def __init__(self, max_points: int = SERIES_MAX_POINTS) -> None:
        if max_points < 2:
            raise ValueError("a series needs room for at least 2 points (one kept, the newest)")
        self.max_points = max_points
        self.stride = 1  # keep every stride-th point
        self._offered = 0
        self._kept: list[tuple[int, float, str]] = []  # (step, value, the point as JSON)
        self._newest: tuple[int, float, str] | None = None  # the newest point when it was not kept

    def add(self, step: int, value: float) -> None:
        point = (step, value, f"[{step},{value!r}]")
        if self._offered % self.stride == 0:
            self._kept.append(point)
            self._newest = None
            if len(self._kept) >= self.max_points:  # room for the newest stays: at most max_points in all
                self._kept = self._kept[::2]  # offered indices 0, 2k, 4k...: multiples of the doubled stride
                self.stride *= 2
                if self._kept[-1] is not point:  # this point fell out of the thinned curve: it is still the newest
                    self._newest = point
        else:
            self._newest = point
        self._offered += 1

    def _shown(self) -> list[tuple[int, float, str]]:
        return self._kept + [self._newest] if self._newest is not None else self._kept

    def points(self) -> list[list[float]]:
        """The curve as sent: the kept points, then the newest if it was not kept (at most ``max_points``)."""
        return [[step, value] for step, value, _ in self._shown()]

    def json(self) -> str:
        """``points()`` as JSON text, from each point's cached text."""
        return "[" + ",".join(text for _, _, text in self._shown()) + "]"

    def __len__(self) -> int:
        return len(self._kept) + (self._newest is not None)

    def clear(self) -> None:
        self.stride, self._offered, self._kept, self._newest = 1, 0, [], None


def _number(value: Any) -> float | None:
    """A finite float from a wire number (NaN and inf travel as strings: they are not plotted)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _activation_name(spec: Any) -> str | None:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict):
        return spec.get("kind")
    return None


def network_line(network: dict[str, Any], layers_doc: list[dict[str, Any]]) -> str:
    """The network in one line, as a teacher would say it: ``"2-16-16-2 tanh"``, ``"1x28x28-c6-mp-c16-mp-120-10 relu"``.

    ``network`` is the run's ``summary.network`` (shapes); ``layers_doc`` the experiment's layers (activations).
    """
    parts = ["x".join(str(d) for d in network.get("input_shape") or [])]
    for layer in network.get("layers") or []:
        kind, shape = layer.get("kind"), layer.get("output_shape") or []
        if kind == "linear" and shape:
            parts.append(str(shape[-1]))
        elif kind == "conv2d" and shape:
            parts.append(f"c{shape[0]}")
        elif kind in _POOL_KINDS:
            parts.append(_POOL_KINDS[kind])
        elif kind in ("add", "concat", "squeeze_excite", "spatial_attention"):
            parts.append(kind.split("_")[0][:3])
    activations: list[str] = []
    for layer in layers_doc:
        name = _activation_name(layer.get("activation"))
        if name and name != "identity" and name not in activations:
            activations.append(name)
    line = "-".join(p for p in parts if p)
    return f"{line} {'/'.join(activations)}" if activations else line


@dataclass
class Summary:
    """One student on the dashboard: who, and their current run in a few numbers and two short curves."""

    member_id: str
    name: str
    kicked: bool = False
    run_id: str | None = None
    state: str = "idle"  # no run yet; else the run's RunState
    step: int = 0
    epoch: float = 0.0
    loss: DecimatedSeries = field(default_factory=DecimatedSeries)
    val_acc: DecimatedSeries = field(default_factory=DecimatedSeries)
    train_acc: float | None = None  # the last logged
    val_acc_last: float | None = None
    best_val_acc: float | None = None
    network: str = ""
    params: int | None = None
    layers_doc: list[dict[str, Any]] = field(default_factory=list)  # the run's experiment layers (activations)
    version: int = 0  # bumped on every change; the encoded text is cached per version
    _text: str | None = None
    _text_version: tuple[int, int | None] | None = None

    def start_run(self, run_id: str, layers_doc: list[dict[str, Any]], state: str = "queued") -> None:
        """This student's current run is now ``run_id``: everything about the previous one goes."""
        self.run_id, self.state, self.step, self.epoch = run_id, state, 0, 0.0
        self.loss.clear()
        self.val_acc.clear()
        self.train_acc = self.val_acc_last = self.best_val_acc = None
        self.network, self.params, self.layers_doc = "", None, layers_doc

    def apply(self, message: dict[str, Any]) -> None:
        """Fold one of the run's messages (status, summary, metrics, final) into the summary."""
        kind = message.get("type")
        if kind == "metrics":
            step = message.get("step")
            if isinstance(step, int):
                self.step = step
            epoch = _number(message.get("epoch"))
            if epoch is not None:
                self.epoch = epoch
            loss = _number(message.get("train_loss"))
            if loss is not None:
                self.loss.add(self.step, loss)
            train_acc = _number(message.get("train_acc"))
            if train_acc is not None:
                self.train_acc = train_acc
            val_acc = _number(message.get("val_acc"))
            if val_acc is not None:
                self.val_acc.add(self.step, val_acc)
                self.val_acc_last = val_acc
                if self.best_val_acc is None or val_acc > self.best_val_acc:
                    self.best_val_acc = val_acc
        elif kind == "status":
            state = message.get("state")
            if isinstance(state, str):
                self.state = state
        elif kind == "summary":
            network = message.get("network") or {}
            self.params = network.get("total_params")
            self.network = network_line(network, self.layers_doc)
        elif kind == "final":
            steps = message.get("steps")
            if isinstance(steps, int):
                self.step = steps
            best = _number(message.get("best_val_acc"))
            if best is not None and (self.best_val_acc is None or best > self.best_val_acc):
                self.best_val_acc = best
        self.version += 1

    def _scalars(self, param_budget: int | None) -> dict[str, Any]:
        return {
            "member_id": self.member_id, "name": self.name, "run_id": self.run_id, "state": self.state,
            "step": self.step, "epoch": round(self.epoch, 4), "train_acc": self.train_acc,
            "val_acc_last": self.val_acc_last, "best_val_acc": self.best_val_acc, "network": self.network,
            "params": self.params, "kicked": self.kicked,
            "within_budget": param_budget is None or self.params is None or self.params <= param_budget,
        }

    def to_dict(self, param_budget: int | None) -> dict[str, Any]:
        """The Summary of the classroom contract: who, the current run's state and figures, two short curves.

        ``within_budget``: the run's parameters fit the lesson's challenge budget (true without a challenge).
        """
        return {**self._scalars(param_budget), "loss": self.loss.points(), "val_acc": self.val_acc.points()}

    def text(self, param_budget: int | None) -> str:
        """``to_dict`` as JSON, encoded once per version (every teacher connection shares it); the curves'
        points were encoded as they came."""
        if self._text is None or self._text_version != (self.version, param_budget):
            head = json.dumps(self._scalars(param_budget), separators=(",", ":"), allow_nan=False)
            self._text = f'{head[:-1]},"loss":{self.loss.json()},"val_acc":{self.val_acc.json()}}}'
            self._text_version = (self.version, param_budget)
        return self._text


class RunTap:
    """A run channel's subscriber that hands the frames a summary needs to the monitor (any thread, O(frames)).

    It quacks like an ``Outbox`` for ``RunChannel`` (``deliver`` and ``closed``) but owns no queue:
    ``deque.append`` is atomic, so the worker never waits for the event loop.
    """

    __slots__ = ("member_id", "run_id", "closed", "_sink")

    def __init__(self, member_id: str, run_id: str, sink: deque) -> None:
        self.member_id = member_id
        self.run_id = run_id
        self.closed = False
        self._sink = sink

    def deliver(self, frames: list[Frame]) -> None:
        if self.closed:
            return
        for frame in frames:
            if frame.type in FOLLOWED_TYPES:
                self._sink.append((self, frame))


class TeacherFeed:
    """What one teacher connection still has to be sent: a full snapshot, or the students changed since.

    The "queue" is a set of member ids (at most one entry per student), so a slow page
    costs the server nothing extra: while it is busy receiving, changes merge, and it
    gets the newest summaries of everyone who changed when it is ready again.
    """

    def __init__(self) -> None:
        self.changed: set[str] = set()
        self.needs_snapshot = True
        self.ready = asyncio.Event()
        self.ready.set()

    def mark(self, member_ids: Iterable[str]) -> None:
        self.changed.update(member_ids)
        if self.changed:
            self.ready.set()

    def mark_snapshot(self) -> None:
        self.needs_snapshot = True
        self.ready.set()


class ClassMonitor:
    """Follows the class members' runs and keeps the teacher dashboard's summaries (see the module docstring).

    ``classroom`` is the ``ClassroomService`` (``server/classroom.py``); ``scheduler`` the app's; ``store`` lets
    a student's last run show after a restart. Call ``start()`` on the event loop and ``close()`` at shutdown.
    """

    def __init__(self, classroom: Any, scheduler: Any, store: Any, *,
                 interval: float = UPDATE_INTERVAL_SECONDS, series_points: int = SERIES_MAX_POINTS) -> None:
        self.classroom = classroom
        self.scheduler = scheduler
        self.store = store
        self.interval = interval
        self.series_points = series_points
        # (tap, frame) from the worker threads; (tap, None) marks a new current run, in order with its frames.
        self._incoming: deque[tuple[RunTap, Frame | None]] = deque()
        self._taps: dict[str, RunTap] = {}  # member id -> the tap on their current run
        self._summaries: dict[str, Summary] = {}
        self._class_id: str | None = None
        self._feeds: set[TeacherFeed] = set()
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        scheduler.add_submit_listener(self._run_submitted)
        classroom.on_change(self._class_changed)

    # -- life --------------------------------------------------------------------

    def start(self) -> None:
        """Start the pump (on the event loop)."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._pump())

    async def close(self) -> None:
        for tap in self._taps.values():
            tap.closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    # -- following runs ------------------------------------------------------------

    def _run_submitted(self, run: Any) -> None:
        """The scheduler's submit hook: a member's new run becomes their current one (cheap when not a member)."""
        member = self.classroom.member_of_session(run.session_id)  # None without an open class
        if member is None:
            return
        self.follow(member.id, run)

    def follow(self, member_id: str, run: Any) -> None:
        """Make ``run`` (a scheduler ``Run``) this member's current run and start reading its stream."""
        old = self._taps.pop(member_id, None)
        if old is not None:  # only the latest run is on the dashboard: stop reading the previous one
            old.closed = True
            old_run = self.scheduler.get(old.run_id)
            if old_run is not None:
                old_run.channel.unsubscribe(old)
        tap = RunTap(member_id, run.id, self._incoming)
        self._taps[member_id] = tap
        # The start marker goes through the same deque as the frames, so the pump resets the summary in order.
        self._incoming.append((tap, None))
        run.channel.subscribe(tap, 0)  # replays what the run already sent (usually just "queued")

    # -- the pump ------------------------------------------------------------------

    async def _pump(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.drain()
            except Exception:  # a bug here must not stop the dashboard for good
                log.exception("class monitor: updating the summaries failed")

    def drain(self) -> set[str]:
        """Fold the frames that arrived into the summaries; tell the teacher feeds who changed. Returns them."""
        changed: set[str] = set()
        incoming = self._incoming
        budget = len(incoming)  # only what is here now: a flood cannot keep this loop busy forever
        for _ in range(budget):
            tap, frame = incoming.popleft()
            if self._taps.get(tap.member_id) is not tap:
                continue  # a previous run of the student's: no longer shown
            summary = self._summary(tap.member_id)
            if summary is None:
                continue
            if frame is None:
                run = self.scheduler.get(tap.run_id)
                summary.start_run(tap.run_id, _layers_doc(run.experiment) if run is not None else [])
                summary.version += 1
            else:
                message = json.loads(frame.text)
                summary.apply(message)
                if frame.type == "status" and message.get("state") in ENDED_STATES:
                    tap.closed = True  # the run's stream is over; its channel drops the tap on its next publish
            changed.add(tap.member_id)
        if changed:
            for feed in self._feeds:
                feed.mark(changed)
        return changed

    # -- summaries -----------------------------------------------------------------

    def _sync_class(self) -> None:
        """Rebuild the member list when the class changed (a new class, joins, kicks)."""
        current = self.classroom.gating  # the open class, or the one that ended while the server ran
        class_id = current.id if current is not None else None
        if class_id != self._class_id:
            for tap in self._taps.values():
                tap.closed = True
            self._taps.clear()
            self._summaries.clear()
            self._class_id = class_id
        if current is None:
            return
        members = self.classroom.members()
        known = set()
        for member in members:
            known.add(member.id)
            summary = self._summaries.get(member.id)
            if summary is None:
                summary = Summary(member.id, member.name, loss=DecimatedSeries(self.series_points),
                                  val_acc=DecimatedSeries(self.series_points))
                self._summaries[member.id] = summary
                if member.id not in self._taps:
                    self._load_last_run(summary)
            if summary.kicked != member.kicked or summary.name != member.name:
                summary.kicked, summary.name = member.kicked, member.name
                summary.version += 1
        for gone in set(self._summaries) - known:
            del self._summaries[gone]

    def _summary(self, member_id: str) -> Summary | None:
        summary = self._summaries.get(member_id)
        if summary is None:
            self._sync_class()
            summary = self._summaries.get(member_id)
        return summary

    def _load_last_run(self, summary: Summary) -> None:
        """A student's last run from the store (after a restart, or a run that left memory), as it ended."""
        run_ids = self.classroom.runs_of(summary.member_id)
        if not run_ids:
            return
        record = self.store.get_run(run_ids[-1])
        if record is None:
            return
        summary.start_run(record.id, (record.experiment.get("network") or {}).get("layers") or [], record.status)
        if record.summary:
            summary.apply(record.summary)
        for point in self.store.metrics(record.id):
            summary.apply(point)
        if record.final:
            summary.apply(record.final)
        summary.state = record.status

    def _class_changed(self) -> None:
        """The classroom's change hook (joins, kicks, a lesson, the end): every teacher gets a new snapshot."""
        if self._loop is not None and self._loop.is_running():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not self._loop:
                self._loop.call_soon_threadsafe(self._class_changed)
                return
        for feed in self._feeds:
            feed.mark_snapshot()

    def param_budget(self) -> int | None:
        """The lesson's challenge budget in parameters, or None without a challenge."""
        current = self.classroom.gating
        lesson = current.lesson if current is not None else None
        challenge = (lesson or {}).get("challenge") if isinstance(lesson, dict) else None
        budget = (challenge or {}).get("param_budget") if isinstance(challenge, dict) else None
        return budget if isinstance(budget, int) else None

    def class_info(self) -> dict[str, Any] | None:
        """The class as the dashboard's header needs it (an ended class too: ``ended_at`` says so; null: none)."""
        current = self.classroom.gating
        if current is None:
            return None
        return {
            "id": current.id, "title": current.title, "code": current.code, "joining_open": current.joining_open,
            "leaderboard_published": current.leaderboard_published, "ended_at": current.ended_at,
            "lesson": current.lesson, "quotas": current.quotas, "members": len(self._summaries),
        }

    def summaries(self) -> list[dict[str, Any]]:
        """Every student's summary, in joining order (decoded; for tests and REST)."""
        self._sync_class()
        budget = self.param_budget()
        return [s.to_dict(budget) for s in self._summaries.values()]

    # -- teacher connections ---------------------------------------------------------

    def add_feed(self) -> TeacherFeed:
        feed = TeacherFeed()
        self._feeds.add(feed)
        return feed

    def remove_feed(self, feed: TeacherFeed) -> None:
        self._feeds.discard(feed)

    def next_frame(self, feed: TeacherFeed) -> str | None:
        """The feed's next message as JSON text: a snapshot, an update of the changed students, or None."""
        if feed.needs_snapshot:
            feed.needs_snapshot = False
            feed.changed.clear()
            self._sync_class()
            budget = self.param_budget()
            students = ",".join(s.text(budget) for s in self._summaries.values())
            head = json.dumps({"type": "class_snapshot", "class": self.class_info()}, separators=(",", ":"),
                              default=str)
            return f'{head[:-1]},"students":[{students}]}}'
        if not feed.changed:
            return None
        budget = self.param_budget()
        texts = [self._summaries[m].text(budget) for m in feed.changed if m in self._summaries]
        feed.changed.clear()
        if not texts:
            return None
        return f'{{"type":"class_update","t":{time.time():.3f},"students":[{",".join(texts)}]}}'


def _layers_doc(experiment: Any) -> list[dict[str, Any]]:
    """The experiment's layers as JSON (for their activations), from a validated ``Experiment``."""
    try:
        return experiment.model_dump(mode="json")["network"]["layers"]
    except Exception:  # an experiment of another shape (a test double) simply names no activation
        return []
