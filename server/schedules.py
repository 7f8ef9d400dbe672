"""Learning-rate schedules: a ``ScheduleSpec`` -> the LR of each step.

:func:`lr_at` is pure: the LR of the step that follows ``step`` completed steps
(``step`` counts from 0), with ``t = step / steps_per_epoch`` in epochs. The
plateau schedule depends on validation losses, so it keeps a
:class:`PlateauState` that the trainer feeds after each evaluation.

A linear warm-up multiplies any schedule: the k-th step (k = 1, 2, ...) of the
first ``warmup_steps`` uses ``k / warmup_steps`` of the scheduled LR, so the LR
ramps from 0 and no step is spent at exactly 0.

Each formula matches its ``torch.optim.lr_scheduler`` counterpart stepped once per
optimizer step (tests/test_schedules.py checks them): ``step`` = StepLR,
``exponential`` = ExponentialLR with gamma = e^-k stepped per epoch (here it is
continuous: it agrees at epoch boundaries and decays smoothly in between),
``cosine_restarts`` = CosineAnnealingWarmRestarts, ``cyclical`` = CyclicLR
(triangular, starting at ``min_lr``), ``plateau`` = ReduceLROnPlateau (mode min,
relative threshold 1e-4, no cooldown).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from server.schemas import (
    ConstantSchedule,
    CosineRestartsSchedule,
    CyclicalSchedule,
    ExponentialSchedule,
    InverseTimeSchedule,
    PlateauSchedule,
    StepSchedule,
    TrainConfig,
)

PLATEAU_THRESHOLD = 1e-4  # relative improvement that counts as better (torch's default)
_EPS = 1e-9  # guards floor() against 2.9999999 when the step sits exactly on a boundary


@dataclass
class PlateauState:
    """ReduceLROnPlateau's bookkeeping: multiply the LR by ``factor`` after ``patience`` stalled evaluations."""

    spec: PlateauSchedule
    best: float = math.inf
    bad: int = 0  # evaluations since the last improvement
    scale: float = 1.0  # product of the factors applied so far
    reductions: int = 0

    def update(self, val_loss: float) -> bool:
        """Record one validation loss; True when the LR was just reduced. NaN counts as no improvement."""
        if val_loss < self.best * (1 - PLATEAU_THRESHOLD):
            self.best = val_loss
            self.bad = 0
            return False
        self.bad += 1
        if self.bad > self.spec.patience:
            self.bad = 0
            self.scale *= self.spec.factor
            self.reductions += 1
            return True
        return False

    def apply(self, lr: float) -> float:
        """The reduced LR, never below ``min_lr`` (and never raised to it)."""
        return max(lr * self.scale, min(self.spec.min_lr, lr))


def _schedule_factor(schedule, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base LR at ``step`` (0-based), before warm-up, in [0, 1] (cyclical: relative to lr0)."""
    if isinstance(schedule, (ConstantSchedule, PlateauSchedule)):
        return 1.0
    t = step / steps_per_epoch  # epochs
    if isinstance(schedule, StepSchedule):
        return schedule.gamma ** math.floor(step / (schedule.every_epochs * steps_per_epoch) + _EPS)
    if isinstance(schedule, ExponentialSchedule):
        return math.exp(-schedule.k * t)
    if isinstance(schedule, InverseTimeSchedule):
        return 1.0 / (1.0 + schedule.k * t)
    raise TypeError(f"schedule {schedule.kind!r} has no plain factor")


def _cosine_position(schedule: CosineRestartsSchedule, step: int, steps_per_epoch: int) -> float:
    """Position in [0, 1) within the current SGDR period."""
    period = schedule.period_epochs * steps_per_epoch  # steps
    t = float(step)
    mult = schedule.period_mult
    if mult == 1.0:
        t = math.fmod(t, period)
    else:
        n = int(math.log(t / period * (mult - 1) + 1, mult))
        t -= period * (mult**n - 1) / (mult - 1)
        period *= mult**n
        while t >= period - _EPS * period:  # float drift at a restart
            t -= period
            period *= mult
        while t < 0:
            period /= mult
            t += period
    if t >= period - _EPS * period:
        t = 0.0
    return t / period


def lr_at(schedule, base_lr: float, step: int, steps_per_epoch: int, warmup_steps: int = 0,
          plateau: PlateauState | None = None) -> float:
    """The learning rate of the step after ``step`` completed steps.

    Args:
        schedule: a ``ScheduleSpec``.
        base_lr: lr0, the optimizer's LR (or the live override).
        step: completed steps, from 0.
        steps_per_epoch: optimizer steps in one pass over the training set (>= 1).
        warmup_steps: linear warm-up length in steps (0: none).
        plateau: the plateau schedule's state; ignored by the other kinds.
    """
    steps_per_epoch = max(1, steps_per_epoch)
    if isinstance(schedule, CosineRestartsSchedule):
        pos = _cosine_position(schedule, step, steps_per_epoch)
        lr = schedule.min_lr + (base_lr - schedule.min_lr) * (1 + math.cos(math.pi * pos)) / 2
    elif isinstance(schedule, CyclicalSchedule):
        period = schedule.period_epochs * steps_per_epoch
        pos = math.fmod(step, period) / period
        lr = schedule.min_lr + (base_lr - schedule.min_lr) * max(0.0, 1 - abs(2 * pos - 1))
    else:
        lr = base_lr * _schedule_factor(schedule, step, steps_per_epoch)
        if plateau is not None and isinstance(schedule, PlateauSchedule):
            lr = plateau.apply(lr)
    if step < warmup_steps:
        lr *= (step + 1) / warmup_steps
    return lr


def schedule_note(schedule) -> str | None:
    """A caption for a schedule whose curve cannot be drawn ahead of time."""
    if isinstance(schedule, PlateauSchedule):
        return (
            f"plateau: the LR is multiplied by {schedule.factor:g} whenever the validation loss has not improved "
            f"for {schedule.patience} evaluations (never below {schedule.min_lr:g}); drawn as constant until then"
        )
    return None


def lr_curve(train: TrainConfig, steps_per_epoch: int, total_steps: int, max_points: int = 500) -> list[tuple[int, float]]:
    """``(step, lr)`` pairs for plotting: step k = 1, 2, ... uses ``lr``; at most ``max_points`` pairs.

    The first and last steps are always included; in between the steps are evenly
    spaced. For the perceptron the rate includes its ``tau / (tau + epoch)`` decay.
    A plateau schedule is drawn as constant (see :func:`schedule_note`).
    """
    total_steps = max(0, int(total_steps))
    if total_steps == 0:
        return []
    if total_steps <= max_points:
        steps = range(total_steps)
    else:
        last = total_steps - 1
        steps = sorted({round(i * last / (max_points - 1)) for i in range(max_points)})
    base = train.optimizer.lr
    tau = getattr(train.optimizer, "tau", None) if train.optimizer.kind == "perceptron" else None
    spe = max(1, steps_per_epoch)
    out = []
    for s in steps:
        lr = lr_at(train.schedule, base, s, spe, train.warmup_steps)
        if tau is not None:
            lr *= tau / (tau + s // spe)
        out.append((s + 1, lr))
    return out
