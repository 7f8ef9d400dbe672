"""Gradient checking passes correct networks and flags a deliberately wrong backward pass."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from server.probes.gradcheck import (
    REL_ERROR_OK,
    GradCheckReport,
    gradient_check,
    relative_error,
    verdict,
)
from toy_nets import Block, ToyNet, mlp, small_cnn


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Many tiny forward passes run fastest on one thread; intra-op threads cost 10-30x on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class WrongSquare(torch.autograd.Function):
    """x^2 whose backward returns 3x instead of 2x: the bug a gradient check exists to catch."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return grad_out * 3 * x


class Square(nn.Module):
    def __init__(self, wrong: bool) -> None:
        super().__init__()
        self.wrong = wrong

    def forward(self, x):
        return WrongSquare.apply(x) if self.wrong else x * x


def squared_net(wrong: bool) -> ToyNet:
    torch.manual_seed(0)
    return ToyNet({
        "hidden": Block("linear", nn.Linear(3, 4), Square(wrong)),
        "out": Block("linear", nn.Linear(4, 2)),
    })


def test_a_correct_mlp_passes():
    model = mlp([4, 8, 3], act=nn.Tanh)
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    report = gradient_check(model, x, y, F.cross_entropy, max_params_per_tensor=10)
    assert isinstance(report, GradCheckReport)
    assert report.passed and report.verdict == "great" and report.max_rel_error < 1e-7
    # every trainable tensor is sampled: min(numel, 10) entries each
    per_tensor = {}
    for e in report.entries:
        per_tensor[e.param] = per_tensor.get(e.param, 0) + 1
    assert per_tensor == {n: min(p.numel(), 10) for n, p in model.named_parameters()}
    # the numbers are autograd's and the central difference's
    e = report.entries[0]
    net = mlp([4, 8, 3], act=nn.Tanh).double()
    loss = F.cross_entropy(net(x.double()), y)
    loss.backward()
    assert e.param == "blocks.fc1.core.weight"
    assert e.analytic == pytest.approx(net.blocks["fc1"].core.weight.grad[e.index].item(), rel=1e-12)
    assert e.numeric == pytest.approx(e.analytic, rel=1e-6)


def test_a_correct_cnn_passes_with_mse():
    model = small_cnn(in_ch=1, side=6, classes=3)
    x, y = torch.randn(4, 1, 6, 6), torch.randn(4, 3)
    report = gradient_check(model, x, y, F.mse_loss, max_params_per_tensor=8, seed=1)
    assert report.passed, [e for e in report.entries if e.verdict not in ("great", "ok")]
    assert report.max_rel_error < REL_ERROR_OK
    assert len(report.entries) == 8 + 4 + 8 + 6 + 8 + 3


def test_a_wrong_backward_is_flagged():
    x, y = torch.randn(5, 3), torch.randint(0, 2, (5,))
    right = gradient_check(squared_net(False), x, y, F.cross_entropy)
    wrong = gradient_check(squared_net(True), x, y, F.cross_entropy)

    assert right.passed and right.max_rel_error < 1e-7
    assert not wrong.passed and wrong.verdict == "wrong"
    flagged = {e.param for e in wrong.entries if e.verdict == "wrong"}
    # the bad backward sits between the hidden layer's weights and the loss: only they get wrong gradients
    assert flagged == {"blocks.hidden.core.weight", "blocks.hidden.core.bias"}
    assert all(e.verdict == "great" for e in wrong.entries if e.param.startswith("blocks.out"))
    # 3x instead of 2x: the analytic gradient is 1.5 times the true one
    e = next(e for e in wrong.entries if e.param == "blocks.hidden.core.bias" and abs(e.numeric) > 1e-6)
    assert e.analytic / e.numeric == pytest.approx(1.5, rel=1e-6)


def test_an_analytic_override_is_checked_instead_of_autograd():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 2), nn.Sigmoid(), nn.Linear(2, 1))
    x, y = torch.randn(4, 3), torch.randn(4, 1)
    net = nn.Sequential(nn.Linear(3, 2), nn.Sigmoid(), nn.Linear(2, 1)).double()
    net.load_state_dict(model.state_dict())
    F.mse_loss(net(x.double()), y.double()).backward()
    mine = {"0.weight": net[0].weight.grad.clone(), "2.bias": net[2].bias.grad.numpy() * 1.01}

    report = gradient_check(model, x, y, F.mse_loss, analytic_override=mine)

    verdicts = {e.param: e.verdict for e in report.entries}
    assert verdicts["0.weight"] == "great" and verdicts["2.bias"] == "suspicious"
    assert not report.passed and report.verdict == "suspicious"
    with pytest.raises(ValueError, match="unknown parameters"):
        gradient_check(model, x, y, F.mse_loss, analytic_override={"nope": torch.zeros(1)})
    with pytest.raises(ValueError, match="shape"):
        gradient_check(model, x, y, F.mse_loss, analytic_override={"2.bias": torch.zeros(3)})


def test_a_relu_kink_within_h_is_recognised_not_blamed():
    net = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1))
    with torch.no_grad():
        net[0].weight.fill_(0.5)
        net[0].bias.fill_(-0.5 + 4e-6)  # pre-activation 4e-6 for x = 1: inside +-h of the kink at 0
        net[2].weight.fill_(2.0)
        net[2].bias.fill_(0.1)
    x, y = torch.ones(1, 1), torch.zeros(1, 1)
    report = gradient_check(net, x, y, F.mse_loss)
    kinks = [e for e in report.entries if e.verdict == "kink"]
    assert {e.param for e in kinks} == {"0.weight", "0.bias"}
    assert all(e.rel_error > 1e-2 for e in kinks)  # the central difference is far off there...
    assert report.passed and report.kinks == 2     # ...but that is the kink, not a bug

    # the same network with a wrong gradient on those parameters is still caught
    wrong = gradient_check(net, x, y, F.mse_loss, analytic_override={"0.bias": torch.tensor([5.0])})
    assert not wrong.passed


def test_the_model_is_left_alone():
    model = small_cnn(side=4)
    model.train()
    calls = []
    handle = model.blocks["conv1"].register_forward_hook(lambda *a: calls.append(1))
    before = {n: p.clone() for n, p in model.state_dict().items()}
    gradient_check(model, torch.randn(2, 1, 4, 4), torch.tensor([0, 2]), F.cross_entropy, max_params_per_tensor=2)
    handle.remove()
    assert calls == []  # the float64 copy does not carry the original's hooks
    assert model.training and all(p.dtype == torch.float32 and p.grad is None for p in model.parameters())
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())


def test_sampling_is_seeded_and_bounded():
    model = mlp([10, 10, 2])
    x, y = torch.randn(3, 10), torch.randint(0, 2, (3,))
    a = gradient_check(model, x, y, F.cross_entropy, max_params_per_tensor=5, seed=7)
    b = gradient_check(model, x, y, F.cross_entropy, max_params_per_tensor=5, seed=7)
    c = gradient_check(model, x, y, F.cross_entropy, max_params_per_tensor=5, seed=8)
    assert [e.index for e in a.entries] == [e.index for e in b.entries] != [e.index for e in c.entries]
    assert len({(e.param, e.index) for e in a.entries}) == len(a.entries) == 5 + 5 + 5 + 2


def test_relative_error_and_verdicts():
    assert relative_error(1.0, 1.0) == 0.0
    assert relative_error(2.0, 1.0) == pytest.approx(0.5)
    assert relative_error(0.0, 0.0) == 0.0
    assert relative_error(0.0, 1e-13) < 1e-4  # rounding noise on a true zero is not a 100% error
    assert relative_error(math.nan, 1.0) == math.inf
    assert [verdict(v) for v in (1e-9, 1e-6, 1e-3, 0.5)] == ["great", "ok", "suspicious", "wrong"]


def test_frozen_parameters_are_skipped():
    model = mlp([3, 4, 2])
    model.blocks["fc1"].core.weight.requires_grad_(False)
    report = gradient_check(model, torch.randn(2, 3), torch.tensor([0, 1]), F.cross_entropy)
    assert "blocks.fc1.core.weight" not in {e.param for e in report.entries}
    assert report.passed


def test_on_a_built_network_with_batch_norm_and_dropout():
    from server.builder import build_model

    spec = {"layers": [
        {"kind": "conv2d", "name": "c1", "out_channels": 3, "padding": 1, "activation": "tanh"},
        {"kind": "batch_norm", "name": "bn"},
        {"kind": "dropout", "name": "drop", "p": 0.5},
        {"kind": "avg_pool2d", "name": "pool"},
        {"kind": "linear", "name": "out", "out_features": 3},
    ]}
    model, _ = build_model(spec, (1, 6, 6), 3, seed=0)
    model.train()  # the check must not depend on it: eval mode means fixed BN statistics and no dropout noise
    x, y = torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 1])
    report = gradient_check(model, x, y, F.cross_entropy, max_params_per_tensor=6)
    assert report.passed and report.max_rel_error < 1e-7
    assert {e.param.split(".")[1] for e in report.entries} == {"c1", "bn", "out"}
    assert model.training
