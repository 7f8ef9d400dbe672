"""The trainer, with torch as the oracle: same model, same batches, same torch.optim -> same weights."""

import copy
import math

import pydantic
import pytest
import torch
import torch.nn.functional as F

from server.datasets import Dataset
from server.schedules import lr_at
from server.schemas import Experiment
from server.trainer import EvalResult, ExperimentError, IntervalMetrics, StepResult, Trainer

MLP = [
    {"kind": "linear", "name": "hidden", "out_features": 8, "activation": "tanh"},
    {"kind": "linear", "name": "out", "out_features": 3},
]
UNIT = [{"kind": "linear", "name": "unit", "out_features": 1, "activation": "sign"}]


def blobs(n_train=60, n_val=30, classes=3, seed=0) -> Dataset:
    """Three overlapping 2D Gaussian blobs, small enough for dozens of trainers per second."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[1.0, 0.0], [-0.5, 0.9], [-0.5, -0.9]])[:classes]

    def sample(n):
        y = torch.arange(n) % classes
        return centers[y] + 0.6 * torch.randn(n, 2, generator=g), y

    (xt, yt), (xv, yv) = sample(n_train), sample(n_val)
    return Dataset(
        name="blobs", kind="2d", x_train=xt, y_train=yt, x_val=xv, y_val=yv,
        classes=[str(c) for c in range(classes)], input_shape=(2,), mean=None, std=None, source="test", licence="none",
    )


def experiment(layers=MLP, *, data=None, **train) -> Experiment:
    train.setdefault("device", "cpu")
    return Experiment.model_validate({"data": data or {"name": "blobs"}, "network": {"layers": layers}, "train": train})


def run(trainer: Trainer) -> list[StepResult]:
    results = []
    while not trainer.done:
        results.append(trainer.step())
    return results


# --- every optimizer through the trainer == the same torch.optim ---------------------

TORCH_OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.3),
    "momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    "nesterov": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.8, nesterov=True),
    "adagrad": lambda ps: torch.optim.Adagrad(ps, lr=0.1, eps=1e-10),
    "rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-8, momentum=0.5),
    "adam": lambda ps: torch.optim.Adam(ps, lr=0.05, betas=(0.8, 0.99), eps=1e-8),
    "adamw": lambda ps: torch.optim.AdamW(
        [{"params": [p for p in ps if p.ndim >= 2]}, {"params": [p for p in ps if p.ndim < 2], "weight_decay": 0.0}],
        lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1,
    ),
    "lbfgs": lambda ps: torch.optim.LBFGS(ps, lr=0.5, history_size=5, max_iter=4),
}
SPECS = {
    "sgd": {"kind": "sgd", "lr": 0.3},
    "momentum": {"kind": "momentum", "lr": 0.1, "momentum": 0.9},
    "nesterov": {"kind": "nesterov", "lr": 0.1, "momentum": 0.8},
    "adagrad": {"kind": "adagrad", "lr": 0.1},
    "rmsprop": {"kind": "rmsprop", "lr": 0.01, "alpha": 0.9, "momentum": 0.5},
    "adam": {"kind": "adam", "lr": 0.05, "beta1": 0.8, "beta2": 0.99},
    "adamw": {"kind": "adamw", "lr": 0.05, "weight_decay": 0.1},
    "lbfgs": {"kind": "lbfgs", "lr": 0.5, "history_size": 5, "max_iter": 4},
}


def reference_run(trainer: Trainer, make_opt, steps: int, *, l2=0.0, l1=0.0, clip=None, loss_fn=F.cross_entropy):
    """The bare torch loop on a copy of the trainer's initial model, full batch."""
    model = copy.deepcopy(trainer.model)
    params = list(model.parameters())
    opt = make_opt(params)
    x, y = trainer.dataset.x_train, trainer.dataset.y_train

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        if l2:
            loss = loss + l2 / 2 * sum((p**2).sum() for p in params if p.ndim >= 2)
        if l1:
            loss = loss + l1 * sum(p.abs().sum() for p in params if p.ndim >= 2)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        return loss

    for _ in range(steps):
        if isinstance(opt, torch.optim.LBFGS):
            opt.step(closure)
        else:
            closure()
            opt.step()
    return model


def assert_same_weights(a, b, atol=1e-6):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=atol, rtol=1e-5), name


@pytest.mark.parametrize("kind", list(SPECS))
def test_each_optimizer_matches_torch(kind):
    # The autograd path, weight for weight; the fused NumPy path is compared with it in test_fused_mlp.py.
    steps = 6
    trainer = Trainer(experiment(optimizer=SPECS[kind], batch_size="full", max_steps=steps), dataset=blobs(),
                      fused=False)
    initial = [p.detach().clone() for p in trainer.model.parameters()]
    ref = reference_run(trainer, TORCH_OPTIMIZERS[kind], steps)
    results = run(trainer)
    assert len(results) == steps and trainer.stop.reason == "finished"
    assert_same_weights(trainer.model, ref)
    assert all(not torch.equal(p, q) for p, q in zip(trainer.model.parameters(), initial))  # it did train


def test_l2_gradient_equals_torch_weight_decay_on_sgd():
    """l2/2 * sum(w^2) in the loss == SGD(weight_decay=l2) on the weights (biases undecayed)."""
    steps, l2 = 5, 0.3
    trainer = Trainer(experiment(optimizer={"kind": "sgd", "lr": 0.2}, l2=l2, batch_size="full", max_steps=steps),
                      dataset=blobs())
    model = copy.deepcopy(trainer.model)
    ps = list(model.parameters())
    opt = torch.optim.SGD([{"params": [p for p in ps if p.ndim >= 2], "weight_decay": l2},
                           {"params": [p for p in ps if p.ndim < 2]}], lr=0.2)
    x, y = trainer.dataset.x_train, trainer.dataset.y_train
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    run(trainer)
    assert_same_weights(trainer.model, model)


def test_l1_and_grad_clip_match_the_bare_loop():
    steps = 5
    trainer = Trainer(
        experiment(optimizer={"kind": "momentum", "lr": 0.5}, l1=0.01, grad_clip=0.05, batch_size="full", max_steps=steps),
        dataset=blobs(),
    )
    ref = reference_run(trainer, lambda ps: torch.optim.SGD(ps, lr=0.5, momentum=0.9), steps, l1=0.01, clip=0.05)
    run(trainer)
    assert_same_weights(trainer.model, ref)


@pytest.mark.parametrize("loss", ["mse", "hinge"])
def test_other_losses_match_the_bare_loop(loss):
    from server.losses import build_objective

    steps = 4
    trainer = Trainer(experiment(optimizer={"kind": "sgd", "lr": 0.2}, loss=loss, batch_size="full", max_steps=steps),
                      dataset=blobs())
    ref = reference_run(trainer, lambda ps: torch.optim.SGD(ps, lr=0.2), steps, loss_fn=build_objective(loss, 3).loss)
    run(trainer)
    assert_same_weights(trainer.model, ref)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "hinge"])
def test_single_output_binary_networks_learn_separable_blobs(loss):
    layers = [{"kind": "linear", "name": "out", "out_features": 1}]
    trainer = Trainer(experiment(layers, optimizer={"kind": "adam", "lr": 0.05}, loss=loss, batch_size=16, epochs=15),
                      dataset=blobs(classes=2, n_train=80, n_val=40))
    run(trainer)
    assert trainer.evaluate("train").accuracy > 0.9


# --- the perceptron ----------------------------------------------------------------


def perceptron(data, epochs=10, batch_size=1, **opt):
    return Trainer(experiment(UNIT, data=data, optimizer={"kind": "perceptron", **opt}, batch_size=batch_size,
                              epochs=epochs, log_every=50))


def test_perceptron_reaches_zero_training_errors_on_separable_gaussians():
    trainer = perceptron({"name": "gaussians", "noise": 0.05})
    run(trainer)
    assert trainer.evaluate("train").accuracy == 1.0
    assert trainer.evaluate("train").loss == 0.0  # the reported loss is the 0-1 loss


def test_perceptron_never_reaches_zero_errors_on_xor():
    trainer = perceptron({"name": "xor", "noise": 0.05}, epochs=8)
    accuracies = []
    while not trainer.done:
        result = trainer.step()
        if result.evaluation is not None:
            accuracies.append(trainer.evaluate("train").accuracy)
    assert len(accuracies) == 8
    assert max(accuracies) < 0.8  # a line gets at most about 3 of the 4 quadrants right


def test_perceptron_batch_rule_sums_over_the_batch_and_decays_per_epoch():
    trainer = perceptron({"name": "gaussians"}, epochs=3, batch_size="full", lr=0.5, tau=2.0)
    lin = trainer.model.blocks["unit"].core
    x, y = trainer.dataset.x_train, trainer.dataset.y_train
    for epoch in range(3):
        w, b = lin.weight.detach().clone(), lin.bias.detach().clone()
        out = torch.where(x @ w.T + b >= 0, 1.0, -1.0)
        err = (y.float() * 2 - 1) - out[:, 0]
        alpha = 0.5 * 2.0 / (2.0 + epoch)
        trainer.step()
        torch.testing.assert_close(lin.weight.detach(), w + alpha * (err @ x)[None])
        torch.testing.assert_close(lin.bias.detach(), b + alpha * err.sum()[None])


@pytest.mark.parametrize(
    "layers, data, train, match",
    [
        (MLP[:1] + UNIT, {"name": "gaussians"}, {}, "single linear unit"),
        (UNIT, {"name": "blobs3"}, {}, "two classes"),
        ([{"kind": "linear", "name": "unit", "out_features": 1, "activation": "tanh"}], {"name": "gaussians"}, {},
         "activation is tanh"),
        (UNIT, {"name": "gaussians"}, {"l2": 0.1}, "l2=0.1"),
    ],
)
def test_perceptron_misuse_is_an_experiment_error(layers, data, train, match):
    dataset = blobs(classes=3) if data["name"] == "blobs3" else None
    with pytest.raises(ExperimentError, match=match):
        Trainer(experiment(layers, data=data, optimizer={"kind": "perceptron"}, **train), dataset=dataset)


# --- reproducibility ------------------------------------------------------------------


def test_same_document_and_seed_give_bitwise_identical_losses_even_interleaved():
    layers = [
        {"kind": "linear", "name": "hidden", "out_features": 16, "activation": "relu"},
        {"kind": "dropout", "name": "drop", "p": 0.3},
        {"kind": "linear", "name": "out", "out_features": 3},
    ]
    data = {"name": "blobs", "augmentation": {"noise_std": 0.1}}

    def make(seed=0):
        return Trainer(experiment(layers, data=data, optimizer={"kind": "adam", "lr": 0.01}, batch_size=8,
                                  max_steps=30, seed=seed), dataset=blobs())

    a, b = make(), make()
    la, lb = [], []
    for _ in range(30):  # interleaved, as the server's scheduler runs them
        la.append(a.step().loss)
        torch.rand(3)  # someone else drawing from the global generator in between
        lb.append(b.step().loss)
    assert torch.equal(torch.stack(la), torch.stack(lb))
    c = make(seed=1)
    lc = torch.stack([c.step().loss for _ in range(30)])
    assert not torch.equal(torch.stack(la), lc)


# --- health -------------------------------------------------------------------------


def test_nan_or_inf_loss_stops_with_advice_about_the_learning_rate():
    layers = [{"kind": "linear", "name": "h", "out_features": 32, "activation": "relu"},
              {"kind": "linear", "name": "out", "out_features": 10}]
    trainer = Trainer(experiment(layers, data={"name": "digits"}, optimizer={"kind": "sgd", "lr": 1e6}, loss="mse",
                                 max_steps=200, log_every=10))
    results = run(trainer)
    assert trainer.stop.reason == "non_finite"
    assert results[-1].stop is trainer.stop and results[-1].metrics is not None
    assert len(results) == 10  # found at the first metrics point
    message = trainer.stop.message
    assert "learning rate" in message and "1e+06" in message
    bad_step = int(message.split("at step ")[1].split(".")[0])
    losses = torch.stack([r.loss for r in results])
    assert torch.isfinite(losses[: bad_step - 1]).all() and not torch.isfinite(losses[bad_step - 1])


def test_a_growing_loss_stops_as_exploded():
    layers = [{"kind": "linear", "name": "out", "out_features": 3}]
    trainer = Trainer(experiment(layers, optimizer={"kind": "sgd", "lr": 8.0}, loss="mse", batch_size="full",
                                 max_steps=100, log_every=5), dataset=blobs())
    results = run(trainer)
    assert trainer.stop.reason == "exploded"
    assert len(results) == 5
    mean = results[-1].metrics.train_loss
    assert math.isfinite(mean) and mean > 3 * trainer.initial_loss
    assert "learning rate" in trainer.stop.message and f"{trainer.initial_loss:.4g}" in trainer.stop.message


def test_early_stopping_after_patience_evaluations_without_improvement():
    trainer = Trainer(experiment(optimizer={"kind": "sgd", "lr": 1e-6}, batch_size="full", max_steps=100, eval_every=1,
                                 early_stopping={"patience": 3, "min_delta": 0.01}), dataset=blobs())
    results = run(trainer)
    assert trainer.stop.reason == "early_stopping"
    assert len(results) == 4  # the first evaluation sets the best, three more fail to beat it by 0.01
    assert all(r.evaluation is not None for r in results)
    assert results[-1].metrics is not None  # the ending step always carries metrics


def test_tiny_learning_rate_leaves_the_loss_flat():
    layers = [{"kind": "linear", "name": "h", "out_features": 32, "activation": "relu"},
              {"kind": "linear", "name": "out", "out_features": 10}]
    trainer = Trainer(experiment(layers, data={"name": "digits"}, optimizer={"kind": "sgd", "lr": 1e-6},
                                 batch_size="full", max_steps=20))
    losses = torch.stack([r.loss for r in run(trainer)])
    assert (losses - losses[0]).abs().max() < 1e-4


def test_initial_loss_is_ln10_with_small_init_on_mnist():
    small = {"weight_init": {"kind": "normal", "std": 0.01}, "bias_init": {"kind": "normal", "std": 0.01}}
    layers = [{"kind": "linear", "name": "h", "out_features": 64, "activation": "relu", **small},
              {"kind": "linear", "name": "out", "out_features": 10, **small}]
    trainer = Trainer(experiment(layers, data={"name": "mnist"}, optimizer={"kind": "sgd", "lr": 0.01}, max_steps=1))
    run(trainer)
    assert trainer.initial_loss == pytest.approx(math.log(10), abs=0.1)


def test_overfits_twenty_examples():
    layers = [{"kind": "linear", "name": "h", "out_features": 64, "activation": "relu"},
              {"kind": "linear", "name": "out", "out_features": 10}]
    trainer = Trainer(experiment(layers, data={"name": "mnist", "train_subset": 20}, optimizer={"kind": "adam", "lr": 0.01},
                                 batch_size="full", max_steps=100, eval_every=100))
    assert trainer.n_train == 20
    results = run(trainer)
    assert trainer.evaluate("train").accuracy == 1.0
    assert results[-1].metrics.train_acc == 1.0


# --- metrics, evaluation, stopping ---------------------------------------------------------


def test_metrics_and_evaluation_cadence():
    trainer = Trainer(experiment(optimizer={"kind": "sgd", "lr": 0.1}, batch_size=16, max_steps=10, log_every=4),
                      dataset=blobs())
    assert (trainer.batch_size, trainer.steps_per_epoch, trainer.total_steps) == (16, 3, 10)  # 60 // 16, last batch dropped
    results = run(trainer)
    assert [r.step for r in results if r.metrics] == [4, 8, 10]
    assert [r.step for r in results if r.evaluation] == [3, 6, 9, 10]  # epoch ends, and the final step
    assert [r.metrics.steps for r in results if r.metrics] == [4, 4, 2]
    losses = torch.stack([r.loss for r in results])
    means = [r.metrics.train_loss for r in results if r.metrics]
    assert means == pytest.approx([losses[:4].mean().item(), losses[4:8].mean().item(), losses[8:].mean().item()])
    for r in results:
        assert r.loss.ndim == 0 and not r.loss.requires_grad and r.batch_size == 16
        assert r.epoch == pytest.approx(r.step / 3)
        if r.metrics:
            assert isinstance(r.metrics, IntervalMetrics)
            assert 0 <= r.metrics.train_acc <= 1 and r.metrics.examples_per_s > 0
    assert results[-1].stop.reason == "finished" and all(r.stop is None for r in results[:-1])
    assert trainer.initial_loss == pytest.approx(results[0].loss.item())
    with pytest.raises(RuntimeError, match="ended"):
        trainer.step()


def test_epochs_set_the_run_length():
    trainer = Trainer(experiment(optimizer={"kind": "sgd", "lr": 0.1}, batch_size=20, epochs=2.5), dataset=blobs())
    assert trainer.total_steps == 8  # ceil(2.5 * 3)
    assert len(run(trainer)) == 8


def test_train_accuracy_counts_the_interval_examples():
    trainer = Trainer(experiment(optimizer={"kind": "sgd", "lr": 1e-9}, batch_size="full", max_steps=3, log_every=3),
                      dataset=blobs())
    expected = (trainer.model(trainer.dataset.x_train).argmax(1) == trainer.dataset.y_train).float().mean().item()
    results = run(trainer)
    assert results[-1].metrics.train_acc == pytest.approx(expected)


def test_evaluate_is_batched_and_equals_one_big_forward():
    trainer = Trainer(experiment(optimizer={"kind": "sgd", "lr": 0.1}, max_steps=1), dataset=blobs(n_val=2500))
    ev = trainer.evaluate()
    with torch.no_grad():
        out = trainer.model(trainer.dataset.x_val)
    assert isinstance(ev, EvalResult) and ev.n == 2500
    assert ev.loss == pytest.approx(F.cross_entropy(out, trainer.dataset.y_val).item(), rel=1e-5)
    assert ev.accuracy == pytest.approx((out.argmax(1) == trainer.dataset.y_val).float().mean().item())
    assert trainer.model.training  # back in training mode


def test_request_stop_ends_the_run():
    trainer = Trainer(experiment(optimizer={"kind": "sgd", "lr": 0.1}, max_steps=50), dataset=blobs())
    trainer.step()
    trainer.request_stop()
    assert trainer.done and trainer.stop.reason == "stopped"
    with pytest.raises(RuntimeError):
        trainer.step()


def test_schedule_and_warmup_set_the_lr_of_each_step():
    trainer = Trainer(experiment(optimizer={"kind": "sgd", "lr": 0.4}, schedule={"kind": "step", "every_epochs": 1,
                                 "gamma": 0.5}, warmup_steps=2, batch_size=20, max_steps=9), dataset=blobs())
    results = run(trainer)
    assert [r.lr for r in results] == pytest.approx([lr_at(trainer.config.schedule, 0.4, k, 3, 2) for k in range(9)])
    assert [r.lr for r in results][:4] == pytest.approx([0.2, 0.4, 0.4, 0.2])


def test_plateau_schedule_is_fed_by_the_validation_loss():
    trainer = Trainer(experiment(optimizer={"kind": "sgd", "lr": 0.1}, schedule={"kind": "plateau", "factor": 0.5,
                                 "patience": 0}, batch_size="full", max_steps=5, eval_every=1), dataset=blobs())
    # lr 0.1 on full batch improves the val loss: no reduction while it does
    run(trainer)
    assert trainer.lr == 0.1
    stuck = Trainer(experiment(optimizer={"kind": "sgd", "lr": 1e-9}, schedule={"kind": "plateau", "factor": 0.5,
                               "patience": 0}, batch_size="full", max_steps=4, eval_every=1), dataset=blobs())
    lrs = [r.lr for r in run(stuck)]
    assert lrs == pytest.approx([1e-9, 1e-9, 5e-10, 2.5e-10])  # each stalled evaluation halves it
    assert stuck.optimizer.param_groups[0]["lr"] == pytest.approx(1.25e-10)


# --- EMA, freeze, live changes -------------------------------------------------------------


def test_ema_evaluation_uses_a_manual_exponential_average():
    decay = 0.8
    trainer = Trainer(experiment(optimizer={"kind": "sgd", "lr": 0.5}, ema_decay=decay, batch_size="full", max_steps=6),
                      dataset=blobs())
    ema = None
    for _ in range(6):
        trainer.step()
        current = [p.detach().clone() for p in trainer.model.parameters()]
        ema = current if ema is None else [decay * e + (1 - decay) * c for e, c in zip(ema, current)]
    for e, p in zip(ema, trainer.eval_model().parameters()):
        torch.testing.assert_close(p, e)
    assert trainer.eval_model() is not trainer.model
    x, y = trainer.dataset.x_val, trainer.dataset.y_val
    with torch.no_grad():
        raw = F.cross_entropy(trainer.model(x), y).item()
        averaged = F.cross_entropy(trainer.eval_model()(x), y).item()
    ev = trainer.evaluate()
    assert ev.loss == pytest.approx(averaged, rel=1e-5)
    assert ev.loss != pytest.approx(raw, rel=1e-4)


def test_freeze_keeps_a_layer_identical():
    trainer = Trainer(experiment(optimizer={"kind": "adam", "lr": 0.05}, freeze=["hidden"], max_steps=5), dataset=blobs())
    hidden = [p.detach().clone() for p in trainer.model.blocks["hidden"].parameters()]
    out = [p.detach().clone() for p in trainer.model.blocks["out"].parameters()]
    run(trainer)
    assert all(torch.equal(a, b) for a, b in zip(hidden, trainer.model.blocks["hidden"].parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(out, trainer.model.blocks["out"].parameters()))
    assert sum(len(g["params"]) for g in trainer.optimizer.param_groups) == 2


def test_freeze_of_an_unknown_layer_is_an_experiment_error():
    # Refused when the document is validated (issue 9: it used to pass and fail after queueing), naming the layers.
    with pytest.raises(pydantic.ValidationError, match="'conv9'.*hidden, out"):
        experiment(freeze=["conv9"])
    with pytest.raises(ExperimentError, match="no trainable parameters"):
        Trainer(experiment(freeze=["hidden", "out"]), dataset=blobs())


def test_set_hyperparams_changes_the_optimizer_live():
    layers = MLP[:1] + [{"kind": "dropout", "name": "drop", "p": 0.5}] + MLP[1:]
    trainer = Trainer(experiment(layers, optimizer={"kind": "momentum", "lr": 0.1, "momentum": 0.9}, max_steps=20),
                      dataset=blobs())
    trainer.step()
    applied = trainer.set_hyperparams(lr=0.02, momentum=0.5, weight_decay=0.01, dropout=0.2)
    assert applied == {"lr": 0.02, "momentum": 0.5, "weight_decay": 0.01, "dropout": 0.2}
    group = trainer.optimizer.param_groups[0]
    assert group["lr"] == 0.02 and group["momentum"] == 0.5
    assert trainer.l2 == 0.01
    assert all(m.p == 0.2 for m in trainer.model.modules() if isinstance(m, torch.nn.Dropout))
    assert trainer.step().lr == 0.02


@pytest.mark.parametrize(
    "values, match",
    [
        ({"lr": -0.1, "momentum": 0.1}, "lr must be a positive"),
        ({"lr": 0.05, "momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"lr": 0.05, "weight_decay": -1}, "weight_decay must be"),
        ({"lr": 0.05, "dropout": 0.3}, "no dropout layer"),
    ],
)
def test_invalid_hyperparams_change_nothing(values, match):
    """One bad value refuses the whole call: the valid ones beside it are not applied either."""
    trainer = Trainer(experiment(optimizer={"kind": "momentum", "lr": 0.1, "momentum": 0.9}, max_steps=5), dataset=blobs())
    with pytest.raises(ValueError, match=match):
        trainer.set_hyperparams(**values)
    group = trainer.optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], trainer.l2) == (0.1, 0.9, 0.0)


def test_momentum_sets_beta1_for_adam_and_is_refused_without_momentum():
    adam = Trainer(experiment(optimizer={"kind": "adamw", "lr": 0.01}, max_steps=5), dataset=blobs())
    adam.set_hyperparams(momentum=0.7, weight_decay=0.2)
    assert all(g["betas"] == (0.7, 0.999) for g in adam.optimizer.param_groups)
    assert [g["weight_decay"] for g in adam.optimizer.param_groups] == [0.2, 0.0]  # weights only
    adam.step()
    adagrad = Trainer(experiment(optimizer={"kind": "adagrad"}, max_steps=5), dataset=blobs())
    with pytest.raises(ValueError, match="adagrad optimizer has no momentum"):
        adagrad.set_hyperparams(momentum=0.5)


def test_rmsprop_momentum_can_be_switched_on_after_the_first_step():
    trainer = Trainer(experiment(optimizer={"kind": "rmsprop", "lr": 0.01}, max_steps=5), dataset=blobs())
    trainer.step()
    trainer.set_hyperparams(momentum=0.9)
    trainer.step()
    assert trainer.optimizer.param_groups[0]["momentum"] == 0.9


# --- construction ----------------------------------------------------------------------


def test_data_is_resident_and_the_run_shape_is_known():
    trainer = Trainer(experiment(max_steps=3), dataset=blobs())
    assert trainer.device == torch.device("cpu")
    assert trainer.dataset.x_train.device == trainer.device
    assert all(p.device == trainer.device for p in trainer.model.parameters())
    assert trainer.summary.total_params == sum(p.numel() for p in trainer.model.parameters())


def test_lsuv_layers_are_initialized_on_a_training_batch():
    layers = [{"kind": "linear", "name": "hidden", "out_features": 32, "activation": "tanh", "weight_init": "lsuv"},
              {"kind": "linear", "name": "out", "out_features": 3}]
    trainer = Trainer(experiment(layers, max_steps=1), dataset=blobs(n_train=200))
    with torch.no_grad():
        pre = trainer.model.blocks["hidden"].core(trainer.dataset.x_train)
    assert pre.var().item() == pytest.approx(1.0, abs=0.1)


def test_validation_needing_options_require_a_validation_split():
    empty_val = blobs()
    empty_val.x_val, empty_val.y_val = empty_val.x_val[:0], empty_val.y_val[:0]
    with pytest.raises(ExperimentError, match="val_fraction"):
        Trainer(experiment(early_stopping={"patience": 2}), dataset=empty_val)
    trainer = Trainer(experiment(max_steps=2, batch_size="full"), dataset=empty_val)
    results = run(trainer)
    assert all(r.evaluation is None for r in results)
    assert math.isnan(trainer.evaluate().loss) and trainer.evaluate().n == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_a_gpu_is_a_clear_error():
    with pytest.raises(ExperimentError, match="no CUDA GPU.*Fix"):
        Trainer(experiment(device="cuda"), dataset=blobs())
    assert Trainer(experiment(device="auto"), dataset=blobs()).device.type == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_matches_cpu():
    def losses(device):
        trainer = Trainer(experiment(optimizer={"kind": "sgd", "lr": 0.3}, batch_size="full", max_steps=5),
                          dataset=blobs(), device=device)
        assert trainer.dataset.x_train.device.type == device
        return torch.stack([r.loss for r in run(trainer)]).cpu()

    torch.testing.assert_close(losses("cuda"), losses("cpu"), rtol=1e-4, atol=1e-5)
