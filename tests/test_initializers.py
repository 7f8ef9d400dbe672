"""initializers.py: sample statistics against the formulas (and torch's own initializers), LSUV on data."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from server import registry
from server.builder import apply_data_dependent_init, build_model
from server.initializers import LSUVResult, compute_fans, init_tensor_, lsuv_rescale_, needs_matrix



def spec(kind: str, **fields):
    """An init spec model from its kind and fields."""
    return registry.INITIALIZERS[kind](**fields)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("shape", [(30, 20), (16, 8, 3, 3), (4, 2, 5, 1), (7, 3, 2, 2, 2)])
def test_fans_match_torch_for_ungrouped_weights(shape):
    assert compute_fans(shape) == nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def test_fans_of_grouped_convolutions_count_real_connections():
    assert compute_fans((32, 1, 3, 3), groups=32) == (9, 9)  # depthwise: each input feeds 1 output channel
    assert compute_fans((8, 2, 3, 3), groups=2) == (2 * 9, 4 * 9)
    with pytest.raises(ValueError):
        compute_fans((5,))


SHAPE = (400, 600)  # 240,000 samples: the std estimate is good to well under 1%
FAN_IN, FAN_OUT = 600, 400

# kind, fields, expected mean, expected std
STATS = [
    ("normal", dict(mean=0.5, std=0.02), 0.5, 0.02),
    ("uniform", dict(a=0.3), 0.0, 0.3 / math.sqrt(3)),
    ("xavier_normal", dict(gain=2.0), 0.0, 2.0 * math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ("xavier_uniform", dict(), 0.0, math.sqrt(6 / (FAN_IN + FAN_OUT)) / math.sqrt(3)),
    ("he_normal", dict(), 0.0, math.sqrt(2 / FAN_IN)),
    ("he_normal", dict(mode="fan_out", nonlinearity="leaky_relu", a=0.1), 0.0, math.sqrt(2 / (1 + 0.01)) / math.sqrt(FAN_OUT)),
    ("he_uniform", dict(nonlinearity="tanh"), 0.0, 5 / 3 * math.sqrt(3 / FAN_IN) / math.sqrt(3)),
    ("he_uniform", dict(nonlinearity="linear", mode="fan_out"), 0.0, math.sqrt(3 / FAN_OUT) / math.sqrt(3)),
    ("lecun_normal", dict(), 0.0, 1 / math.sqrt(FAN_IN)),
]


@pytest.mark.parametrize("kind, fields, mean, std", STATS, ids=[f"{s[0]}-{i}" for i, s in enumerate(STATS)])
def test_sample_statistics_match_the_formula(kind, fields, mean, std):
    w = init_tensor_(torch.empty(SHAPE), spec(kind, **fields), fan_in=FAN_IN, fan_out=FAN_OUT)
    assert abs(w.mean().item() - mean) < 0.02 * std + 1e-9
    assert w.std().item() == pytest.approx(std, rel=0.02)
    if "uniform" in kind:
        bound = std * math.sqrt(3)
        assert w.abs().max().item() <= bound and w.abs().max().item() > 0.99 * bound


# Our spec against the torch initializer that means the same thing (groups == 1).
TORCH_ORACLE = [
    ("xavier_normal", dict(gain=1.5), lambda w: nn.init.xavier_normal_(w, gain=1.5)),
    ("xavier_uniform", dict(), nn.init.xavier_uniform_),
    ("he_normal", dict(), lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")),
    ("he_normal", dict(mode="fan_out", nonlinearity="leaky_relu", a=0.2),
     lambda w: nn.init.kaiming_normal_(w, a=0.2, mode="fan_out", nonlinearity="leaky_relu")),
    ("he_uniform", dict(nonlinearity="sigmoid"), lambda w: nn.init.kaiming_uniform_(w, nonlinearity="sigmoid")),
    ("lecun_normal", dict(), lambda w: nn.init.kaiming_normal_(w, nonlinearity="linear")),
]


@pytest.mark.parametrize("kind, fields, torch_init", TORCH_ORACLE, ids=[f"{o[0]}-{i}" for i, o in enumerate(TORCH_ORACLE)])
@pytest.mark.parametrize("shape", [(300, 500), (64, 32, 5, 5)])
def test_spread_matches_torchs_initializer(kind, fields, torch_init, shape):
    fan_in, fan_out = compute_fans(shape)
    ours = init_tensor_(torch.empty(shape), spec(kind, **fields), fan_in=fan_in, fan_out=fan_out)
    theirs = torch_init(torch.empty(shape))
    assert ours.std().item() == pytest.approx(theirs.std().item(), rel=0.03)
    assert ours.abs().max().item() == pytest.approx(theirs.abs().max().item(), rel=0.3)


def test_zeros_constant_and_default_are_exact():
    w = torch.randn(5, 6)
    before = w.clone()
    assert torch.equal(init_tensor_(w, spec("default"), fan_in=6, fan_out=5), before)
    assert torch.equal(init_tensor_(w, spec("zeros"), fan_in=6, fan_out=5), torch.zeros(5, 6))
    assert torch.equal(init_tensor_(w, spec("constant", value=-0.25), fan_in=6, fan_out=5), torch.full((5, 6), -0.25))


@pytest.mark.parametrize("shape", [(32, 64), (64, 32), (16, 4, 3, 3)])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal_rows_or_columns_are_orthonormal_times_gain(shape, gain):
    w = init_tensor_(torch.empty(shape), spec("orthogonal", gain=gain), fan_in=0, fan_out=0).flatten(1)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    torch.testing.assert_close(gram, gain**2 * torch.eye(gram.shape[0]), atol=1e-4, rtol=0)


def test_lsuv_starts_orthogonal():
    w = init_tensor_(torch.empty(20, 30), spec("lsuv"), fan_in=30, fan_out=20)
    torch.testing.assert_close(w @ w.T, torch.eye(20), atol=1e-4, rtol=0)


def test_only_matrix_initializers_need_a_matrix():
    assert needs_matrix(spec("orthogonal")) and needs_matrix(spec("lsuv"))
    assert not any(needs_matrix(spec(k)) for k in ("zeros", "normal", "he_normal", "xavier_uniform", "default"))


# ---------------------------------------------------------------------------
# Through the builder: which tensors get which init
# ---------------------------------------------------------------------------


def layers(*specs):
    return {"layers": list(specs)}


def test_default_init_is_pytorchs_own():
    model, _ = build_model(layers({"kind": "linear", "name": "h", "out_features": 4}), (10,), seed=3)
    torch.manual_seed(3)
    reference = nn.Linear(10, 4)
    assert torch.equal(model.blocks["h"].core.weight, reference.weight)
    assert torch.equal(model.blocks["h"].core.bias, reference.bias)


def test_weight_and_bias_inits_are_separate_and_bias_uses_the_weights_fans():
    he = {"kind": "linear", "name": "he", "out_features": 20_000, "weight_init": "he_normal", "bias_init": "he_normal"}
    xav = {"kind": "linear", "name": "xav", "out_features": 20_000, "inputs": ["input"],
           "weight_init": "zeros", "bias_init": "xavier_normal"}
    model, _ = build_model(layers(he, xav, {"kind": "add", "name": "sum", "inputs": ["he", "xav"]}), (50,), seed=0)
    bias = model.blocks["he"].core.bias
    assert bias.std().item() == pytest.approx(math.sqrt(2 / 50), rel=0.03)  # the weight's fan_in, not 1
    assert model.blocks["xav"].core.weight.abs().max() == 0
    assert model.blocks["xav"].core.bias.std().item() == pytest.approx(math.sqrt(2 / (50 + 20_000)), rel=0.03)


def test_grouped_conv_and_maxout_get_their_own_fans():
    model, _ = build_model(
        layers(
            {"kind": "conv2d", "name": "dw", "out_channels": 256, "groups": 256, "kernel_size": 5, "padding": 2,
             "weight_init": {"kind": "he_normal", "mode": "fan_out"}, "bias_init": "zeros"},
            {"kind": "flatten", "name": "f"},
            {"kind": "maxout", "name": "mo", "out_features": 500, "pieces": 3, "weight_init": "lecun_normal",
             "bias_init": {"kind": "constant", "value": 0.5}},
        ),
        (256, 2, 2),
        seed=0,
    )
    dw = model.blocks["dw"].core
    assert dw.weight.std().item() == pytest.approx(math.sqrt(2 / 25), rel=0.05)  # fan_out = 256/256 * 5*5
    assert dw.bias.abs().max() == 0
    mo = model.blocks["mo"].core
    assert mo.weight.std().item() == pytest.approx(1 / math.sqrt(1024), rel=0.03)
    assert torch.equal(mo.bias, torch.full((1500,), 0.5))


def test_squeeze_excite_and_attention_keep_pytorch_defaults():
    model, _ = build_model(layers({"kind": "squeeze_excite", "name": "se"}, {"kind": "spatial_attention", "name": "sa"}),
                           (8, 4, 4), seed=1)
    fc1 = model.blocks["se"].core.fc1
    assert fc1.weight.abs().max() <= 1 / math.sqrt(8)  # nn.Linear's default bound


# ---------------------------------------------------------------------------
# LSUV
# ---------------------------------------------------------------------------


def test_lsuv_rescale_converges_on_a_linear_response():
    w = torch.ones(3, 3)
    measure = lambda: 4.0 * (w[0, 0].item() ** 2) + 0.01  # noqa: E731 - variance of a scaled map plus a bias term
    result = lsuv_rescale_([w], measure, spec("lsuv", target_var=1.0, tolerance=0.01))
    assert result.converged and abs(result.variance - 1.0) < 0.01 and 1 <= result.iterations <= 3


def test_lsuv_rescale_gives_up_on_a_dead_layer():
    w = torch.ones(2, 2)
    result = lsuv_rescale_([w], lambda: 0.0, spec("lsuv"))
    assert result == LSUVResult(0.0, 0, False) and torch.equal(w, torch.ones(2, 2))


def _core_variances(model, x, names):
    captured = {}
    handles = [model.blocks[n].core.register_forward_hook(lambda m, a, out, n=n: captured.__setitem__(n, out.var().item()))
               for n in names]
    with torch.no_grad():
        model.eval()
        model(x)
    for handle in handles:
        handle.remove()
    return captured


def test_lsuv_gives_each_layer_unit_output_variance_on_the_batch():
    lsuv = {"kind": "lsuv", "tolerance": 0.02}
    spec_ = layers(
        {"kind": "linear", "name": "h1", "out_features": 128, "activation": "tanh", "weight_init": lsuv},
        {"kind": "dropout", "name": "drop"},
        {"kind": "linear", "name": "h2", "out_features": 128, "activation": "relu", "weight_init": lsuv},
        {"kind": "batch_norm", "name": "bn"},
        {"kind": "maxout", "name": "h3", "out_features": 64, "weight_init": lsuv},
        {"kind": "linear", "name": "out", "out_features": 10},
    )
    model, _ = build_model(spec_, (20,), seed=0)
    x = 5 * torch.randn(512, 20)  # variance 25: orthogonal weights alone would pass it on
    out_before = model.blocks["out"].core.weight.clone()
    bn_before = model.blocks["bn"].core.running_mean.clone()
    model.train()
    results = apply_data_dependent_init(model, x)
    assert model.training and model.blocks["drop"].training  # modes restored
    assert list(results) == ["h1", "h2", "h3"]
    assert all(r.converged for r in results.values())
    for name, variance in _core_variances(model, x, ["h1", "h2", "h3"]).items():
        assert variance == pytest.approx(1.0, abs=0.02), name
    assert torch.equal(model.blocks["out"].core.weight, out_before)  # non-LSUV layers untouched
    assert torch.equal(model.blocks["bn"].core.running_mean, bn_before)  # eval mode: stats not updated


def test_lsuv_reaches_a_custom_target_on_a_conv_net():
    lsuv = {"kind": "lsuv", "target_var": 2.0, "tolerance": 0.05}
    spec_ = layers(
        {"kind": "conv2d", "name": "c1", "out_channels": 16, "padding": 1, "activation": "relu", "weight_init": lsuv},
        {"kind": "conv2d", "name": "c2", "out_channels": 16, "stride": 2, "weight_init": lsuv},
        {"kind": "global_avg_pool", "name": "gap"},
        {"kind": "linear", "name": "out", "out_features": 3},
    )
    model, _ = build_model(spec_, (3, 12, 12), seed=0)
    x = torch.rand(64, 3, 12, 12)
    apply_data_dependent_init(model, x)
    for name, variance in _core_variances(model, x, ["c1", "c2"]).items():
        assert variance == pytest.approx(2.0, abs=0.05), name


def test_lsuv_without_lsuv_layers_is_a_no_op():
    model, _ = build_model(layers({"kind": "linear", "name": "h", "out_features": 3}), (4,), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert apply_data_dependent_init(model, torch.randn(8, 4)) == {}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_lsuv_on_an_all_zero_batch_stops_without_nans():
    model, _ = build_model(
        layers({"kind": "linear", "name": "h", "out_features": 8, "bias": False, "weight_init": "lsuv"}), (4,), seed=0
    )
    results = apply_data_dependent_init(model, torch.zeros(16, 4))
    assert not results["h"].converged
    assert torch.isfinite(model.blocks["h"].core.weight).all()
