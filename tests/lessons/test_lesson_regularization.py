"""Activations (4), regularization (12), normalization (13) and reading the curves (14), proven with PyTorch
on the lesson presets' own documents."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from lesson_helpers import LN2, step_docs, train

from server.trainer import Trainer

# ---------------------------------------------------------------------------
# Lesson 4: sigmoid vs tanh at the start; ReLUs that die at a high learning rate
# ---------------------------------------------------------------------------

HIDDEN = ("h1", "h2", "h3", "h4")


def hidden_outputs(trainer: Trainer) -> list[torch.Tensor]:
    """Each hidden layer's output (after its activation) on the training set, ``(N, 16)`` each."""
    outputs, h = [], trainer.dataset.x_train
    with torch.no_grad():
        for name in HIDDEN:
            h = trainer.model.blocks[name](h)
            outputs.append(h)
    return outputs


def input_layer_gradient_share(trainer: Trainer) -> float:
    """||dL/dW_h1|| / ||dL/dW_h4|| on the training set: how much gradient survives the way back to the first layer."""
    model, data = trainer.model, trainer.dataset
    model.zero_grad()
    F.cross_entropy(model(data.x_train), data.y_train).backward()
    share = (model.blocks["h1"].core.weight.grad.norm() / model.blocks["h4"].core.weight.grad.norm()).item()
    model.zero_grad()
    return share


def test_sigmoid_outputs_are_not_zero_centred_and_its_gradient_fades_towards_the_input():
    sigmoid, tanh = (Trainer(d, device="cpu") for d in step_docs("activations_compared")[1:3])
    sigmoid_means = [h.mean().item() for h in hidden_outputs(sigmoid)]
    tanh_means = [h.mean().item() for h in hidden_outputs(tanh)]
    assert all(0.35 < m < 0.65 for m in sigmoid_means), sigmoid_means  # around 0.5: every output positive
    assert all(abs(m) < 0.15 for m in tanh_means), tanh_means
    # sigmoid' <= 1/4: three layers down, the first layer's gradient is a small share of the last's; tanh' <= 1.
    assert input_layer_gradient_share(sigmoid) < 0.1 * input_layer_gradient_share(tanh)


def dead_fraction(trainer: Trainer) -> float:
    """Share of hidden ReLUs that output 0 for every training example (they get no gradient, ever)."""
    dead = [(h > 0).sum(dim=0) == 0 for h in hidden_outputs(trainer)]
    return torch.cat(dead).float().mean().item()


def test_a_too_high_learning_rate_kills_relus():
    _, _, _, relu, relu_fast = step_docs("activations_compared")[:5]
    assert relu_fast.train.optimizer.lr == 10 * relu.train.optimizer.lr
    calm, fast = train(relu, 300), train(relu_fast, 300)
    assert dead_fraction(fast.trainer) > 2 * dead_fraction(calm.trainer)
    assert dead_fraction(fast.trainer) > 0.5
    assert calm.val_acc() > fast.val_acc()


# ---------------------------------------------------------------------------
# Lesson 12: dropout, L2 and augmentation narrow the gap of an overfitting network
# ---------------------------------------------------------------------------

STEPS = 300  # 30 points memorized: the validation loss has climbed far above the training loss by then


@pytest.fixture(scope="module")
def regularization_runs():
    base, dropout, l2, augmentation, early_stopping, averaging = step_docs("regularization")[1:7]
    return {"base": train(base, STEPS), "dropout": train(dropout, STEPS), "l2": train(l2, STEPS),
            "augmentation": train(augmentation, STEPS), "early_stopping": train(early_stopping, STEPS),
            "averaging": train(averaging, STEPS)}


def test_the_unregularized_network_memorizes_30_points_and_its_validation_loss_climbs(regularization_runs):
    base = regularization_runs["base"]
    assert base.trainer.evaluate("train").accuracy == 1.0
    assert base.gap() > 1.0
    best_val = min(loss for _, loss in base.evaluations)
    assert base.evaluations[-1][1] > 2 * best_val  # it got worse on new data while fitting the old


@pytest.mark.parametrize("method", ["dropout", "l2", "augmentation"])
def test_each_regularizer_cuts_the_gap_at_least_in_half(regularization_runs, method):
    assert regularization_runs[method].gap() < 0.5 * regularization_runs["base"].gap()


def test_dropout_is_inverted_kept_units_are_scaled_in_training_and_evaluation_is_untouched(regularization_runs):
    trainer = regularization_runs["dropout"].trainer
    layer = trainer.model.blocks["drop1"]
    x = torch.ones(2000, 256)
    torch.manual_seed(0)
    layer.train()
    dropped = layer(x)
    assert set(dropped.unique().tolist()) == {0.0, 2.0}  # p = 0.5: kept units x 1/(1 - p)
    assert dropped.mean().item() == pytest.approx(1.0, abs=0.01)  # the expectation is unchanged
    layer.eval()
    assert torch.equal(layer(x), x)


def test_early_stopping_ends_the_run_near_its_best_validation_loss(regularization_runs):
    run = regularization_runs["early_stopping"]
    assert run.trainer.stop.reason == "early_stopping" and run.trainer.step_count < STEPS
    patience = run.trainer.config.early_stopping.patience
    best_at = min(range(len(run.evaluations)), key=lambda i: run.evaluations[i][1])
    assert len(run.evaluations) - 1 - best_at == patience  # it stopped `patience` evaluations after the best


def test_weight_averaging_evaluates_an_exponential_average_of_the_weights(regularization_runs):
    trainer = regularization_runs["averaging"].trainer
    averaged, last = trainer.eval_model(), trainer.model
    assert averaged is not last
    weight = last.blocks["h1"].core.weight
    assert not torch.equal(averaged.blocks["h1"].core.weight, weight)
    # The oracle: torch's own EMA update rule, one more step of it, matches what the trainer keeps.
    before = averaged.blocks["h1"].core.weight.detach().clone()
    trainer.ema.update_parameters(last)
    decay = trainer.config.ema_decay
    expected = decay * before + (1 - decay) * weight.detach()
    assert torch.allclose(averaged.blocks["h1"].core.weight, expected, atol=1e-6)


# ---------------------------------------------------------------------------
# Lesson 13: batch norm's two modes, the high learning rate and the poor init it tolerates
# ---------------------------------------------------------------------------

BN_STEPS = 100


@pytest.fixture(scope="module")
def bn_runs():
    with_bn, without_bn, without_bn_slow, poor_init_without_bn, poor_init_with_bn = step_docs("batch_norm")[1:6]
    return {"bn": train(with_bn, BN_STEPS), "no_bn": train(without_bn, BN_STEPS),
            "no_bn_slow": train(without_bn_slow, BN_STEPS), "poor_no_bn": train(poor_init_without_bn, BN_STEPS),
            "poor_bn": train(poor_init_with_bn, BN_STEPS)}


def test_batch_norm_uses_batch_statistics_in_training_and_running_averages_in_evaluation(bn_runs):
    trainer = bn_runs["bn"].trainer
    norm = trainer.model.blocks["norm1"].core
    with torch.no_grad():
        x = trainer.model.blocks["conv1"](trainer.dataset.x_val[:64])
        norm.train()
        training_mode = norm(x)
        norm.eval()
        evaluation_mode = norm(x)
        norm.train()
        # The oracles: PyTorch's batch norm with the batch's statistics, and with the running ones.
        batch_stats = F.batch_norm(x, None, None, norm.weight, norm.bias, training=True, eps=norm.eps)
        running_stats = F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, training=False,
                                     eps=norm.eps)
    assert torch.allclose(training_mode, batch_stats, atol=1e-5)
    assert torch.allclose(evaluation_mode, running_stats, atol=1e-5)
    assert (training_mode - evaluation_mode).abs().max() > 1e-2  # the two modes differ
    per_channel = training_mode.transpose(0, 1).flatten(1)  # (C, N*H*W): normalized, then scaled by gamma
    assert torch.allclose(per_channel.mean(dim=1), norm.bias, atol=1e-4)


def test_batch_norm_permits_a_learning_rate_that_breaks_the_network_without_it(bn_runs):
    assert bn_runs["bn"].val_acc() > 0.85
    assert bn_runs["no_bn"].val_acc() < 0.3
    assert bn_runs["no_bn_slow"].val_acc() > 0.8  # without batch norm it needs a 5x smaller rate


def test_batch_norm_tolerates_a_poor_init_that_stalls_the_network_without_it(bn_runs):
    assert bn_runs["poor_no_bn"].val_acc() < 0.3
    assert bn_runs["poor_bn"].val_acc() > 0.8


# ---------------------------------------------------------------------------
# Lesson 14: a gap means overfitting, no gap and a high loss means underfitting
# ---------------------------------------------------------------------------


def test_the_curves_tell_overfitting_from_underfitting():
    overfit, more_data, too_small, regularized = (train(d, 400) for d in step_docs("reading_curves")[1:5])
    assert overfit.gap() > 1.0 and overfit.trainer.evaluate("train").loss < 0.01
    assert more_data.gap() < 0.1 * overfit.gap()
    small_train = too_small.trainer.evaluate("train").loss
    assert small_train > 0.7 * LN2 and abs(too_small.gap()) < 0.1  # high and together: too little capacity
    assert regularized.gap() < 0.3 * overfit.gap()
