"""The optimizer race (lesson 9): each optimizer steps on a 2D test function from the same start.

Every racer is the ``torch.optim`` optimizer the trainer would build for that kind
(``server.optim.build_optimizer``), moving one 2D point ``p = (x, y)`` downhill on
``f(p)``, one ``step()`` at a time; the trajectory is every position, so the page can
draw the paths over the function's contours step by step. Three functions show the
three classic behaviours:

- ``valley``: a long narrow valley ``0.05 x^2 + 5 y^2`` (condition number 100). Plain SGD
  zig-zags across it and crawls along it; momentum builds speed along the floor; the
  adaptive methods (AdaGrad, RMSProp, Adam) rescale each coordinate and go straight.
- ``rosenbrock``: ``(1 - x)^2 + 100 (y - x^2)^2``, a curved banana-shaped valley with its
  minimum at (1, 1) at the far end.
- ``saddle``: ``x^2 + y^4/4 - y^2/2``, a saddle point at the origin between two minima
  (0, +-1). Starting a hair off the ridge (y = 0.001), the gradient across it is tiny:
  SGD and momentum ride the ridge into the saddle and linger there for some 60 steps;
  the adaptive methods divide by the gradient's size and leave within a few.

L-BFGS takes one quasi-Newton iteration per step with a strong-Wolfe line search (as
SciPy's does): without one, its first full steps overshoot on these surfaces. Each of
its steps evaluates ``f`` a few times; ``evaluations`` counts them for every racer.

Learning rates. Each function has one learning rate per optimizer, each a sensible
setting for that method on that surface (near the largest stable rate for SGD), so
the race compares methods rather than tuning; ``lr`` overrides them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from server.optim import build_optimizer
from server.schemas import AdaGradOpt, AdamOpt, MomentumOpt, NesterovOpt, RMSPropOpt, SGDOpt

# The racers, in the order the page lists them.
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "lbfgs")
MAX_STEPS = 1000  # steps per race: enough for the slowest racer on Rosenbrock; bounds a probe's cost
# A racer whose point leaves a box this many times the plot's size (or whose loss is not finite) has diverged.
DIVERGENCE_FACTOR = 100.0
SURFACE_RESOLUTION = 128  # cells per side of the function's image under the trajectories
LBFGS_HISTORY = 10  # curvature pairs L-BFGS keeps (torch's default)
# Evaluations of f one L-BFGS step may spend on its line search (torch derives 1 from max_iter=1, too few to move).
LBFGS_MAX_EVALS = 25

Extent = tuple[float, float, float, float]  # x0, x1, y0, y1


def _valley(p: Tensor) -> Tensor:
    x, y = p[..., 0], p[..., 1]
    return 0.05 * x**2 + 5.0 * y**2


def _rosenbrock(p: Tensor) -> Tensor:
    x, y = p[..., 0], p[..., 1]
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


def _saddle(p: Tensor) -> Tensor:
    x, y = p[..., 0], p[..., 1]
    return x**2 + y**4 / 4.0 - y**2 / 2.0


@dataclass(frozen=True)
class TestFunction:
    """A 2D surface to race on, with where the race starts and how it is drawn.

    Attributes:
        f: ``(..., 2) -> (...)``, differentiable, on any shape of points (a grid or one point).
        formula: the surface as the page writes it.
        start: where every racer starts.
        minima: the global minima (drawn as targets); ``min_value`` is f there.
        extent: the plotted region, ``(x0, x1, y0, y1)``.
        lrs: optimizer kind -> its learning rate on this surface.
        steps: the default race length.
    """

    name: str
    title: str
    formula: str
    f: Callable[[Tensor], Tensor]
    start: tuple[float, float]
    minima: tuple[tuple[float, float], ...]
    min_value: float
    extent: Extent
    lrs: dict[str, float]
    steps: int


FUNCTIONS: dict[str, TestFunction] = {
    fn.name: fn
    for fn in (
        TestFunction(
            name="valley", title="A long narrow valley", formula="0.05 x² + 5 y²", f=_valley,
            start=(-9.0, 1.5), minima=((0.0, 0.0),), min_value=0.0, extent=(-10.0, 10.0, -2.5, 2.5),
            # SGD is stable below 2/10 (the steep direction's curvature is 10): 0.18 zig-zags visibly.
            lrs={"sgd": 0.18, "momentum": 0.02, "nesterov": 0.02, "adagrad": 1.5, "rmsprop": 0.1, "adam": 0.5,
                 "lbfgs": 1.0},
            steps=100,
        ),
        TestFunction(
            name="rosenbrock", title="Rosenbrock's banana valley", formula="(1 − x)² + 100 (y − x²)²", f=_rosenbrock,
            start=(-1.5, 2.0), minima=((1.0, 1.0),), min_value=0.0, extent=(-2.0, 2.0, -1.0, 3.0),
            # The walls' curvature reaches ~1,900 at the start: SGD is stable below about 1e-3.
            lrs={"sgd": 1e-3, "momentum": 5e-4, "nesterov": 5e-4, "adagrad": 1.0, "rmsprop": 0.01, "adam": 0.1,
                 "lbfgs": 1.0},
            steps=500,
        ),
        TestFunction(
            name="saddle", title="A saddle point between two minima", formula="x² + y⁴/4 − y²/2", f=_saddle,
            start=(-2.0, 1e-3), minima=((0.0, -1.0), (0.0, 1.0)), min_value=-0.25, extent=(-2.5, 2.5, -2.0, 2.0),
            lrs={"sgd": 0.1, "momentum": 0.02, "nesterov": 0.02, "adagrad": 0.5, "rmsprop": 0.02, "adam": 0.1,
                 "lbfgs": 1.0},
            steps=150,
        ),
    )
}


@dataclass
class Trajectory:
    """One racer's path.

    Attributes:
        points: ``(k + 1, 2)`` float64 positions: the start, then after each of the k steps run.
        losses: ``(k + 1,)`` f at each position.
        evaluations: how many times the optimizer evaluated f and its gradient (L-BFGS: several per step).
        diverged_at: the step after which the point left the plot far behind or f stopped being finite
            (the path ends there); None when it stayed.
    """

    optimizer: str
    lr: float
    points: np.ndarray
    losses: np.ndarray
    evaluations: int
    diverged_at: int | None = None

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1])


@dataclass
class Race:
    """Every racer's trajectory on one function, from one start, for ``steps`` steps."""

    function: TestFunction
    steps: int
    start: tuple[float, float]
    trajectories: list[Trajectory] = field(default_factory=list)

    def trajectory(self, optimizer: str) -> Trajectory:
        return next(t for t in self.trajectories if t.optimizer == optimizer)


def get_function(name: str) -> TestFunction:
    """The test function called ``name``; ValueError listing the others."""
    fn = FUNCTIONS.get(name)
    if fn is None:
        raise ValueError(f"unknown test function {name!r}; choose one of {', '.join(FUNCTIONS)}")
    return fn


def _optimizer(kind: str, point: Tensor, lr: float) -> torch.optim.Optimizer:
    """The optimizer the trainer builds for ``kind`` at rate ``lr`` (schema defaults for the rest); L-BFGS with a line search."""
    specs = {"sgd": SGDOpt, "momentum": MomentumOpt, "nesterov": NesterovOpt, "adagrad": AdaGradOpt,
             "rmsprop": RMSPropOpt, "adam": AdamOpt}
    if kind == "lbfgs":
        # One iteration per step so the path is drawn iteration by iteration; the line search keeps it on the surface.
        return torch.optim.LBFGS([point], lr=lr, max_iter=1, max_eval=LBFGS_MAX_EVALS, history_size=LBFGS_HISTORY,
                                 line_search_fn="strong_wolfe")
    if kind not in specs:
        raise ValueError(f"unknown optimizer {kind!r} for the race; choose among {', '.join(OPTIMIZERS)}")
    return build_optimizer(specs[kind](lr=lr), [point])


def run_racer(fn: TestFunction, kind: str, steps: int, lr: float | None = None,
              start: tuple[float, float] | None = None) -> Trajectory:
    """One optimizer's trajectory on ``fn``: ``steps`` calls of ``optimizer.step`` from ``start`` (float64)."""
    lr = fn.lrs[kind] if lr is None else float(lr)
    point = torch.tensor(start or fn.start, dtype=torch.float64, requires_grad=True)
    optimizer = _optimizer(kind, point, lr)
    evaluations = 0

    def closure() -> Tensor:
        nonlocal evaluations
        evaluations += 1
        optimizer.zero_grad(set_to_none=True)
        loss = fn.f(point)
        loss.backward()
        return loss

    x0, x1, y0, y1 = fn.extent
    centre = torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2], dtype=torch.float64)
    radius = DIVERGENCE_FACTOR * max(x1 - x0, y1 - y0)
    with torch.no_grad():
        points = [point.detach().clone()]
        losses = [fn.f(point).item()]
    diverged_at = None
    for step in range(1, steps + 1):
        optimizer.step(closure)
        with torch.no_grad():
            loss = fn.f(point).item()
            if not math.isfinite(loss) or not torch.isfinite(point).all() or (point - centre).abs().max() > radius:
                diverged_at = step
                break
            points.append(point.detach().clone())
            losses.append(loss)
    return Trajectory(kind, lr, torch.stack(points).numpy(), np.asarray(losses), evaluations, diverged_at)


def race(function: str, steps: int | None = None, lr: float | None = None,
         optimizers: tuple[str, ...] = OPTIMIZERS) -> Race:
    """Run every optimizer in ``optimizers`` on the test function ``function`` from its start.

    Args:
        function: a name of ``FUNCTIONS``: valley, rosenbrock or saddle.
        steps: optimizer steps per racer (1..MAX_STEPS); default: the function's own.
        lr: one learning rate for every racer (L-BFGS included: its step scale); default: each its own.
        optimizers: which racers, among ``OPTIMIZERS``.

    Raises:
        ValueError: an unknown function or optimizer, steps out of range, or a learning rate that is not positive.
    """
    fn = get_function(function)
    steps = fn.steps if steps is None else int(steps)
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
    if lr is not None and not (math.isfinite(lr) and 0 < lr <= 1e3):
        raise ValueError(f"lr must be a positive number up to 1000, got {lr!r}")
    unknown = [kind for kind in optimizers if kind not in OPTIMIZERS]
    if unknown:
        raise ValueError(f"unknown optimizer(s) {', '.join(map(repr, unknown))}; choose among {', '.join(OPTIMIZERS)}")
    result = Race(fn, steps, fn.start)
    for kind in optimizers:
        result.trajectories.append(run_racer(fn, kind, steps, lr))
    return result


def surface(fn: TestFunction, resolution: int = SURFACE_RESOLUTION) -> np.ndarray:
    """``f`` over the plotted region as a ``(resolution, resolution)`` float32 image in [0, 1].

    Row 0 is the top (y1), column 0 the left (x0), like the page's canvas. Values are
    ``log(1 + f - min_value)`` scaled to [0, 1]: on a log scale the valley's floor and the
    walls far up both show contours.
    """
    x0, x1, y0, y1 = fn.extent
    xs = torch.linspace(x0, x1, resolution, dtype=torch.float64)
    ys = torch.linspace(y1, y0, resolution, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (R, R, 2): [row, col] = (xs[col], ys[row])
    with torch.no_grad():
        heights = torch.log1p((fn.f(grid) - fn.min_value).clamp_min(0.0))
    heights = heights / heights.max().clamp_min(1e-12)
    return heights.to(torch.float32).numpy()


__all__ = ["FUNCTIONS", "MAX_STEPS", "OPTIMIZERS", "Race", "TestFunction", "Trajectory", "get_function", "race",
           "run_racer", "surface"]
