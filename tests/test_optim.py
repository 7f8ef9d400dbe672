"""Optimizer factory and the perceptron rule (torch and hand formulas as oracles).

Equivalence of every optimizer *through the trainer* with torch.optim is in test_trainer.py.
"""

import pytest
import torch
from torch import nn

from server.optim import PerceptronRule, build_optimizer, check_perceptron_network, is_weight
from server.schemas import NetworkSpec, TrainConfig


def opt_spec(**kw):
    return TrainConfig(optimizer=kw).optimizer


@pytest.fixture
def params():
    torch.manual_seed(0)
    return list(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2)).parameters())


@pytest.mark.parametrize(
    "spec, cls, expected",
    [
        ({"kind": "sgd", "lr": 0.3}, torch.optim.SGD, {"lr": 0.3, "momentum": 0, "nesterov": False, "weight_decay": 0}),
        ({"kind": "momentum", "lr": 0.2, "momentum": 0.8}, torch.optim.SGD, {"momentum": 0.8, "nesterov": False}),
        ({"kind": "nesterov", "momentum": 0.7}, torch.optim.SGD, {"momentum": 0.7, "nesterov": True}),
        ({"kind": "adagrad", "lr": 0.05, "eps": 1e-6}, torch.optim.Adagrad, {"lr": 0.05, "eps": 1e-6, "weight_decay": 0}),
        ({"kind": "rmsprop", "alpha": 0.9, "momentum": 0.5}, torch.optim.RMSprop, {"alpha": 0.9, "momentum": 0.5}),
        ({"kind": "adam", "beta1": 0.8, "beta2": 0.99}, torch.optim.Adam, {"betas": (0.8, 0.99), "weight_decay": 0}),
        ({"kind": "lbfgs", "history_size": 5, "max_iter": 3}, torch.optim.LBFGS, {"history_size": 5, "max_iter": 3}),
    ],
)
def test_each_kind_maps_to_its_torch_optimizer(params, spec, cls, expected):
    opt = build_optimizer(opt_spec(**spec), params)
    assert type(opt) is cls
    group = opt.param_groups[0]
    for key, value in expected.items():
        assert group[key] == value, key
    assert len(opt.param_groups) == 1


def test_adamw_decays_weights_only(params):
    opt = build_optimizer(opt_spec(kind="adamw", weight_decay=0.05), params)
    assert type(opt) is torch.optim.AdamW
    decayed, rest = opt.param_groups
    assert decayed["weight_decay"] == 0.05 and all(p.ndim == 2 for p in decayed["params"])
    assert rest["weight_decay"] == 0.0 and all(p.ndim == 1 for p in rest["params"])
    assert len(decayed["params"]) + len(rest["params"]) == len(params)


def test_is_weight():
    lin, conv, bn = nn.Linear(2, 3), nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)
    assert is_weight(lin.weight) and is_weight(conv.weight)
    assert not is_weight(lin.bias) and not is_weight(bn.weight)


def test_perceptron_is_not_built_as_a_gradient_optimizer(params):
    with pytest.raises(ValueError, match="PerceptronRule"):
        build_optimizer(opt_spec(kind="perceptron"), params)


# --- the perceptron rule ----------------------------------------------------------


def sign(z):
    return torch.where(z >= 0, 1.0, -1.0)


def test_perceptron_update_is_rosenblatts_rule_summed_over_the_batch():
    lin = nn.Linear(3, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -1.0, 0.25]]))
        lin.bias.fill_(0.1)
    x = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0], [0.0, -3.0, 1.0], [2.0, 2.0, -4.0]])
    y = torch.tensor([1, 1, 0, 0])
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    out = sign(lin(x))
    rule = PerceptronRule(lin, lr=0.5, tau=4.0)
    rule.update(x, y, out, epoch=4)  # a_t = 0.5 * 4 / (4 + 4) = 0.25
    alpha = 0.25
    t = y.float() * 2 - 1
    expected_w, expected_b = w0.clone(), b0.clone()
    for n in range(4):  # the textbook loop, one example at a time but with the weights fixed (batch rule)
        err = t[n] - out[n, 0]
        expected_w += alpha * err * x[n]
        expected_b += alpha * err
    torch.testing.assert_close(lin.weight.detach(), expected_w)
    torch.testing.assert_close(lin.bias.detach(), expected_b)
    assert rule.param_groups[0]["lr"] == 0.5


def test_perceptron_online_rule_does_not_move_on_correct_examples():
    lin = nn.Linear(2, 1)
    before = [p.detach().clone() for p in lin.parameters()]
    x = torch.tensor([[1.0, -2.0]])
    out = sign(lin(x)).detach()
    y = ((out.reshape(-1) > 0).long())  # the unit is right by construction
    PerceptronRule(lin).update(x, y, out, epoch=0)
    for p, b in zip(lin.parameters(), before):
        assert torch.equal(p.detach(), b)


def test_perceptron_rule_has_no_gradient_step():
    rule = PerceptronRule(nn.Linear(2, 1))
    with pytest.raises(TypeError, match="update"):
        rule.step()


def net(*layers):
    return NetworkSpec.model_validate({"layers": list(layers)})


def test_check_perceptron_network_accepts_a_sign_unit():
    assert check_perceptron_network(net({"kind": "linear", "name": "unit", "out_features": 1, "activation": "sign"})) == "unit"
    two_step = net(
        {"kind": "flatten", "name": "f"},
        {"kind": "linear", "name": "unit", "out_features": 1},
        {"kind": "activation", "name": "step", "activation": "sign"},
    )
    assert check_perceptron_network(two_step, num_classes=2) == "unit"


@pytest.mark.parametrize(
    "layers, num_classes, match",
    [
        ([{"kind": "linear", "name": "h", "out_features": 4, "activation": "relu"},
          {"kind": "linear", "name": "o", "out_features": 1, "activation": "sign"}], None, "single linear unit"),
        ([{"kind": "linear", "name": "o", "out_features": 2, "activation": "sign"}], None, "one output unit"),
        ([{"kind": "linear", "name": "o", "out_features": 1, "activation": "tanh"}], None, "activation is tanh"),
        ([{"kind": "linear", "name": "o", "out_features": 1}], None, "activation is none"),
        ([{"kind": "linear", "name": "o", "out_features": 1, "activation": "sign"}], 3, "two classes"),
        ([{"kind": "linear", "name": "o", "out_features": 1, "activation": "sign"},
          {"kind": "dropout", "name": "d"}], None, "layer 'd'"),
    ],
)
def test_check_perceptron_network_names_the_problem_and_the_fix(layers, num_classes, match):
    with pytest.raises(ValueError, match=match) as info:
        check_perceptron_network(net(*layers), num_classes)
    assert "Fix:" in str(info.value)
