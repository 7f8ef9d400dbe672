"""Optimization lessons, proven with PyTorch: batch size and noise (8), the optimizer race (9),
learning-rate schedules (10) and babysitting (11)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fastapi import Response
from lesson_helpers import LN10, step_docs, train

from server import protocol
from server.api.routes.schedule import SchedulePreviewRequest, schedule_preview
from server.lessons import optim_race
from server.lessons.guide import compare_documents
from server.messages import validate_message
from server.runner import RunSession
from server.schedules import lr_curve
from server.trainer import Trainer

# ---------------------------------------------------------------------------
# Lesson 8: the noise of the loss curve falls with the batch size
# ---------------------------------------------------------------------------


def step_to_step_noise(losses: list[float]) -> float:
    """Mean |loss_t - loss_t-1| over the second half of a run: how much the curve jumps between steps."""
    tail = np.asarray(losses[len(losses) // 2:])
    return float(np.abs(np.diff(tail)).mean())


def test_loss_curve_noise_is_ordered_by_batch_size():
    sgd, mini, full = (train(document, 300) for document in step_docs("batch_size_noise")[1:4])
    assert [r.trainer.batch_size for r in (sgd, mini, full)] == [1, 32, sgd.trainer.n_train]
    noise = [step_to_step_noise(r.losses) for r in (sgd, mini, full)]
    # Averaging b examples divides the gradient's noise by sqrt(b): about 6x from 1 to 32, and full batch has none.
    assert noise[0] > 2.5 * noise[1] > 2.5 * 100 * noise[2], noise
    # Batch gradient descent at a small rate goes downhill at every step: a smooth, monotone curve.
    assert all(b <= a + 1e-6 for a, b in zip(full.losses, full.losses[1:]))
    assert all(math.isfinite(v) for v in sgd.losses)  # one example per step is noisy, not broken


def test_the_full_batch_loss_is_pytorchs_cross_entropy_over_the_training_set():
    full = step_docs("batch_size_noise")[3]
    trainer = Trainer(full, device="cpu")
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(trainer.model(trainer.dataset.x_train), trainer.dataset.y_train)
    assert float(trainer.step().loss) == pytest.approx(expected.item(), rel=1e-5)


# ---------------------------------------------------------------------------
# Lesson 9: the optimizer race on 2D functions, and on real data from the same initial weights
# ---------------------------------------------------------------------------


def torch_trajectory(fn: optim_race.TestFunction, make, steps: int) -> np.ndarray:
    """The oracle: a bare torch.optim loop from the function's start, ``(steps + 1, 2)``."""
    point = torch.tensor(fn.start, dtype=torch.float64, requires_grad=True)
    optimizer = make([point])
    points = [point.detach().clone()]
    for _ in range(steps):
        optimizer.zero_grad()
        fn.f(point).backward()
        optimizer.step()
        points.append(point.detach().clone())
    return torch.stack(points).numpy()


def test_the_race_runs_torch_optim_step_by_step():
    fn = optim_race.FUNCTIONS["valley"]
    race = optim_race.race("valley", steps=40)
    makers = {
        "sgd": lambda p: torch.optim.SGD(p, lr=fn.lrs["sgd"]),
        "momentum": lambda p: torch.optim.SGD(p, lr=fn.lrs["momentum"], momentum=0.9),
        "nesterov": lambda p: torch.optim.SGD(p, lr=fn.lrs["nesterov"], momentum=0.9, nesterov=True),
        "adagrad": lambda p: torch.optim.Adagrad(p, lr=fn.lrs["adagrad"]),
        "rmsprop": lambda p: torch.optim.RMSprop(p, lr=fn.lrs["rmsprop"]),
        "adam": lambda p: torch.optim.Adam(p, lr=fn.lrs["adam"]),
    }
    for kind, make in makers.items():
        np.testing.assert_allclose(race.trajectory(kind).points, torch_trajectory(fn, make, 40), rtol=1e-12, atol=1e-12,
                                   err_msg=kind)
        assert race.trajectory(kind).evaluations == 40


def test_adam_beats_sgd_in_the_narrow_valley_at_a_fixed_step_count():
    race = optim_race.race("valley", steps=100)
    sgd, momentum, adam, lbfgs = (race.trajectory(k) for k in ("sgd", "momentum", "adam", "lbfgs"))
    assert adam.final_loss < 0.01 * sgd.final_loss
    assert momentum.final_loss < sgd.final_loss  # momentum builds speed along the floor
    # SGD zig-zags across the steep direction: y changes sign at almost every step.
    y = sgd.points[1:30, 1]
    assert np.mean(np.sign(y[1:]) != np.sign(y[:-1])) > 0.9
    # SGD at any stable rate is slower than Adam here: the best it can do is limited by the condition number.
    for lr in (0.05, 0.1, 0.15, 0.19):
        assert optim_race.run_racer(race.function, "sgd", 100, lr).final_loss > adam.final_loss
    assert lbfgs.final_loss < 1e-8


def test_adaptive_methods_leave_the_saddle_while_sgd_and_momentum_linger():
    race = optim_race.race("saddle", steps=150)

    def escape_step(kind: str) -> int:
        points = race.trajectory(kind).points
        return int(np.argmax(np.abs(points[:, 1]) > 0.5))

    assert max(escape_step(k) for k in ("adagrad", "rmsprop", "adam")) <= 10
    assert min(escape_step(k) for k in ("sgd", "momentum")) >= 50
    assert all(race.trajectory(k).final_loss == pytest.approx(-0.25, abs=0.01) for k in optim_race.OPTIMIZERS)


def test_lbfgs_reaches_rosenbrocks_minimum_with_several_evaluations_per_step():
    race = optim_race.race("rosenbrock", steps=60, optimizers=("sgd", "lbfgs"))
    lbfgs = race.trajectory("lbfgs")
    np.testing.assert_allclose(lbfgs.points[-1], [1.0, 1.0], atol=1e-4)
    assert lbfgs.evaluations > 60
    assert race.trajectory("sgd").final_loss > 1.0


def test_a_racer_that_flies_off_is_stopped_and_marked():
    trajectory = optim_race.run_racer(optim_race.FUNCTIONS["valley"], "sgd", 200, lr=0.5)  # above 2/10: unstable
    assert trajectory.diverged_at is not None and len(trajectory.points) == trajectory.diverged_at
    assert np.isfinite(trajectory.points).all()


@pytest.mark.parametrize("args, message", [
    ({"function": "himmelblau"}, "unknown test function 'himmelblau'; choose one of valley, rosenbrock, saddle"),
    ({"function": "valley", "steps": 0}, "steps must be between 1 and 1000"),
    ({"function": "valley", "lr": -1.0}, "lr must be a positive number"),
    ({"function": "valley", "optimizers": ("sgd", "adadelta")}, "unknown optimizer"),
])
def test_bad_race_arguments_say_what_is_wrong(args, message):
    with pytest.raises(ValueError, match=message):
        optim_race.race(**args)


def test_the_race_view_sends_a_valid_message_from_any_run():
    session = RunSession(step_docs("optimizer_race")[0], run_id="race", device="cpu")
    (message,) = session.probe("optimizer_race", function="saddle", steps=20, lr=0.05)
    validate_message(protocol.Stamper("race").stamp(message))
    assert message["function"] == "saddle" and [r["optimizer"] for r in message["racers"]] == list(optim_race.OPTIMIZERS)
    assert all(len(r["points"]) == 21 and r["lr"] == 0.05 for r in message["racers"] if r["optimizer"] != "lbfgs")
    surface = protocol.decode_image(message["surface"])
    assert surface.shape == (optim_race.SURFACE_RESOLUTION,) * 2 and surface.max() == 255
    with pytest.raises(ValueError, match="optimizer_race: lr must be a float"):
        session.probe("optimizer_race", lr="fast")
    session.close()


def test_racing_on_real_data_starts_every_optimizer_from_the_same_weights_and_batches():
    documents = step_docs("optimizer_race")
    k, step = next((k, s) for k, s in enumerate(documents[0].lesson.steps, start=1) if s.compare)
    runs = compare_documents(documents[k], step.compare)
    assert {r.train.optimizer.kind for r in runs} >= {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}
    trainers = [Trainer(r, device="cpu") for r in (runs[0], runs[-1])]  # SGD and Adam
    first, last = (t.model.state_dict() for t in trainers)
    assert first.keys() == last.keys() and all(torch.equal(first[name], last[name]) for name in first)
    assert torch.equal(trainers[0].generator.get_state(), trainers[1].generator.get_state())  # same batch order


# ---------------------------------------------------------------------------
# Lesson 10: every schedule's curve is its formula, previewed and live
# ---------------------------------------------------------------------------


def formula(schedule, lr0: float, t: float) -> float:
    """The lecture's formula of each schedule at epoch t (the plateau one is constant until evaluations say otherwise)."""
    kind = schedule.kind
    if kind in ("constant", "plateau"):
        return lr0
    if kind == "step":
        return lr0 * schedule.gamma ** math.floor(t / schedule.every_epochs + 1e-9)
    if kind == "exponential":
        return lr0 * math.exp(-schedule.k * t)
    if kind == "inverse_time":
        return lr0 / (1 + schedule.k * t)
    if kind == "cosine_restarts":  # period_mult 1 in the preset
        position = (t % schedule.period_epochs) / schedule.period_epochs
        return schedule.min_lr + (lr0 - schedule.min_lr) * (1 + math.cos(math.pi * position)) / 2
    if kind == "cyclical":  # a triangle from min_lr up to lr0 and back, once per period
        position = (t % schedule.period_epochs) / schedule.period_epochs
        return schedule.min_lr + (lr0 - schedule.min_lr) * (1 - abs(2 * position - 1))
    raise AssertionError(kind)


def schedule_runs():
    documents = step_docs("lr_schedules")
    k, step = next((k, s) for k, s in enumerate(documents[0].lesson.steps, start=1) if s.compare)
    return compare_documents(documents[k], step.compare)


def test_each_schedules_previewed_curve_is_its_formula_and_the_live_lr_follows_it():
    runs = schedule_runs()
    assert len({r.train.schedule.kind for r in runs}) == 7
    for document in runs:
        trainer = Trainer(document, device="cpu")
        spe, total, lr0 = trainer.steps_per_epoch, trainer.total_steps, document.train.optimizer.lr
        # What the page draws before training: POST /api/schedule/preview (its handler, called directly).
        response = Response()
        preview = schedule_preview(SchedulePreviewRequest(train=document.train, steps_per_epoch=spe,
                                                          total_steps=total), response)
        assert [s for s, _ in preview] == list(range(1, total + 1))
        assert ("x-schedule-note" in response.headers) == (document.train.schedule.kind == "plateau")
        for step, lr in preview:
            assert lr == pytest.approx(formula(document.train.schedule, lr0, (step - 1) / spe), rel=1e-9, abs=1e-12), (
                document.name, step)
        if document.train.schedule.kind != "plateau":
            live = train(document, 4 * spe).lrs  # what the metrics chart draws
            assert live == pytest.approx([lr for _, lr in preview[:4 * spe]], rel=1e-12)


def test_the_step_and_cosine_schedules_agree_with_torchs_schedulers():
    """The oracle: torch.optim.lr_scheduler stepped once per optimizer step."""
    runs = {r.train.schedule.kind: r for r in schedule_runs()}
    for kind in ("step", "cosine_restarts", "cyclical"):
        document = runs[kind]
        trainer = Trainer(document, device="cpu")
        spe, total, lr0 = trainer.steps_per_epoch, trainer.total_steps, document.train.optimizer.lr
        schedule = document.train.schedule
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr0)
        if kind == "step":
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(schedule.every_epochs * spe),
                                                        gamma=schedule.gamma)
        elif kind == "cosine_restarts":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                optimizer, T_0=int(schedule.period_epochs * spe), eta_min=schedule.min_lr)
        else:
            half = int(schedule.period_epochs * spe / 2)
            scheduler = torch.optim.lr_scheduler.CyclicLR(optimizer, base_lr=schedule.min_lr, max_lr=lr0,
                                                          step_size_up=half, mode="triangular", cycle_momentum=False)
        expected = []
        for _ in range(total):
            expected.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        assert [lr for _, lr in lr_curve(document.train, spe, total, max_points=total)] == pytest.approx(expected, rel=1e-9)


def test_reduce_on_plateau_halves_the_lr_when_torchs_reducelronplateau_does():
    document = next(r for r in schedule_runs() if r.train.schedule.kind == "plateau")
    run = train(document)
    spe = run.trainer.steps_per_epoch
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=document.train.optimizer.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=document.train.schedule.factor,
                                                           patience=document.train.schedule.patience, threshold=1e-4)
    for step, val_loss in run.evaluations:
        scheduler.step(val_loss)
        if step < len(run.lrs):  # the LR of the step after the evaluation
            assert run.lrs[step] == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-12), step
    assert run.lrs[-1] < run.lrs[0] and len(run.evaluations) == run.trainer.total_steps // spe


# ---------------------------------------------------------------------------
# Lesson 11: babysitting facts
# ---------------------------------------------------------------------------


def test_the_first_loss_with_small_weights_is_ln_of_the_class_count():
    preset, *_ = step_docs("babysitting")
    trainer = Trainer(preset, device="cpu")
    with torch.no_grad():
        probs = torch.softmax(trainer.model(trainer.dataset.x_train), dim=1)
    assert torch.allclose(probs, torch.full_like(probs, 0.1), atol=0.005)  # near-zero scores: 1/10 for every class
    trainer.step()
    assert trainer.initial_loss == pytest.approx(LN10, abs=0.01)


def test_twenty_examples_are_memorized_to_a_training_accuracy_of_one():
    overfit = step_docs("babysitting")[2]
    run = train(overfit)
    assert run.trainer.n_train == 20
    assert run.trainer.evaluate("train").accuracy == 1.0


def test_lr_1e_minus_6_leaves_the_loss_flat_and_1e6_makes_it_nan_and_stops_the_run():
    too_low, too_high = step_docs("babysitting")[3:5]
    flat = train(too_low, 100)
    assert abs(flat.losses[-1] - flat.losses[0]) < 0.001 * flat.losses[0]
    session = RunSession(too_high, run_id="nan", device="cpu")
    messages = session.start()
    while not session.done:
        messages += session.advance(max_steps=50, max_seconds=60)
    final = next(m for m in messages if m["type"] == "final")
    assert final["stop_reason"] in ("non_finite", "exploded") and final["steps"] < 20
    assert any(m["type"] == "hint" and m["code"] == "lr_too_high" for m in messages)
    session.close()


def test_a_good_lr_moves_each_layer_by_1e_3_to_1e_2_of_its_size_per_step():
    good = step_docs("babysitting")[5]
    trainer = Trainer(good.model_copy(update={"train": good.train.model_copy(update={"max_steps": 400})}), device="cpu")
    for _ in range(399):
        trainer.step()
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.ndim >= 2}
    trainer.step()
    ratios = [(p.detach() - before[n]).norm().item() / before[n].norm().item()
              for n, p in trainer.model.named_parameters() if p.ndim >= 2]
    assert all(1e-3 < r < 2e-2 for r in ratios), ratios
    assert trainer.evaluate().accuracy > 0.95
