"""Hyperparameter search (lesson 21): random search beats grid search when one hyperparameter matters.

The task is the lesson preset's: a 32-unit network on the 8x8 digits, 60 steps of SGD. Its learning
rate decides almost everything and its l2 strength (1e-6 to 0.1) hardly matters, the situation
Bergstra & Bengio (2012) describe: a 3 x 3 grid tries 3 learning rates, 9 random trials try 9.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from lesson_helpers import preset

from server.datasets import load_dataset
from server.lessons.search import (
    LogRange,
    SearchSpace,
    Trial,
    TrialConfig,
    best_trial,
    narrow,
    search,
    stage_configs,
    trial_experiment,
)
from server.trainer import Trainer

TRIALS = 9
STEPS = 60


@pytest.fixture(scope="module")
def task():
    """``train_one(config) -> validation accuracy`` for the lesson preset, sharing one copy of the data."""
    base = preset("hyperparameter_search")
    data = load_dataset(base.data)
    calls: list[TrialConfig] = []

    def train_one(config: TrialConfig) -> float:
        calls.append(config)
        trainer = Trainer(trial_experiment(base, config), device="cpu", dataset=data)
        while not trainer.done:
            trainer.step()
        if trainer.stop.reason != "finished":
            return math.nan  # diverged: ranks last
        return trainer.evaluate().accuracy

    train_one.calls = calls
    return base, train_one


@pytest.fixture(scope="module")
def grid(task):
    _, train_one = task
    return search("grid", train_one, coarse_trials=TRIALS, coarse_steps=STEPS)


def test_random_search_finds_a_better_best_trial_than_grid_search_with_as_many_trials(task, grid):
    _, train_one = task
    assert len(grid.trials) == TRIALS and len({t.config.lr for t in grid.trials}) == 3
    for seed in range(3):
        random = search("random", train_one, coarse_trials=TRIALS, coarse_steps=STEPS, seed=seed)
        assert len(random.trials) == TRIALS and len({t.config.lr for t in random.trials}) == TRIALS
        assert random.best.val_acc > grid.best.val_acc + 0.02, (seed, random.best, grid.best)


def test_the_learning_rate_matters_and_l2_hardly_does(grid):
    """Why random wins: along each grid row (one lr, three l2 values) accuracy barely moves; across rows it jumps."""
    by_lr: dict[float, list[float]] = {}
    for trial in grid.trials:
        by_lr.setdefault(trial.config.lr, []).append(0.0 if math.isnan(trial.val_acc) else trial.val_acc)
    spread_within = max(max(v) - min(v) for lr, v in by_lr.items() if lr < 1.0)  # l2 matters only at lr 1
    spread_across = max(np.mean(v) for v in by_lr.values()) - min(np.mean(v) for v in by_lr.values())
    assert spread_across > 5 * spread_within


def test_coarse_then_fine_narrows_the_ranges_around_the_best_coarse_trials(task):
    _, train_one = task
    result = search("random", train_one, coarse_trials=TRIALS, coarse_steps=STEPS, fine_trials=4, fine_steps=120,
                    seed=1)
    coarse, fine = result.stage("coarse"), result.stage("fine")
    assert len(coarse) == TRIALS and len(fine) == 4 and all(t.config.max_steps == 120 for t in fine)
    space, narrowed = result.coarse_space, result.fine_space
    assert narrowed.lr.decades < 0.5 * space.lr.decades
    assert space.lr.low <= narrowed.lr.low and narrowed.lr.high <= space.lr.high
    best_coarse = best_trial(coarse)
    assert narrowed.lr.low <= best_coarse.config.lr <= narrowed.lr.high
    assert all(narrowed.lr.low <= t.config.lr <= narrowed.lr.high for t in fine)
    assert result.best.val_acc == max(t.val_acc for t in result.trials)
    assert best_trial(fine).val_acc >= best_coarse.val_acc - 0.02  # longer runs near the best do no worse


def test_the_best_trial_opens_as_a_run_of_full_length(task, grid):
    base, _ = task
    best = grid.best.config
    short, full = trial_experiment(base, best), trial_experiment(base, best, full_length=True)
    assert short.train.optimizer.lr == full.train.optimizer.lr == best.lr and full.train.l2 == best.l2
    assert short.train.max_steps == best.max_steps and full.train.max_steps == base.train.max_steps
    assert full.lesson is None and f"lr {best.lr:.3g}" in full.name


# ---------------------------------------------------------------------------
# The pieces
# ---------------------------------------------------------------------------


def test_grids_are_as_square_as_the_trial_count_allows_and_log_spaced():
    space = SearchSpace(lr=LogRange(1e-4, 1.0), l2=LogRange(1e-6, 1e-2))
    configs = stage_configs("grid", space, 12, "coarse", 10)
    assert len({c.lr for c in configs}) == 4 and len({c.l2 for c in configs}) == 3
    assert sorted({c.lr for c in configs}) == pytest.approx([1e-4, 10 ** (-8 / 3), 10 ** (-4 / 3), 1.0])
    prime = stage_configs("grid", space, 7, "coarse", 10)
    assert len({c.lr for c in prime}) == 7 and [c.l2 for c in prime] == pytest.approx([1e-4] * 7)  # the middle


def test_random_draws_are_log_uniform_and_seeded():
    space = SearchSpace()
    draws = stage_configs("random", space, 400, "coarse", 10, seed=5)
    assert draws == stage_configs("random", space, 400, "coarse", 10, seed=5)
    exponents = np.log10([c.lr for c in draws])
    # Log-uniform on [1e-4, 1]: each decade holds about a quarter of the draws.
    counts = np.histogram(exponents, bins=4, range=(-4, 0))[0]
    assert counts.min() > 70 and counts.max() < 130


def test_a_diverged_trial_ranks_last():
    config = TrialConfig(0.1, 0.0, "coarse", 10)
    trials = [Trial(0, config, math.nan), Trial(1, config, 0.2), Trial(2, config, 0.2)]
    assert best_trial(trials).index == 1
    fine = narrow(SearchSpace(), trials, top_k=1)
    assert fine.lr.low <= 0.1 <= fine.lr.high and fine.l2.low == SearchSpace().l2.low  # l2 = 0 sits at the range's end


@pytest.mark.parametrize("call, message", [
    (lambda: LogRange(0.0, 1.0), "0 < low <= high"),
    (lambda: LogRange(1.0, 0.1), "0 < low <= high"),
    (lambda: stage_configs("sobol", SearchSpace(), 4, "coarse", 10), "unknown search method 'sobol'"),
    (lambda: stage_configs("grid", SearchSpace(), 0, "coarse", 10), "1 to 400 trials"),
    (lambda: stage_configs("grid", SearchSpace(), 4, "coarse", 0), "at least 1 step"),
    (lambda: best_trial([]), "no trials"),
])
def test_bad_search_settings_say_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()
