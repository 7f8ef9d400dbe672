"""The fused NumPy MLP step against PyTorch's autograd and torch.optim (the oracle), step by step."""

import math

import pytest
import torch

from server.fused_mlp import MAX_FUSED_PARAMS
from server.schemas import Experiment
from server.trainer import Trainer

# Float32 sums in another order differ in the last bits; over 200 steps the runs stay within this.
# Adam divides by sqrt(v): a bias whose gradient is ~0 moves by ~lr either way, so its weights get a looser check.
LOSS_TOL = 1e-5
WEIGHT_TOL = 1e-5


def experiment(*, optimizer, layers=None, loss="cross_entropy", data=None, batch_size=10, steps=200, **train):
    layers = layers or [
        {"kind": "linear", "name": "h1", "out_features": 4, "activation": "tanh"},
        {"kind": "linear", "name": "h2", "out_features": 2, "activation": "tanh"},
        {"kind": "linear", "name": "out", "out_features": 1},
    ]
    return Experiment.model_validate({
        "data": data or {"name": "spiral", "n_samples": 300, "noise": 0.1, "preprocessing": "standardize"},
        "network": {"layers": layers},
        "train": {"optimizer": optimizer, "loss": loss, "batch_size": batch_size, "max_steps": steps, "log_every": 10,
                  **train},
        "probes": {"enabled": False},
    })


def both(exp: Experiment, observe_every: int = 0):
    """Run the experiment on both paths; the fused one takes an autograd (observed) step every few steps."""
    fused, reference = Trainer(exp, device="cpu"), Trainer(exp, device="cpu", fused=False)
    assert fused.fused is not None, fused.fused_reason
    assert reference.fused is None
    rf, rr = [], []
    while not fused.done:
        k = fused.step_count
        rf.append(fused.step(observed=bool(observe_every) and k % observe_every == observe_every - 1))
        rr.append(reference.step())
    return fused, reference, rf, rr


def assert_runs_match(fused, reference, rf, rr, weight_tol=WEIGHT_TOL):
    assert len(rf) == len(rr)
    lf = torch.stack([r.loss for r in rf])
    lr = torch.stack([r.loss for r in rr])
    torch.testing.assert_close(lf, lr, atol=LOSS_TOL, rtol=0)
    for (name, p), q in zip(fused.model.named_parameters(), reference.model.parameters()):
        torch.testing.assert_close(p, q, atol=weight_tol, rtol=0, msg=name)
    metrics_f = [(r.step, r.metrics.train_loss, r.metrics.train_acc) for r in rf if r.metrics]
    metrics_r = [(r.step, r.metrics.train_loss, r.metrics.train_acc) for r in rr if r.metrics]
    assert [m[0] for m in metrics_f] == [m[0] for m in metrics_r]
    for (_, loss_f, acc_f), (_, loss_r, acc_r) in zip(metrics_f, metrics_r):
        assert loss_f == pytest.approx(loss_r, abs=LOSS_TOL)
        assert acc_f == pytest.approx(acc_r, abs=0.02)  # a logit within rounding of the threshold may flip one example


@pytest.mark.parametrize("optimizer", [
    {"kind": "sgd", "lr": 0.03},
    {"kind": "momentum", "lr": 0.03, "momentum": 0.9},
    {"kind": "nesterov", "lr": 0.03, "momentum": 0.8},
    {"kind": "adam", "lr": 0.01, "beta1": 0.8, "beta2": 0.99},
])
def test_tf_playground_net_matches_autograd_for_each_fused_optimizer(optimizer):
    assert_runs_match(*both(experiment(optimizer=optimizer)))


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "leaky_relu", "identity"])
def test_each_fused_activation_with_softmax_cross_entropy(activation):
    layers = [{"kind": "linear", "name": "h", "out_features": 16, "activation": activation},
              {"kind": "linear", "name": "out", "out_features": 10}]
    exp = experiment(optimizer={"kind": "adam", "lr": 0.01}, layers=layers, data={"name": "digits"}, batch_size=32,
                     steps=60)
    assert_runs_match(*both(exp))


def test_mse_l1_l2_and_clipping_match_autograd():
    layers = [{"kind": "linear", "name": "h", "out_features": 8, "activation": "tanh"},
              {"kind": "linear", "name": "out", "out_features": 10}]
    exp = experiment(optimizer={"kind": "momentum", "lr": 0.1}, layers=layers, loss="mse", data={"name": "digits"},
                     batch_size="full", steps=40, l2=0.01, l1=0.001, grad_clip=0.5)
    assert_runs_match(*both(exp))


def test_binary_mse_matches_autograd():
    assert_runs_match(*both(experiment(optimizer={"kind": "sgd", "lr": 0.1}, loss="mse")))


def test_observed_autograd_steps_interleave_with_fused_ones():
    """Hooks need autograd steps; they share the weights and torch's optimizer state with the fused steps."""
    fused, reference, rf, rr = both(experiment(optimizer={"kind": "adam", "lr": 0.01}), observe_every=7)
    assert_runs_match(fused, reference, rf, rr)
    state = fused.optimizer.state[next(fused.model.parameters())]
    assert float(state["step"]) == 200  # one counter, advanced by both kinds of step


def test_live_learning_rate_and_momentum_changes_reach_the_fused_step():
    fused = Trainer(experiment(optimizer={"kind": "momentum", "lr": 0.03}), device="cpu")
    reference = Trainer(experiment(optimizer={"kind": "momentum", "lr": 0.03}), device="cpu", fused=False)
    for k in range(120):
        if k == 40:
            for t in (fused, reference):
                t.set_hyperparams(lr=0.1, momentum=0.5)
        a, b = fused.step(), reference.step()
        assert float(a.loss) == pytest.approx(float(b.loss), abs=LOSS_TOL)


def test_divergence_is_reported_at_the_same_step_as_on_the_autograd_path():
    layers = [{"kind": "linear", "name": "h", "out_features": 32, "activation": "relu"},
              {"kind": "linear", "name": "out", "out_features": 10}]
    exp = experiment(optimizer={"kind": "sgd", "lr": 1e6}, layers=layers, loss="mse", data={"name": "digits"})
    fused, reference = Trainer(exp, device="cpu"), Trainer(exp, device="cpu", fused=False)
    for t in (fused, reference):
        while not t.done:
            t.step()
    assert fused.stop.reason == reference.stop.reason == "non_finite"
    at = [t.stop.message.split("at step ")[1].split(".")[0] for t in (fused, reference)]
    assert at[0] == at[1]  # inf or NaN first depends on float order; the step and the advice do not
    assert "learning rate" in fused.stop.message
    assert fused.step_count == reference.step_count


@pytest.mark.parametrize("change, reason", [
    ({"optimizer": {"kind": "rmsprop", "lr": 0.01}}, "optimizer 'rmsprop'"),
    ({"loss": "hinge"}, "loss 'hinge'"),
    ({"freeze": ["h1"]}, "frozen"),
    ({"ema_decay": 0.9}, "EMA"),
])
def test_what_the_fused_path_does_not_reproduce_takes_autograd(change, reason):
    base = {"optimizer": {"kind": "sgd", "lr": 0.1}}
    trainer = Trainer(experiment(**{**base, **change}), device="cpu")
    assert trainer.fused is None and reason in trainer.fused_reason


def test_networks_with_other_layers_or_too_many_parameters_take_autograd():
    dropout = [{"kind": "linear", "name": "h", "out_features": 8, "activation": "relu"},
               {"kind": "dropout", "name": "d", "p": 0.5},
               {"kind": "linear", "name": "out", "out_features": 1}]
    assert "not linear" in Trainer(experiment(optimizer={"kind": "sgd", "lr": 0.1}, layers=dropout)).fused_reason
    wide = math.isqrt(MAX_FUSED_PARAMS) + 10
    big = [{"kind": "linear", "name": "h", "out_features": wide, "activation": "relu"},
           {"kind": "linear", "name": "h2", "out_features": wide, "activation": "relu"},
           {"kind": "linear", "name": "out", "out_features": 1}]
    assert "parameters" in Trainer(experiment(optimizer={"kind": "sgd", "lr": 0.1}, layers=big)).fused_reason


def test_the_boundary_through_the_fused_forward_equals_the_torch_models():
    """The 2D view draws the grid with the fused forward; torch's forward (with hooks) is the oracle."""
    from server.live.boundary import _extent, _fused_forward
    from server.probes import decision_boundary

    trainer = Trainer(experiment(optimizer={"kind": "adam", "lr": 0.01}), device="cpu")
    for _ in range(50):
        trainer.step()
    blocks = trainer.model.blocks
    extent = _extent(trainer.dataset)
    reference = decision_boundary(trainer.model, blocks, extent=extent, resolution=32)
    fused = decision_boundary(trainer.model, blocks, extent=extent, resolution=32,
                              forward=lambda points: _fused_forward(trainer.fused, list(blocks), points))
    assert set(fused.neuron_maps) == set(reference.neuron_maps) == {"h1", "h2"}
    torch.testing.assert_close(torch.from_numpy(fused.probs), torch.from_numpy(reference.probs), atol=1e-6, rtol=0)
    assert (fused.predicted == reference.predicted).mean() > 0.999  # a cell on the boundary may round either way
    for name in reference.neuron_maps:
        torch.testing.assert_close(torch.from_numpy(fused.neuron_maps[name]),
                                   torch.from_numpy(reference.neuron_maps[name]), atol=1e-6, rtol=0)
