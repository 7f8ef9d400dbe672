"""Hyperparameter search (lesson 21): random vs grid search over learning rate and l2, coarse then fine.

The lecture's advice, as code:

- sample the learning rate and the regularization strength on a log scale (``LogRange``):
  1e-4 to 1e-3 matters as much as 0.1 to 1;
- prefer random search to grid search (Bergstra & Bengio 2012): when one hyperparameter
  matters much more than the other, a k x k grid tries only k values of the important
  one, while k^2 random trials try k^2 different values of it;
- search coarse then fine: short trials over the wide range first, then longer trials in
  the narrower range where the best coarse trials landed (``narrow``).

Nothing here trains: :func:`search` calls ``train_one(config) -> validation accuracy`` for
each trial, so the caller decides how trials run (one after another in a test, or as a
set of short runs that the server's scheduler interleaves fairly with everyone else's).
:func:`stage_configs` and :func:`narrow` are the two halves for a caller that runs a
whole stage at once; :func:`trial_experiment` turns a trial into the document of its run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from server.schemas import Experiment

Method = Literal["random", "grid"]
Stage = Literal["coarse", "fine"]

DEFAULT_TOP_K = 3  # coarse trials whose values span the fine stage's range
# The fine range is widened by this share of the coarse range's width (in decades) on each side, so a
# fine stage around a single best value (or a grid's repeated values) still has room to search.
FINE_PADDING = 0.1
MAX_TRIALS = 400  # per stage: a search is a set of short runs, not a sweep of thousands


@dataclass(frozen=True)
class LogRange:
    """A positive range searched on a log scale: values ``10**u`` with ``u`` uniform in [log10 low, log10 high]."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not (0 < self.low <= self.high and math.isfinite(self.high)):
            raise ValueError(f"a log-scale range needs 0 < low <= high, got [{self.low:g}, {self.high:g}]")

    @property
    def decades(self) -> float:
        return math.log10(self.high) - math.log10(self.low)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` values drawn log-uniformly, float64 ``(n,)``."""
        return 10.0 ** rng.uniform(math.log10(self.low), math.log10(self.high), n)

    def grid(self, n: int) -> np.ndarray:
        """``n`` values evenly spaced in log space, ends included (one value: the geometric middle), ``(n,)``."""
        if n == 1:
            return np.array([math.sqrt(self.low * self.high)])
        return np.logspace(math.log10(self.low), math.log10(self.high), n)


@dataclass(frozen=True)
class SearchSpace:
    """The hyperparameters searched: the learning rate and the l2 strength, each on a log scale."""

    lr: LogRange = LogRange(1e-4, 1.0)
    l2: LogRange = LogRange(1e-6, 1e-1)


@dataclass(frozen=True)
class TrialConfig:
    """One trial: the values to train with, its stage, and how long to train (optimizer steps)."""

    lr: float
    l2: float
    stage: Stage
    max_steps: int


@dataclass
class Trial:
    """A trial and its result; ``val_acc`` is NaN for a run that diverged (it ranks last)."""

    index: int
    config: TrialConfig
    val_acc: float


@dataclass
class SearchResult:
    """Every trial of a search, in the order run, with the ranges each stage searched."""

    method: Method
    trials: list[Trial]
    coarse_space: SearchSpace
    fine_space: SearchSpace | None = None
    seed: int = 0

    @property
    def best(self) -> Trial:
        """The trial with the highest validation accuracy (the earliest among equals)."""
        return best_trial(self.trials)

    def stage(self, stage: Stage) -> list[Trial]:
        return [t for t in self.trials if t.config.stage == stage]


def _rank(trial: Trial) -> float:
    return -math.inf if math.isnan(trial.val_acc) else trial.val_acc


def best_trial(trials: list[Trial]) -> Trial:
    if not trials:
        raise ValueError("no trials to choose from")
    return max(trials, key=_rank)  # max keeps the first of equal keys


def _grid_shape(n: int) -> tuple[int, int]:
    """(lr values, l2 values) with product ``n``, as square as ``n`` allows; the learning rate gets the longer side."""
    l2_values = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return n // l2_values, l2_values


def stage_configs(method: Method, space: SearchSpace, n_trials: int, stage: Stage, max_steps: int,
                  seed: int = 0) -> list[TrialConfig]:
    """The trials of one stage; they do not depend on each other, so they may run in any order or at once.

    grid: an a x b grid in log space, a * b = ``n_trials`` as square as possible (9 -> 3 x 3;
    a prime count puts every trial on one line of l2 = the range's geometric middle).
    random: ``n_trials`` log-uniform draws of both, from a generator seeded with ``seed``.
    """
    if not 1 <= n_trials <= MAX_TRIALS:
        raise ValueError(f"a stage has 1 to {MAX_TRIALS} trials, got {n_trials}")
    if max_steps < 1:
        raise ValueError(f"trials train at least 1 step, got max_steps={max_steps}")
    if method == "grid":
        n_lr, n_l2 = _grid_shape(n_trials)
        pairs = [(lr, l2) for lr in space.lr.grid(n_lr) for l2 in space.l2.grid(n_l2)]
    elif method == "random":
        rng = np.random.default_rng(seed)
        pairs = list(zip(space.lr.sample(rng, n_trials), space.l2.sample(rng, n_trials)))
    else:
        raise ValueError(f"unknown search method {method!r}; use 'random' or 'grid'")
    return [TrialConfig(float(lr), float(l2), stage, int(max_steps)) for lr, l2 in pairs]


def _narrow_range(full: LogRange, values: list[float]) -> LogRange:
    values = [min(max(v, full.low), full.high) for v in values]  # a value off the range (e.g. l2 = 0) sits at its end
    pad = FINE_PADDING * full.decades
    lo = max(math.log10(full.low), math.log10(min(values)) - pad)
    hi = min(math.log10(full.high), math.log10(max(values)) + pad)
    return LogRange(10.0**lo, 10.0**hi)


def narrow(space: SearchSpace, trials: list[Trial], top_k: int = DEFAULT_TOP_K) -> SearchSpace:
    """The fine stage's space: per hyperparameter, the log range the ``top_k`` best trials span, padded, inside ``space``."""
    if not trials:
        raise ValueError("narrowing needs the coarse stage's trials")
    best = sorted(trials, key=_rank, reverse=True)[:max(1, top_k)]
    return SearchSpace(lr=_narrow_range(space.lr, [t.config.lr for t in best]),
                       l2=_narrow_range(space.l2, [t.config.l2 for t in best]))


def search(method: Method, train_one: Callable[[TrialConfig], float], *, space: SearchSpace = SearchSpace(),
           coarse_trials: int = 9, coarse_steps: int = 100, fine_trials: int = 0, fine_steps: int = 300,
           top_k: int = DEFAULT_TOP_K, seed: int = 0) -> SearchResult:
    """A search: ``coarse_trials`` short trials over ``space``, then ``fine_trials`` longer ones in the narrowed space.

    Args:
        method: "random" or "grid" (both stages).
        train_one: trains one trial and returns its validation accuracy (NaN if it diverged).
        space: the coarse stage's ranges.
        coarse_trials, coarse_steps: the coarse stage's size and trial length (optimizer steps).
        fine_trials, fine_steps: the fine stage's; 0 trials: coarse only.
        top_k: coarse trials whose values span the fine range.
        seed: random search draws the coarse stage from ``seed`` and the fine one from ``seed + 1``.

    Returns:
        A SearchResult; ``best`` is the best trial of both stages.
    """
    trials: list[Trial] = []

    def run(configs: list[TrialConfig]) -> None:
        for config in configs:
            trials.append(Trial(len(trials), config, float(train_one(config))))

    run(stage_configs(method, space, coarse_trials, "coarse", coarse_steps, seed))
    result = SearchResult(method, trials, space, seed=seed)
    if fine_trials > 0:
        result.fine_space = narrow(space, trials, top_k)
        run(stage_configs(method, result.fine_space, fine_trials, "fine", fine_steps, seed + 1))
    return result


def trial_experiment(base: Experiment, config: TrialConfig, *, full_length: bool = False) -> Experiment:
    """The document of one trial's run: ``base`` with the trial's learning rate and l2, trained ``config.max_steps`` steps.

    ``full_length``: keep ``base``'s own length instead (the best trial, opened as a run of its own).
    """
    document = base.model_copy(deep=True)
    document.train.optimizer.lr = config.lr
    document.train.l2 = config.l2
    if not full_length:
        document.train.max_steps = config.max_steps
    document.name = f"{base.name} (lr {config.lr:.3g}, l2 {config.l2:.3g})"[:200]
    document.lesson = None
    return Experiment.model_validate(document.model_dump())


__all__ = ["LogRange", "SearchResult", "SearchSpace", "Trial", "TrialConfig", "best_trial", "narrow", "search",
           "stage_configs", "trial_experiment"]
