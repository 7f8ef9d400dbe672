"""Shared by the lesson tests: a preset's documents step by step, and training one for a number of steps."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from server.presets import MODELS_DIR
from server.schemas import Experiment, lesson_documents
from server.trainer import Trainer

LN10 = math.log(10.0)
LN2 = math.log(2.0)


def preset(stem: str) -> Experiment:
    return Experiment.model_validate(json.loads((MODELS_DIR / f"{stem}.json").read_text(encoding="utf-8")))


def step_docs(stem: str) -> list[Experiment]:
    """The preset itself (index 0), then the document after each step's button (index k = step k)."""
    experiment = preset(stem)
    return [experiment, *lesson_documents(experiment)]


@dataclass
class Run:
    """A finished training run: its trainer, and every step's data loss and learning rate."""

    trainer: Trainer
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    evaluations: list[tuple[int, float]] = field(default_factory=list)  # (step, validation loss)

    def gap(self) -> float:
        """Validation loss minus training loss, both over the whole split in evaluation mode."""
        return self.trainer.evaluate("val").loss - self.trainer.evaluate("train").loss

    def val_acc(self) -> float:
        return self.trainer.evaluate("val").accuracy


def train(document: Experiment, steps: int | None = None, **trainer_args: Any) -> Run:
    """Train ``document`` on the CPU for ``steps`` steps (None: its own length), recording every step."""
    document = document.model_copy(deep=True)
    if steps is not None:
        document.train.max_steps = steps
    run = Run(Trainer(document, device="cpu", **trainer_args))
    while not run.trainer.done:
        result = run.trainer.step()
        run.losses.append(float(result.loss))
        run.lrs.append(result.lr)
        if result.evaluation is not None:
            run.evaluations.append((result.step, result.evaluation.loss))
    return run


__all__ = ["LN10", "LN2", "Run", "preset", "step_docs", "train"]
