"""Schedules against torch.optim.lr_scheduler, stepped once per optimizer step."""

import math

import pytest
import torch

from server.schedules import PlateauState, lr_at, lr_curve, schedule_note
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

LR0 = 0.1


def torch_lrs(make_scheduler, steps: int, *, per: int = 1, momentum: float = 0.0) -> list[float]:
    """The LR torch uses for each of ``steps`` optimizer steps; the scheduler steps every ``per`` steps."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=LR0, momentum=momentum)
    sched = make_scheduler(opt)
    lrs = []
    for k in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if (k + 1) % per == 0:
            sched.step()
    return lrs


def ours(schedule, steps: int, spe: int, warmup: int = 0) -> list[float]:
    return [lr_at(schedule, LR0, k, spe, warmup) for k in range(steps)]


def test_constant():
    assert ours(ConstantSchedule(), 5, 3) == [LR0] * 5


@pytest.mark.parametrize("every, spe", [(2.0, 7), (0.5, 10), (3.0, 1)])
def test_step_matches_steplr(every, spe):
    size = round(every * spe)
    ref = torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=size, gamma=0.5), 120)
    assert ours(StepSchedule(every_epochs=every, gamma=0.5), 120, spe) == pytest.approx(ref, rel=1e-12)


def test_exponential_matches_exponentiallr_at_epoch_boundaries():
    k, spe = 0.3, 8
    ref = torch_lrs(lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=math.exp(-k)), 20 * spe, per=spe)
    got = ours(ExponentialSchedule(k=k), 20 * spe, spe)
    assert got[::spe] == pytest.approx(ref[::spe], rel=1e-9)
    # continuous in between: strictly decreasing
    assert all(a > b for a, b in zip(got, got[1:]))


def test_inverse_time():
    got = ours(InverseTimeSchedule(k=0.5), 30, 5)
    assert got == pytest.approx([LR0 / (1 + 0.5 * s / 5) for s in range(30)])


@pytest.mark.parametrize("period, mult, spe", [(2.0, 1.0, 5), (1.0, 2.0, 4), (3.0, 3.0, 2)])
def test_cosine_restarts_matches_sgdr(period, mult, spe):
    t0 = round(period * spe)
    ref = torch_lrs(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=t0, T_mult=int(mult), eta_min=0.001),
        150,
    )
    got = ours(CosineRestartsSchedule(period_epochs=period, period_mult=mult, min_lr=0.001), 150, spe)
    assert got == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_cyclical_matches_cycliclr_triangular():
    spe, period = 5, 4.0
    half = round(period * spe / 2)
    ref = torch_lrs(
        lambda o: torch.optim.lr_scheduler.CyclicLR(
            o, base_lr=1e-3, max_lr=LR0, step_size_up=half, mode="triangular", cycle_momentum=False
        ),
        100,
    )
    got = ours(CyclicalSchedule(min_lr=1e-3, period_epochs=period), 100, spe)
    assert got == pytest.approx(ref, rel=1e-9)


def test_warmup_ramps_linearly_then_follows_the_schedule():
    got = ours(ConstantSchedule(), 10, 3, warmup=4)
    assert got == pytest.approx([LR0 * 0.25, LR0 * 0.5, LR0 * 0.75, LR0] + [LR0] * 6)
    sched = StepSchedule(every_epochs=1, gamma=0.1)
    got = ours(sched, 6, 2, warmup=3)
    # steps 0, 1 are epoch 0 (lr0), step 2 is epoch 1 (lr0/10) and the last warm-up step (3/3)
    assert got == pytest.approx([LR0 / 3, LR0 * 2 / 3, LR0 * 0.1, LR0 * 0.1, LR0 * 0.01, LR0 * 0.01])


def test_plateau_matches_reduce_lr_on_plateau():
    spec = PlateauSchedule(factor=0.5, patience=2, min_lr=0.01)
    losses = [1.0, 0.9, 0.9, 0.95, 0.91, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, float("nan"), 0.8, 0.8, 0.8, 0.8]
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=LR0)
    ref_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2, min_lr=0.01)
    state = PlateauState(spec)
    for loss in losses:
        opt.step()
        ref_sched.step(loss)
        state.update(loss)
        assert lr_at(spec, LR0, 0, 1, plateau=state) == pytest.approx(opt.param_groups[0]["lr"])
    # 0.1 -> 0.05 -> 0.025 -> 0.0125 -> clamped at min_lr
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    assert state.reductions == 4


def test_plateau_without_state_is_constant_with_a_note():
    spec = PlateauSchedule()
    assert ours(spec, 5, 2) == [LR0] * 5
    assert "plateau" in schedule_note(spec)
    assert schedule_note(ConstantSchedule()) is None


def test_lr_curve_downsamples_and_keeps_the_ends():
    train = TrainConfig(optimizer={"kind": "sgd", "lr": LR0}, schedule={"kind": "step", "every_epochs": 1, "gamma": 0.5})
    curve = lr_curve(train, steps_per_epoch=100, total_steps=10_000, max_points=500)
    assert len(curve) <= 500
    assert curve[0] == (1, LR0)
    assert curve[-1][0] == 10_000
    assert curve[-1][1] == pytest.approx(LR0 * 0.5**99)
    assert [s for s, _ in curve] == sorted({s for s, _ in curve})
    small = lr_curve(train, steps_per_epoch=3, total_steps=7)
    assert small == [(k + 1, lr_at(train.schedule, LR0, k, 3)) for k in range(7)]
    assert lr_curve(train, 3, 0) == []


def test_lr_curve_includes_the_perceptron_decay():
    train = TrainConfig(optimizer={"kind": "perceptron", "lr": 1.0, "tau": 2.0})
    curve = lr_curve(train, steps_per_epoch=2, total_steps=6)
    assert [lr for _, lr in curve] == pytest.approx([1, 1, 2 / 3, 2 / 3, 0.5, 0.5])
