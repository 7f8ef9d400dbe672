"""What a live view is, and the frame clock that decides when each one runs.

A *live view* is one thing the page can watch while a run trains (the decision
boundary, the activation statistics, the filters, ...). Each is one entry of the
table in ``server/live/__init__.py``, defined in a file of its own: its name,
the messages it sends, its target rate in frames per second of wall time, its
arguments, and the function that computes a frame from a running session. The
runner (``RunSession``), the scheduler (the websocket ``views``/``probe``
commands) and the page (``GET /api/views``) all read that one table.

The clock replaces "every N steps": a 1 ms MLP step and a 20 ms CNN step both get
boundary frames at 20/s. Probes may take at most ``budget`` of the wall time;
when the views a client watches cost more than that at their target rates, every
rate is scaled down by the same factor, never below ``MIN_RATE_HZ`` (a view that
is watched never freezes), and each frame says the rate it now runs at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal

if TYPE_CHECKING:  # the session is the runner's; views only use the attributes named in ViewContext
    from server.runner import RunSession as ViewContext
else:
    ViewContext = Any

# A watched view never runs slower than this, whatever its cost: one frame every 5 seconds.
MIN_RATE_HZ = 0.2  # frames per second
# A view's cost is an exponential moving average of its last frames (seconds per frame); this is the weight of the newest.
COST_SMOOTHING = 0.3
# Until a view has been timed, the clock assumes it is cheap, so the first frame is never held back.
INITIAL_COST_SECONDS = 1e-4  # seconds

Kind = Literal["2d", "image", "tabular"]


@dataclass(frozen=True)
class Argument:
    """One argument of a view (or an on-demand probe): its JSON type and what it means."""

    name: str
    type: Literal["int", "bool", "str", "float"]
    description: str


@dataclass(frozen=True)
class LiveView:
    """One row of the view table.

    Attributes:
        name: the view's name in ``views`` / ``probe`` commands and ``probes.rates``.
        messages: the message types a frame consists of.
        description: one line for the page and the API.
        compute: ``compute(session, **args) -> [message, ...]``, a frame from the session's current
            weights; raises ValueError (a clear message) when it does not apply (wrong data, no conv layer).
        default_hz: target frames per second; None for views that only run on demand (a button).
        default_on: watched by a connection that never said which views it looks at.
        arguments: the arguments ``compute`` takes (validated before it is called).
        kinds: the dataset kinds it applies to; None for all.
        wrap_step: for views read off a training step (activation/gradient statistics):
            ``wrap_step(session, step) -> (StepResult, [message, ...])`` runs ``step()`` (one training
            step that hooks may observe) and measures it. Such a view has no ``compute`` of its own
            outside a step, so a refresh leaves it as it is.
        on_evaluation: the view is only worth a new frame after a new evaluation (confusion matrix).
        applies: ``applies(session) -> str | None``: why this view cannot run on this session, or None.
    """

    name: str
    messages: tuple[str, ...]
    description: str
    compute: Callable[..., list[dict[str, Any]]] | None = None
    default_hz: float | None = None
    default_on: bool = False
    arguments: tuple[Argument, ...] = ()
    kinds: tuple[Kind, ...] | None = None
    wrap_step: Callable[..., Any] | None = None
    on_evaluation: bool = False
    applies: Callable[[Any], str | None] | None = None

    @property
    def live(self) -> bool:
        """Streamed by the frame clock (not only on demand)."""
        return self.default_hz is not None

    def reason_not_applicable(self, session: Any) -> str | None:
        kind = session.dataset.kind
        if self.kinds is not None and kind not in self.kinds:
            return f"{self.name} needs {' or '.join(self.kinds)} data; {session.dataset.name!r} is {kind} data"
        return self.applies(session) if self.applies is not None else None

    def check_arguments(self, args: dict[str, Any]) -> dict[str, Any]:
        """The arguments with their types checked; unknown names and wrong types raise ValueError."""
        known = {a.name: a for a in self.arguments}
        checked: dict[str, Any] = {}
        for key, value in args.items():
            if value is None:
                continue
            spec = known.get(key)
            if spec is None:
                takes = ", ".join(known) or "no arguments"
                raise ValueError(f"{self.name} does not take {key!r}; it takes {takes}")
            ok = {
                "int": isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**31,
                "bool": isinstance(value, bool),
                "str": isinstance(value, str) and len(value) <= 200,
                "float": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
            }[spec.type]
            if not ok:
                raise ValueError(f"{self.name}: {key} must be {'an' if spec.type == 'int' else 'a'} {spec.type}, not {value!r}")
            checked[key] = value
        return checked

    def describe(self, rates: dict[str, float] | None = None) -> dict[str, Any]:
        """The view's row for ``GET /api/views``."""
        return {
            "name": self.name,
            "description": self.description,
            "messages": list(self.messages),
            "default_hz": self.default_hz,
            "default_on": self.default_on,
            "on_demand": self.compute is not None,
            "on_evaluation": self.on_evaluation,
            "kinds": list(self.kinds) if self.kinds else None,
            "arguments": [{"name": a.name, "type": a.type, "description": a.description} for a in self.arguments],
        }


@dataclass
class _ViewTiming:
    target_hz: float
    rate_hz: float
    cost: float = INITIAL_COST_SECONDS  # seconds per frame, smoothed
    next_due: float = 0.0  # perf_counter time of the next frame; 0: at once
    last_step: int = -1  # the training step of the last frame (a frame of an unchanged model is not sent twice)


@dataclass
class FrameClock:
    """When each watched view is due, at rates that fit the probe budget.

    ``targets`` maps every live view to its target rate (its default, or ``probes.rates``).
    Call ``watch(names)`` when the watched set changes, ``due(now)`` to learn which views
    should produce a frame now, and ``ran(name, seconds, now, step)`` after producing one.
    """

    targets: dict[str, float]
    budget: float
    _timings: dict[str, _ViewTiming] = field(default_factory=dict)
    _next_due: float = math.inf  # the earliest next_due over watched views: one comparison per step

    def watch(self, names: Iterable[str]) -> None:
        """Set the watched views; those newly watched are due at once, the others keep their timing."""
        names = [n for n in names if n in self.targets]
        self._timings = {n: self._timings.get(n) or _ViewTiming(self.targets[n], self.targets[n]) for n in names}
        self._rebalance()

    @property
    def watched(self) -> list[str]:
        return list(self._timings)

    def rate(self, name: str) -> float | None:
        timing = self._timings.get(name)
        return None if timing is None else timing.rate_hz

    def anything_due(self, now: float) -> bool:
        return now >= self._next_due

    def due(self, now: float, step: int) -> list[str]:
        """Watched views whose next frame is due at ``now`` and whose model changed since their last frame."""
        if now < self._next_due:
            return []
        return [n for n, t in self._timings.items() if now >= t.next_due and t.last_step != step]

    def ran(self, name: str, seconds: float, now: float, step: int) -> None:
        """Record a frame of ``name`` that took ``seconds``; schedules its next one."""
        timing = self._timings.get(name)
        if timing is None:
            return
        timing.cost = (1 - COST_SMOOTHING) * timing.cost + COST_SMOOTHING * max(seconds, 0.0)
        timing.last_step = step
        # From the due time rather than from now, so a view holds its rate; but never schedule in the past.
        period = 1.0 / timing.rate_hz
        timing.next_due = max(timing.next_due + period, now + 0.5 * period)
        self._rebalance()

    def invalidate(self, name: str) -> None:
        """Make ``name`` due at once (its arguments changed: another example, another layer)."""
        timing = self._timings.get(name)
        if timing is not None:
            timing.next_due, timing.last_step = 0.0, -1
            self._next_due = 0.0

    def _rebalance(self) -> None:
        """Fit the watched views' total cost into the budget, sharing it max-min fairly.

        Each view may use an equal share of the budget; a view that needs less at its target
        rate keeps its target and leaves the rest to the others. So a cheap view (filters,
        0.4 ms a frame) keeps its rate beside an expensive one (a 100 ms confusion matrix),
        which alone is slowed down.
        """
        timings = sorted(self._timings.values(), key=lambda t: t.cost * t.target_hz)
        remaining = self.budget
        for k, t in enumerate(timings):
            fair = remaining / (len(timings) - k)
            demand = t.cost * t.target_hz  # seconds of probing per second at the target rate
            share = min(demand, fair)
            remaining -= share
            rate = t.target_hz if demand <= fair else share / max(t.cost, 1e-9)
            t.rate_hz = max(MIN_RATE_HZ, min(t.target_hz, rate))
        self._next_due = min((t.next_due for t in self._timings.values()), default=math.inf)

    def share(self) -> float:
        """Seconds of probing per second of wall time the watched views are expected to take now."""
        return sum(t.cost * t.rate_hz for t in self._timings.values())


__all__ = ["Argument", "FrameClock", "LiveView", "MIN_RATE_HZ", "ViewContext"]
